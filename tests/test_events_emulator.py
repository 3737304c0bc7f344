"""Tests of respike.events.emulator: numba == numpy reference, DVS model invariants, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from respike.events.emulator import (
    LOG_STEP,
    NEVER,
    DvsEmulator,
    DvsState,
    _same_bytes,
    log_table,
)
from respike.events.types import EVENT_DTYPE, validate_events

from helpers import read_clip

FRAME_US = 33_333
ALL_OPTIONS = DvsEmulator(
    on_threshold=0.25,
    off_threshold=0.15,
    threshold_mismatch=0.05,
    refractory_us=5_000,
    leak_rate_hz=0.5,
    shot_noise_rate_hz=1.0,
    seed=7,
)


def run(
    dvs: DvsEmulator,
    frames: list[np.ndarray],
    *,
    reference: bool = False,
    frame_us: int = FRAME_US,
    t_first: int = 1_000_000,
) -> tuple[list[np.ndarray], list[DvsState]]:
    step = dvs.reference if reference else dvs
    state = None
    packets, states = [], []
    for i, frame in enumerate(frames):
        events, state = step(frame, t_first + i * frame_us, state)
        packets.append(events)
        states.append(state)
    return packets, states


def assert_same(
    dvs: DvsEmulator, frames: list[np.ndarray], what: str, *, frame_us: int = FRAME_US
) -> int:
    """Assert numba and numpy give identical packets and states; returns the event count."""
    fast, fast_states = run(dvs, frames, frame_us=frame_us)
    slow, slow_states = run(dvs, frames, reference=True, frame_us=frame_us)
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a.dtype == EVENT_DTYPE and b.dtype == EVENT_DTYPE, f"{what}: frame {i} dtype"
        assert a.shape == b.shape, f"{what}: frame {i}: {a.shape[0]} vs {b.shape[0]} events"
        assert a.tobytes() == b.tobytes(), f"{what}: frame {i}: packets differ ({dvs})"
        fs, ss = fast_states[i], slow_states[i]
        assert np.array_equal(fs.log_ref, ss.log_ref), f"{what}: frame {i}: log reference"
        assert np.array_equal(fs.levels, ss.levels), f"{what}: frame {i}: levels"
        assert np.array_equal(fs.last_event_t, ss.last_event_t), f"{what}: frame {i}: last t"
    return sum(p.shape[0] for p in fast)


@pytest.mark.parametrize(
    "clip",
    [
        "carphone.mp4",
        "cleaning_pool.mp4",
        "kinetics_arm_wrestling.mp4",
        "ucf101_apply_eye_makeup.avi",
    ],
)
@pytest.mark.parametrize("dvs", [DvsEmulator(), ALL_OPTIONS], ids=["default", "all-options"])
def test_numba_equals_reference_on_real_clips(
    shared_data: Path, clip: str, dvs: DvsEmulator
) -> None:
    frames = read_clip(shared_data / "videos" / clip, 30)
    count = assert_same(dvs, frames, clip)
    assert count > 0, f"{clip}: a real clip must produce events"


def test_numba_equals_reference_on_grey_float_and_resized_frames(shared_data: Path) -> None:
    frames = read_clip(shared_data / "videos" / "cleaning_pool.mp4", 12)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    as_float = [(f / 255.0).astype(np.float32) for f in frames]
    big = [cv2.resize(f, (640, 480)) for f in frames[:6]]
    for dvs in (DvsEmulator(), ALL_OPTIONS):
        assert_same(dvs, grey, "grey clip")
        assert_same(dvs, [g[:, :, None] for g in grey], "(H, W, 1) clip")
        assert_same(dvs, as_float, "float32 clip")
        assert_same(dvs, big, "640x480 clip")
    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    assert_same(DvsEmulator(channel_order="rgb"), rgb, "rgb clip")


def edge_case_frames(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    black, white = np.zeros((8, 6, 3), np.uint8), np.full((8, 6, 3), 255, np.uint8)
    return {
        "all-black": [black] * 4,
        "saturated": [white] * 4,
        "black-white flicker": [black, white] * 3,
        "single pixel": [rng.integers(0, 256, (1, 1, 3), dtype=np.uint8) for _ in range(6)],
        "odd size": [rng.integers(0, 256, (7, 5, 3), dtype=np.uint8) for _ in range(6)],
        "one channel": [rng.integers(0, 256, (5, 9), dtype=np.uint8) for _ in range(6)],
        "float one channel": [rng.random((9, 5, 1), dtype=np.float32) for _ in range(6)],
        "float three channels": [rng.random((3, 11, 3), dtype=np.float32) for _ in range(6)],
        "float extremes": [np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)] * 3,
        "wide": [rng.integers(0, 256, (2, 300), dtype=np.uint8) for _ in range(4)],
    }


@pytest.mark.parametrize("dvs", [DvsEmulator(), ALL_OPTIONS], ids=["default", "all-options"])
@pytest.mark.parametrize("frame_us", [1, 7, 256, 257, 40_000, 70_000, 1 << 24, 1 << 30])
def test_numba_equals_reference_on_edge_cases(
    rng: np.random.Generator, dvs: DvsEmulator, frame_us: int
) -> None:
    for name, frames in edge_case_frames(rng).items():
        assert_same(dvs, frames, f"{name}, {frame_us} µs frames", frame_us=frame_us)


def test_first_frame_gives_no_events_and_initialises_the_reference(
    rng: np.random.Generator,
) -> None:
    frame = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    events, state = DvsEmulator()(frame, 123)
    assert events.dtype == EVENT_DTYPE and events.shape == (0,), "first frame: empty packet"
    assert np.array_equal(state.log_ref, log_table(20.0, 256)[frame.ravel()])
    assert state.t == 123 and state.frame_index == 0


def test_an_unchanged_frame_is_recognised_and_equals_the_full_step(shared_data: Path) -> None:
    """A frame equal to the last one skips the per-pixel work; the full step on it would give
    the same: no events and the same reference (no crossing is pending after a step)."""
    frames = [
        cv2.resize(f, (160, 120)) for f in read_clip(shared_data / "videos" / "carphone.mp4", 3)
    ]
    for dvs in (DvsEmulator(), DvsEmulator(threshold_mismatch=0.1, refractory_us=50_000, seed=3)):
        _, states = run(dvs, frames)
        last = states[-1]
        same = frames[-1].copy()
        skipped, fast = dvs(same, last.t + FRAME_US, last)
        full, slow = dvs(same, last.t + FRAME_US, last._replace(frame=np.zeros_like(same)))
        assert skipped.shape[0] == full.shape[0] == 0
        assert fast.levels is last.levels, "the unchanged frame's state shares its arrays"
        assert np.array_equal(fast.log_ref, slow.log_ref)
        assert np.array_equal(fast.last_event_t, slow.last_event_t)
        assert (fast.t, fast.frame_index) == (slow.t, slow.frame_index)
        moved = same.copy()
        moved[60, 80] ^= 0xFF
        assert dvs(moved, fast.t + FRAME_US, fast)[0].shape[0] > 0, "one changed pixel is seen"


def test_the_unchanged_frame_compare_sees_a_change_in_any_byte(rng: np.random.Generator) -> None:
    """Words, whole 4 KiB blocks and the last bytes: a flip anywhere is a difference."""
    for size in (1, 7, 8, 9, 4096, 4103, 12_345):
        a = rng.integers(0, 256, size, dtype=np.uint8)
        assert _same_bytes(a, a.copy())
        for where in {0, size // 2, size - 1}:
            b = a.copy()
            b[where] ^= 0x10
            assert not _same_bytes(a, b), f"a flip at byte {where} of {size} is missed"
    assert not _same_bytes(np.zeros(8, np.uint8), np.zeros(9, np.uint8))
    floats = rng.random((5, 3), dtype=np.float32)
    assert _same_bytes(floats, floats.copy())


def test_static_scene_gives_no_events_without_noise_or_leak(rng: np.random.Generator) -> None:
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    packets, _ = run(DvsEmulator(threshold_mismatch=0.1, refractory_us=10), [frame] * 5)
    assert sum(p.shape[0] for p in packets) == 0, "an unchanged frame must give no event"


def test_event_counts_match_threshold_crossings(rng: np.random.Generator) -> None:
    """Count per pixel = floor(|log change| / threshold), checked in float64 independently."""
    dvs = DvsEmulator(on_threshold=0.2, off_threshold=0.3)
    first = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    second = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    packets, _ = run(dvs, [first, second])
    events = packets[1]
    lut = log_table(20.0, 256).astype(np.float64)
    change = lut[second] - lut[first]
    on = np.zeros((40, 50), np.int64)
    off = np.zeros((40, 50), np.int64)
    np.add.at(on, (events["y"][events["p"] == 1], events["x"][events["p"] == 1]), 1)
    np.add.at(off, (events["y"][events["p"] == 0], events["x"][events["p"] == 0]), 1)
    assert not np.any((on > 0) & (off > 0)), "one pixel cannot fire both polarities in a frame"
    eps = 1e-5
    assert np.all(on * 0.2 <= np.maximum(change, 0) + eps), "more ON events than crossings"
    assert np.all((on + 1) * 0.2 > np.maximum(change, 0) - eps), "missing ON events"
    assert np.all(off * 0.3 <= np.maximum(-change, 0) + eps), "more OFF events than crossings"
    assert np.all((off + 1) * 0.3 > np.maximum(-change, 0) - eps), "missing OFF events"
    assert on.max() >= 2 and off.max() >= 2, "large changes must give several events per pixel"


def test_black_to_white_gives_one_event_per_threshold_step() -> None:
    dvs = DvsEmulator(on_threshold=0.5, off_threshold=0.5)
    black, white = np.zeros((2, 3), np.uint8), np.full((2, 3), 255, np.uint8)
    packets, _ = run(dvs, [black, white, black])
    expected = math.floor(math.log(255.0) / 0.5)
    assert packets[1].shape[0] == 6 * expected, f"each pixel must give {expected} ON events"
    assert np.all(packets[1]["p"] == 1) and np.all(packets[2]["p"] == 0)
    assert packets[2].shape[0] == 6 * expected, "going back must give as many OFF events"


def test_a_pixel_back_at_an_earlier_level_gives_its_crossing_back() -> None:
    """Issue 13: levels 46, 58, 46, 46 give one ON then one OFF event (d1 = -1 threshold
    exactly), the OFF at the end of its step, and the reference is back at log(46)."""
    frames = [np.full((1, 1), v, np.uint8) for v in (46, 58, 46, 46)]
    lut = log_table(20.0, 256)
    for reference in (False, True):
        packets, states = run(DvsEmulator(), frames, reference=reference)
        polarities = [p["p"].tolist() for p in packets]
        assert polarities == [[], [1], [0], []], f"reference={reference}: got {polarities}"
        assert packets[2]["t"][0] == states[2].t - 1, "an exact crossing is stamped at t1 - 1"
        assert states[3].log_ref[0] == lut[46], "the reference must be back at log(46)"


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_returning_to_the_first_frame_gives_as_many_off_as_on_events(
    rng: np.random.Generator, threshold: float, dtype: type
) -> None:
    """Equal ON and OFF thresholds, no leak: the reference is the first log value plus
    (ON - OFF) thresholds and lies within one threshold of the log value, so a pixel back
    at its first level must have given as many OFF events as ON events."""
    if dtype == np.uint8:
        first = rng.integers(0, 256, (30, 40)).astype(np.uint8)
        steps = [np.clip(first + rng.integers(-60, 61, first.shape), 0, 255) for _ in range(6)]
    else:
        first = rng.random((30, 40), dtype=np.float32)
        steps = [np.clip(first + rng.uniform(-0.3, 0.3, first.shape), 0, 1) for _ in range(6)]
    frames = [first, *(f.astype(dtype) for f in steps), first]
    dvs = DvsEmulator(on_threshold=threshold, off_threshold=threshold)
    for reference in (False, True):
        packets, states = run(dvs, frames, reference=reference)
        events = np.concatenate(packets)
        net = np.zeros(first.size, np.int64)
        np.add.at(
            net,
            events["y"].astype(np.int64) * 40 + events["x"],
            2 * events["p"].astype(np.int64) - 1,
        )
        unbalanced = np.count_nonzero(net)
        assert unbalanced == 0, (
            f"reference={reference}: {unbalanced} pixels back at their first level have "
            f"ON - OFF != 0 (of {events.shape[0]} events)"
        )
        assert np.array_equal(states[-1].log_ref, states[0].log_ref), "reference not restored"


@pytest.mark.parametrize(
    "dvs",
    [DvsEmulator(), DvsEmulator(on_threshold=0.25, off_threshold=0.15, threshold_mismatch=0.05)],
    ids=["default", "mismatch"],
)
def test_event_counts_equal_a_float64_model_on_a_real_clip(
    shared_data: Path, dvs: DvsEmulator
) -> None:
    """Per pixel and frame, the signed event count equals the documented scheme computed
    independently in float64 (floor of the change over the threshold, >= counts)."""
    frames = read_clip(shared_data / "videos" / "carphone.mp4", 60)
    packets, states = run(dvs, frames)
    lut = log_table(20.0, 256).astype(np.float64)
    c_on = states[0].on_thresholds.astype(np.float64)
    c_off = states[0].off_thresholds.astype(np.float64)
    ref = lut[states[0].levels]
    missing = 0
    for i in range(1, len(frames)):
        change = lut[states[i].levels] - ref
        on = np.floor(change / c_on).astype(np.int64)
        off = np.floor(-change / c_off).astype(np.int64)
        expected = np.where(change >= c_on, on, 0) - np.where(change <= -c_off, off, 0)
        ref = ref + np.where(expected > 0, expected * c_on, expected * c_off)
        events = packets[i]
        got = np.zeros(expected.shape[0], np.int64)
        pixel = events["y"].astype(np.int64) * frames[0].shape[1] + events["x"]
        np.add.at(got, pixel, 2 * events["p"].astype(np.int64) - 1)
        missing += int(np.abs(got - expected).sum())
    total = sum(p.shape[0] for p in packets)
    assert missing == 0, f"{missing} of {total} events differ from the float64 model"


def test_event_times_lie_in_the_frame_interval_sorted_and_interpolated(
    rng: np.random.Generator,
) -> None:
    dvs = DvsEmulator(on_threshold=0.1, off_threshold=0.1)
    frames = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(4)]
    packets, states = run(dvs, frames, t_first=5_000)
    lut = log_table(20.0, 256).astype(np.float64)
    threshold = float(states[0].on_thresholds[0])  # 0.1 on the LOG_STEP grid
    for i in range(1, len(frames)):
        events, t0, t1 = packets[i], states[i - 1].t, states[i].t
        validate_events(events, what=f"packet {i}")
        assert events["t"].min() >= t0 and events["t"].max() < t1, f"packet {i}: t not in [t0, t1)"
        # Crossing times along the line from the previous log value to this one, in float64.
        ref = states[i - 1].log_ref.astype(np.float64).reshape(16, 16)
        d0 = lut[frames[i - 1]] - ref
        d1 = lut[frames[i]] - ref
        first: dict[tuple[int, int], int] = {}
        for e in events:
            first.setdefault((int(e["y"]), int(e["x"])), int(e["t"]))
        for (y, x), t in first.items():
            sign = 1 if d1[y, x] > d0[y, x] else -1
            frac = (sign * threshold - d0[y, x]) / (d1[y, x] - d0[y, x])
            expected = t0 + math.floor(min(max(frac, 0.0), 1.0) * (t1 - t0))
            assert abs(t - expected) <= 1, (
                f"pixel {(x, y)}: first event at {t}, expected {expected}"
            )


def test_packets_have_zeroed_padding(rng: np.random.Generator) -> None:
    frames = [rng.integers(0, 256, (9, 9, 3), dtype=np.uint8) for _ in range(3)]
    for events in run(DvsEmulator(), frames)[0][1:]:
        padding = events.view(np.uint8).reshape(-1, 16)[:, 13:]
        assert events.shape[0] > 0 and not padding.any(), "padding bytes must be zero"


def test_refractory_period_spaces_each_pixels_signal_events(rng: np.random.Generator) -> None:
    dvs = DvsEmulator(on_threshold=0.05, off_threshold=0.05, refractory_us=4_000)
    frames = [rng.integers(0, 256, (12, 12), dtype=np.uint8) for _ in range(5)]
    packets, _ = run(dvs, frames)
    events = np.concatenate(packets[1:])
    unlimited = sum(p.shape[0] for p in run(DvsEmulator(0.05, 0.05), frames)[0])
    assert 0 < events.shape[0] < unlimited, "the refractory period must drop some events"
    order = np.lexsort((events["t"], events["x"], events["y"]))
    pixel = events["y"][order].astype(np.int64) * 12 + events["x"][order]
    gaps = np.diff(events["t"][order])[np.diff(pixel) == 0]
    assert gaps.min() >= 4_000, f"two events of one pixel {gaps.min()} µs apart (< 4000)"


def test_leak_makes_static_pixels_fire_on_events_at_about_the_rate() -> None:
    dvs = DvsEmulator(leak_rate_hz=2.0)
    frame = np.full((20, 20), 128, np.uint8)
    packets, _ = run(dvs, [frame] * 31)
    events = np.concatenate(packets)
    seconds = 30 * FRAME_US * 1e-6
    rate = events.shape[0] / (400 * seconds)
    assert np.all(events["p"] == 1), "leak events are ON events"
    assert 1.0 <= rate <= 2.5, f"leak rate {rate:.2f} Hz per pixel, expected about 2 Hz"


def test_shot_noise_rate_and_seeding() -> None:
    dvs = DvsEmulator(shot_noise_rate_hz=5.0, seed=3)
    frame = np.full((50, 50), 100, np.uint8)
    packets, _ = run(dvs, [frame] * 21)
    events = np.concatenate(packets)
    expected = 5.0 * 2500 * 20 * FRAME_US * 1e-6
    assert abs(events.shape[0] - expected) < 5 * math.sqrt(expected), "noise count off Poisson"
    assert 0.4 < events["p"].mean() < 0.6, "noise polarity must be balanced"
    again = np.concatenate(run(dvs, [frame] * 21)[0])
    assert again.tobytes() == events.tobytes(), "same seed must give the same noise"
    other = np.concatenate(run(DvsEmulator(shot_noise_rate_hz=5.0, seed=4), [frame] * 21)[0])
    assert other.tobytes() != events.tobytes(), "another seed must give other noise"


def test_threshold_mismatch_is_seeded_and_clipped() -> None:
    frame = np.zeros((30, 30), np.uint8)
    _, a = DvsEmulator(threshold_mismatch=0.5, seed=1)(frame, 0)
    _, b = DvsEmulator(threshold_mismatch=0.5, seed=1)(frame, 0)
    _, c = DvsEmulator(threshold_mismatch=0.5, seed=2)(frame, 0)
    assert np.array_equal(a.on_thresholds, b.on_thresholds), "same seed, same thresholds"
    assert not np.array_equal(a.on_thresholds, c.on_thresholds), "other seed, other thresholds"
    assert a.on_thresholds.min() >= np.float32(0.01), "thresholds clipped at min_threshold"
    assert 0.05 < a.on_thresholds.std() < 0.15, "mismatch spread ~ 0.5 * 0.2"


def test_steps_do_not_modify_the_state_they_are_given(rng: np.random.Generator) -> None:
    frames = [rng.integers(0, 256, (10, 10), dtype=np.uint8) for _ in range(2)]
    _, state = ALL_OPTIONS(frames[0], 0)
    _, state = ALL_OPTIONS(frames[1], 10_000, state)
    copies = [np.copy(a) for a in (state.log_ref, state.levels, state.last_event_t)]
    first, _ = ALL_OPTIONS(frames[0], 20_000, state)
    again, _ = ALL_OPTIONS(frames[0], 20_000, state)
    assert first.tobytes() == again.tobytes(), "same state and frame must give the same events"
    for before, after in zip(
        copies, (state.log_ref, state.levels, state.last_event_t), strict=True
    ):
        assert np.array_equal(before, after), "a step modified the state it was given"
    assert np.any(state.last_event_t != NEVER), "refractory state must record event times"


def test_a_new_frame_format_restarts_the_stream() -> None:
    dvs = DvsEmulator()
    _, state = dvs(np.zeros((4, 4), np.uint8), 0)
    events, state = dvs(np.full((5, 4), 255, np.uint8), 10, state)
    assert events.shape == (0,) and state.format_changes == 1 and state.frame_index == 0
    events, state = dvs(np.ones((5, 4), np.float32), 20, state)
    assert events.shape == (0,) and state.format_changes == 2, "dtype change restarts too"
    events, state = dvs(np.zeros((5, 4), np.float32), 30, state)
    assert events.shape[0] > 0 and state.format_changes == 2


@pytest.mark.parametrize(
    ("t_second", "message"),
    [(100, "not within"), (50, "not within"), (100 + (1 << 30) + 1, "not within")],
)
def test_frame_times_must_increase(t_second: int, message: str) -> None:
    dvs = DvsEmulator()
    _, state = dvs(np.zeros((4, 4), np.uint8), 100)
    with pytest.raises(ValueError, match=message):
        dvs(np.zeros((4, 4), np.uint8), t_second, state)


def test_runaway_event_counts_are_refused_not_allocated() -> None:
    noisy = DvsEmulator(shot_noise_rate_hz=1000.0)
    _, state = noisy(np.zeros((480, 640), np.uint8), 0)
    with pytest.raises(ValueError, match="more than 2\\*\\*27"):
        noisy(np.zeros((480, 640), np.uint8), 1 << 30, state)
    leaky = DvsEmulator(leak_rate_hz=1000.0, min_threshold=0.001, on_threshold=0.001)
    for step in (leaky, leaky.reference):
        _, state = step(np.zeros((400, 400), np.uint8), 0)
        with pytest.raises(ValueError, match="more than 2\\*\\*27"):
            step(np.zeros((400, 400), np.uint8), 1_000_000, state)


@pytest.mark.parametrize(
    ("t", "message"),
    [(1.5, "expected an integer time"), (True, "expected an integer"), (1 << 62, "outside")],
)
def test_bad_frame_times_are_rejected(t: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DvsEmulator()(np.zeros((4, 4), np.uint8), t)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((4, 5), dtype=np.float16), "dtype float16; expected uint8"),
        (np.zeros((4, 5), dtype=np.int32), "dtype int32; expected uint8"),
        (np.zeros((3, 4, 5, 3), dtype=np.uint8), "4 dimensions"),
        (np.full((4, 5), np.nan, dtype=np.float32), "finite intensities"),
    ],
)
def test_bad_frames_are_rejected_with_a_message(frame: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DvsEmulator()(frame, 0)


@pytest.mark.parametrize("dvs", [DvsEmulator(), ALL_OPTIONS], ids=["default", "all-options"])
@pytest.mark.parametrize(
    ("size", "frame_us"),
    [
        ((640, 480), FRAME_US),  # two radix passes (the common case)
        ((333, 97), 200),  # one pass; a size that is no multiple of the kernel's chunks
        ((64, 48), 100_000),  # three passes; fewer chunks than bands
        ((7, 3), FRAME_US),  # one chunk
    ],
)
def test_threads_give_the_events_of_one_thread(
    dvs: DvsEmulator, size: tuple[int, int], frame_us: int, shared_data: Path
) -> None:
    """Bands of rows, then a parallel stable radix sort: the same packets and states."""
    from dataclasses import replace

    frames = [
        cv2.resize(f, size)
        for f in read_clip(shared_data / "videos" / "kinetics_arm_wrestling.mp4", 8)
    ]
    one, one_states = run(dvs, frames, frame_us=frame_us)
    for threads in (2, 3):
        many, many_states = run(replace(dvs, threads=threads), frames, frame_us=frame_us)
        for i, (a, b) in enumerate(zip(one, many, strict=True)):
            assert a.tobytes() == b.tobytes(), f"{threads} threads, frame {i}: packets differ"
            assert np.array_equal(one_states[i].log_ref, many_states[i].log_ref)
            assert np.array_equal(one_states[i].last_event_t, many_states[i].last_event_t)
    assert sum(len(p) for p in one) > (0 if size == (7, 3) else 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_threshold": 0.0}, "on_threshold is 0.0"),
        ({"off_threshold": float("nan")}, "off_threshold is nan"),
        ({"threshold_mismatch": -0.1}, "threshold_mismatch is -0.1"),
        ({"refractory_us": -1}, "refractory_us is -1"),
        ({"refractory_us": 1.5}, "refractory_us is 1.5"),
        ({"leak_rate_hz": 1e9}, "leak_rate_hz is"),
        ({"shot_noise_rate_hz": -1.0}, "shot_noise_rate_hz is -1.0"),
        ({"linear_below": 1.0}, "linear_below is 1.0"),
        ({"seed": -3}, "seed is -3"),
        ({"channel_order": "bgra"}, "channel_order is 'bgra'"),
        ({"on_threshold": "0.2"}, "on_threshold is '0.2'"),
        ({"threads": 0}, r"threads is 0; expected an integer in \[1, 64\]"),
        ({"threads": True}, "threads is True"),
    ],
)
def test_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DvsEmulator(**kwargs)


def test_log_table_is_lin_log_and_float_levels_agree_with_uint8() -> None:
    small, large = log_table(20.0, 256), log_table(20.0, 65536)
    assert np.array_equal(small, large[::257]), "uint8 level v must equal 16-bit level 257 v"
    assert small[0] == 0.0 and np.all(np.diff(small) > 0), "response must start at 0 and rise"
    assert np.isclose(small[255], math.log(255.0)), "log above the knee"
    assert np.isclose(small[10], 10 * math.log(20.0) / 20.0), "linear below the knee"


def test_log_table_and_thresholds_lie_on_the_log_grid() -> None:
    """Table values and thresholds are multiples of LOG_STEP (what makes the float32 model
    exact), within half a step of the lin-log curve and never below min_threshold."""
    for levels in (256, 65536):
        table = log_table(20.0, levels).astype(np.float64)
        steps = table / LOG_STEP
        assert np.array_equal(steps, np.round(steps)), f"{levels}-level table off the grid"
        grey = np.arange(levels) * (255.0 / (levels - 1))
        with np.errstate(divide="ignore"):
            curve = np.where(grey >= 20, np.log(np.maximum(grey, 20.0)), grey * math.log(20) / 20)
        assert np.abs(table - curve).max() <= LOG_STEP / 2, "table more than half a step off"
    black = np.zeros((20, 20), np.uint8)
    _, state = DvsEmulator(0.2, 0.1, threshold_mismatch=0.5, seed=3)(black, 0)
    for thresholds in (state.on_thresholds, state.off_thresholds):
        steps = thresholds.astype(np.float64) / LOG_STEP
        assert np.array_equal(steps, np.round(steps)), "thresholds off the grid"
        assert thresholds.min() >= np.float32(0.01), "rounding took a threshold below the min"
    _, state = DvsEmulator(0.2, 0.1)(black, 0)
    assert 0 <= state.on_thresholds[0] - 0.2 < LOG_STEP, "0.2 must round up by under a step"


@st.composite
def frame_sequences(draw: st.DrawFn) -> list[np.ndarray]:
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    shape = draw(st.sampled_from([(height, width), (height, width, 3)]))
    if draw(st.booleans()):
        element = hnp.arrays(np.uint8, shape)
    else:
        element = hnp.arrays(np.float32, shape, elements=st.floats(0.0, 1.0, width=32))
    return draw(st.lists(element, min_size=1, max_size=5))


@given(
    frames=frame_sequences(),
    frame_us=st.integers(1, 100_000),
    on=st.floats(0.02, 1.0),
    mismatch=st.sampled_from([0.0, 0.2]),
    refractory=st.sampled_from([0, 3_000]),
    leak=st.sampled_from([0.0, 50.0]),
    noise=st.sampled_from([0.0, 500.0]),
)
@settings(max_examples=60, deadline=None)
def test_numba_equals_reference_property(
    frames: list[np.ndarray],
    frame_us: int,
    on: float,
    mismatch: float,
    refractory: int,
    leak: float,
    noise: float,
) -> None:
    dvs = DvsEmulator(
        on_threshold=on,
        off_threshold=0.1,
        threshold_mismatch=mismatch,
        refractory_us=refractory,
        leak_rate_hz=leak,
        shot_noise_rate_hz=noise,
    )
    assert_same(dvs, frames, "hypothesis frames", frame_us=frame_us)
