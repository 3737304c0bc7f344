"""The dvs replay node on real recordings: every event once, in windows, paced, with offsets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from respike.events.images import rgb_image
from respike.nodes.dvs import DvsNode
from respike.nodes.testing import MockIO
from respike.recorders import open_events


@pytest.fixture
def gesture(shared_data: Path) -> Path:
    return sorted((shared_data / "dvs_gesture10").glob("*.bs2"))[0]


def replay_all(path: Path, **params: object) -> list:
    io = MockIO(DvsNode, "dvs", DvsNode.Params(path=str(path), speed=0, **params))  # type: ignore[arg-type]
    io.run_source()
    return [message for port, message in io.outputs if port == "events"]


def test_every_event_comes_out_once_in_consecutive_windows(gesture: Path) -> None:
    messages = replay_all(gesture, window_us=10_000)
    expected = open_events(gesture).read_all()
    got = np.concatenate([m.arrays["events"] for m in messages])
    np.testing.assert_array_equal(got, expected)
    starts = [m.meta["window_start"] for m in messages]
    assert np.all(np.diff(starts) == 10_000), "windows are consecutive and of the set duration"
    assert all(
        m.meta["window_start"] <= e["t"] < m.meta["window_end"]
        for m in messages
        for e in m.arrays["events"][:1]
    )
    assert (messages[0].meta["width"], messages[0].meta["height"]) == (128, 128)


def test_start_and_end_offsets_cut_the_recording(gesture: Path) -> None:
    full = open_events(gesture).read_all()
    origin = int(full["t"][0])
    messages = replay_all(gesture, window_us=5_000, start_us=200_000, end_us=400_000)
    got = np.concatenate([m.arrays["events"] for m in messages])
    assert got["t"].min() >= origin + 200_000
    assert got["t"].max() < origin + 400_000 + 5_000
    inside = full[(full["t"] >= origin + 200_000) & (full["t"] < origin + 400_000)]
    assert len(got) >= len(inside), "every event inside the cut is replayed"


def test_real_time_pacing_follows_the_recording_clock(
    gesture: Path, run_paced: Callable[..., None]
) -> None:
    speed = 5.0
    io = MockIO(DvsNode, "dvs", DvsNode.Params(path=str(gesture), speed=speed, window_us=50_000))
    run_paced(io)
    packets = [message for port, message in io.outputs if port == "events"]
    assert len(packets) > 20
    sensor_us = packets[-1].meta["window_end"] - packets[0].meta["window_end"]
    replay_us = packets[-1].t - packets[0].t
    # The schedule never publishes early and does not drift: a load spike only adds its own
    # length once. Speed 1 would read 5, no pacing ~0.
    ratio = replay_us * speed / sensor_us
    assert 0.5 < ratio < 2.0, (
        f"speed 5 replays five times faster than the recording: it took {ratio:.2f}x that"
    )


def test_loop_replays_again(gesture: Path) -> None:
    io = MockIO(
        DvsNode, "dvs", DvsNode.Params(path=str(gesture), speed=0, window_us=33_000, loop=True)
    )
    once = len(replay_all(gesture, window_us=33_000))
    io.run_source(max_calls=2 * once + 3)
    assert len(io.outputs) > 2 * once


def test_a_dataset_folder_sample_replays(shared_data: Path) -> None:
    folder = shared_data / "dvs_gesture10"
    io = MockIO(DvsNode, "dvs", DvsNode.Params(path=f"{folder}#2", speed=0))
    io.run_source()
    events = [m.arrays["events"] for _, m in io.outputs if m.kind == "events"]
    assert sum(len(e) for e in events) == 113_063, "3.bs2, the folder's sample 2"
    assert io.outputs[0][1].meta["width"] == 128


def test_missing_and_empty_recordings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such event recording"):
        MockIO(DvsNode, "dvs", DvsNode.Params(path=str(tmp_path / "none.aedat4")))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError):
        MockIO(DvsNode, "dvs", DvsNode.Params(path=str(empty)))
    with pytest.raises(ValueError, match="path is required"):
        DvsNode.Params()


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((4, 5), 200, np.uint8), (4, 5, 3)),
        (np.full((4, 5, 1), 65535, np.uint16), (4, 5, 3)),
        (np.zeros((4, 5, 3), np.uint8), (4, 5, 3)),
    ],
)
def test_frames_become_rgb_uint8(image: np.ndarray, expected: tuple[int, ...]) -> None:
    rgb = rgb_image(image)
    assert rgb.shape == expected and rgb.dtype == np.uint8
    assert int(rgb.max()) == (255 if image.dtype == np.uint16 else int(image.max()))
