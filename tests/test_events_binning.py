"""Tests of respike.events.binning: numba == numpy reference, conservation, time bins, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respike.events.binning import EventFrames
from respike.events.emulator import DvsEmulator
from respike.events.types import EVENT_DTYPE, empty_events, make_events


def clip_events(path: Path, n_frames: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Events of the first frames of a video file (DVS emulator defaults), and the sensor size."""
    capture = cv2.VideoCapture(str(path))
    dvs, state, packets = DvsEmulator(), None, []
    for i in range(n_frames):
        ok, frame = capture.read()
        if not ok:
            break
        events, state = dvs(frame, i * 33_333, state)
        packets.append(events)
    capture.release()
    assert state is not None, f"no frame could be read from {path}"
    # np.concatenate would drop the padding of EVENT_DTYPE (numpy promotes to a packed dtype).
    events = np.concatenate(packets, dtype=EVENT_DTYPE)
    return events, (state.frame_format.width, state.frame_format.height)


def random_events(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    t = np.sort(rng.integers(0, 100_000, n))
    return make_events(
        t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)
    )


def assert_same(frames: EventFrames, events: np.ndarray, *window: int) -> np.ndarray:
    fast = frames(events, *window)
    slow = frames.reference(events, *window)
    assert fast.dtype == slow.dtype == np.dtype(frames.dtype), "output dtype"
    assert fast.shape == slow.shape == frames.shape, "output shape"
    assert np.array_equal(fast, slow), f"numba and numpy binning differ ({frames})"
    return fast


@pytest.mark.parametrize("clip", ["carphone.mp4", "kinetics_arm_wrestling.mp4"])
@pytest.mark.parametrize(
    ("n_time_bins", "size"), [(1, None), (4, (64, 48)), (3, (128, 128)), (2, (1000, 700))]
)
def test_numba_equals_reference_on_real_clip_events(
    shared_data: Path, clip: str, n_time_bins: int, size: tuple | None
) -> None:
    events, sensor = clip_events(shared_data / "videos" / clip, 20)
    frames = EventFrames(sensor_size=sensor, n_time_bins=n_time_bins, size=size)
    counts = assert_same(frames, events)
    assert counts.sum() == events.shape[0], "binning all events must count each once"


@pytest.mark.parametrize("size", [None, (7, 5), (1, 1), (50, 30), (33, 71), (200, 120)])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_counts_are_conserved_at_any_size(
    rng: np.random.Generator, size: tuple | None, dtype: str
) -> None:
    events = random_events(rng, 5000, 50, 30)
    frames = EventFrames(sensor_size=(50, 30), n_time_bins=5, size=size, dtype=dtype)
    counts = assert_same(frames, events)
    assert counts.sum() == 5000, f"size {size}: {counts.sum()} counted for 5000 events"
    per_polarity = counts.sum(axis=(0, 2, 3))
    assert per_polarity[1] == np.count_nonzero(events["p"] == 1), "channel 1 must count ON"
    assert per_polarity[0] == np.count_nonzero(events["p"] == 0), "channel 0 must count OFF"


def test_time_window_bins_and_edges() -> None:
    events = make_events([10, 19, 20, 29, 30, 39, 40], [0] * 7, [0] * 7, [1] * 7)
    frames = EventFrames(sensor_size=(2, 2), n_time_bins=3)
    counts = assert_same(frames, events, 10, 40)
    assert counts[:, 1, 0, 0].tolist() == [2, 2, 2], "[10, 20), [20, 30), [30, 40) hold 2 each"
    assert counts.sum() == 6, "the event at t_end is outside the half-open window"
    default = assert_same(frames, events)
    assert default.sum() == 7, "the default window holds every event"


def test_events_outside_the_window_are_left_out(rng: np.random.Generator) -> None:
    events = random_events(rng, 1000, 10, 10)
    counts = assert_same(EventFrames(sensor_size=(10, 10), n_time_bins=2), events, 20_000, 60_000)
    inside = np.count_nonzero((events["t"] >= 20_000) & (events["t"] < 60_000))
    assert counts.sum() == inside, "only events with t_start <= t < t_end are counted"


def test_unsorted_packets_are_binned_like_sorted_ones(rng: np.random.Generator) -> None:
    events = random_events(rng, 3000, 16, 12)
    frames = EventFrames(sensor_size=(16, 12), n_time_bins=7, size=(5, 4))
    shuffled = events[rng.permutation(events.shape[0])]
    assert np.array_equal(
        assert_same(frames, shuffled, 0, 100_000), assert_same(frames, events, 0, 100_000)
    ), "binning must not depend on the order of the events"


def test_downsampled_cell_of_each_event() -> None:
    events = make_events([0, 0, 0], [0, 5, 9], [0, 3, 5], [1, 0, 1])
    counts = assert_same(EventFrames(sensor_size=(10, 6), size=(5, 3)), events)
    assert counts[0, 1, 0, 0] == 1 and counts[0, 0, 1, 2] == 1 and counts[0, 1, 2, 4] == 1


def test_empty_packets_give_zero_frames() -> None:
    frames = EventFrames(sensor_size=(4, 3), n_time_bins=2)
    for window in ((), (0, 100)):
        counts = assert_same(frames, empty_events(0), *window)
        assert not counts.any(), "an empty packet must give zeros"


def test_read_only_packets_are_accepted(rng: np.random.Generator) -> None:
    events = random_events(rng, 100, 8, 8)
    events.setflags(write=False)
    assert assert_same(EventFrames(sensor_size=(8, 8)), events).sum() == 100


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (make_events([0], [8], [0], [1]), "1 event\\(s\\) outside the 8x6 sensor"),
        (make_events([0], [0], [6], [1]), "outside the 8x6 sensor"),
        (np.zeros(3, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")]), "dtype"),
        (np.zeros((2, 2), dtype=EVENT_DTYPE), "expected a 1-D array"),
        ([1, 2, 3], "dtype list"),
    ],
)
def test_bad_packets_are_rejected(events: object, message: str) -> None:
    frames = EventFrames(sensor_size=(8, 6))
    with pytest.raises(ValueError, match=message):
        frames(events)
    with pytest.raises(ValueError, match=message):
        frames.reference(events)


def test_bad_polarity_is_rejected() -> None:
    events = make_events([0, 1], [0, 1], [0, 1], [0, 1])
    events["p"][1] = 2
    with pytest.raises(ValueError, match="polarity other than 0/1"):
        EventFrames(sensor_size=(8, 6))(events)


@pytest.mark.parametrize(
    ("window", "message"),
    [((5, 5), "is empty"), ((9, 1), "is empty"), ((0.5, 9), "t_start is 0.5")],
)
def test_bad_windows_are_rejected(window: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventFrames(sensor_size=(8, 6))(empty_events(0), *window)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensor_size": (0, 5)}, "sensor_size is \\(0, 5\\)"),
        ({"sensor_size": (5, 5), "size": (5,)}, "size is \\(5,\\)"),
        ({"sensor_size": (5, 5), "n_time_bins": 0}, "n_time_bins is 0"),
        ({"sensor_size": (5, 5), "dtype": "float64"}, "dtype is 'float64'"),
    ],
)
def test_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventFrames(**kwargs)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    sensor=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    size=st.none() | st.tuples(st.integers(1, 25), st.integers(1, 25)),
    n_time_bins=st.integers(1, 7),
    window=st.none() | st.tuples(st.integers(-50, 50_000), st.integers(1, 120_000)),
)
@settings(max_examples=100, deadline=None)
def test_numba_equals_reference_property(
    seed: int,
    n: int,
    sensor: tuple[int, int],
    size: tuple[int, int] | None,
    n_time_bins: int,
    window: tuple[int, int] | None,
) -> None:
    events = random_events(np.random.default_rng(seed), n, *sensor)
    frames = EventFrames(sensor_size=sensor, n_time_bins=n_time_bins, size=size)
    bounds = () if window is None else (window[0], window[0] + window[1])
    counts = assert_same(frames, events, *bounds)
    if window is None:
        assert counts.sum() == n, "the default window must count every event"
