"""The camera node on real clips: every frame in order, RGB, resized, paced; clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.nodes.camera import CameraNode, CaptureError
from respike.nodes.runtime import EXIT_CANNOT_START, NodeRunner, Wiring
from respike.nodes.testing import MockIO


@pytest.fixture
def clip(shared_data: Path) -> Path:
    return shared_data / "videos" / "carphone.mp4"


def reference_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_a_file_is_published_frame_by_frame_in_rgb_then_ends(clip: Path) -> None:
    io = MockIO(CameraNode, "cam", CameraNode.Params(source=str(clip), speed=0))
    io.run_source()
    expected = reference_frames(clip)
    assert len(io.outputs) == len(expected) == 120
    assert [m.meta["index"] for _, m in io.outputs] == list(range(120))
    np.testing.assert_array_equal(io.outputs[7][1].arrays["frame"], expected[7])
    times = [m.t for _, m in io.outputs]
    assert times == sorted(times), "capture times must not go backwards"


def test_resizing_and_pacing_follow_the_parameters(
    clip: Path, run_paced: Callable[..., None]
) -> None:
    speed, count = 4.0, 40
    io = MockIO(
        CameraNode, "cam", CameraNode.Params(source=str(clip), width=64, height=48, speed=speed)
    )
    run_paced(io, max_calls=count)
    assert io.outputs[0][1].arrays["frame"].shape == (48, 64, 3)
    times = [m.t for _, m in io.outputs]
    assert len(times) == count
    # The schedule never publishes early and does not drift, so a load spike only makes the
    # mean period longer by its length over 39 periods; 1x speed would read 4, no pacing ~0.
    period_us = 1e6 / (29.97 * speed)
    ratio = (times[-1] - times[0]) / (count - 1) / period_us
    assert 0.5 < ratio < 2.0, (
        f"files are paced by their fps times speed: capture times {ratio:.2f} periods apart"
    )


def test_loop_restarts_a_file_instead_of_ending(clip: Path) -> None:
    io = MockIO(CameraNode, "cam", CameraNode.Params(source=str(clip), speed=0, loop=True))
    io.run_source(max_calls=250)
    indices = [m.meta["index"] for _, m in io.outputs]
    assert len(indices) > 240, "a looping file keeps producing"
    np.testing.assert_array_equal(
        io.outputs[120][1].arrays["frame"], io.outputs[0][1].arrays["frame"]
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/clip.mp4", "video file '/nonexistent/clip.mp4' does not exist"),
        ("57", "camera device '57'"),
    ],
)
def test_missing_sources_are_named_in_the_error(source: str, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        MockIO(CameraNode, "cam", CameraNode.Params(source=source))


def test_a_file_without_frames_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(CaptureError, match=str(broken)):
        MockIO(CameraNode, "cam", CameraNode.Params(source=str(broken))).run_source()


def test_a_node_that_cannot_start_exits_with_the_no_restart_code() -> None:
    runner = NodeRunner(CameraNode, "cam", CameraNode.Params(source="/nonexistent.mp4"), Wiring())
    assert runner.run() == EXIT_CANNOT_START
