"""The camera node on real clips: every frame in order, RGB, resized, paced; clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.nodes.camera import CameraNode, CaptureError, StillFilter
from respike.nodes.runtime import EXIT_CANNOT_START, NodeRunner, Wiring
from respike.nodes.testing import MockIO

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


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


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(frame + rng.normal(0.0, sigma, frame.shape), 0, 255).astype(np.uint8)


def test_a_still_scene_goes_quiet_after_its_settling_frames_and_sends_heartbeats() -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    still = StillFilter(below=0.02, after=12, heartbeat_s=1.0)
    sent = [still.send(noisy(scene, rng), now=i / 32) for i in range(90)]
    assert all(sent[:13]), "the first frame and 12 still ones after it are sent"
    assert [i for i in range(13, 90) if sent[i]] == [44, 76], "then one a second after the last"
    assert still.held == 90 - 15
    moved = noisy(scene, rng)
    moved[200:224, 300:324] += 40  # a 24 px patch, 40 grey levels brighter
    assert still.send(moved, now=3.0), "a small moving patch is not still"
    assert still.send(noisy(moved, rng), now=3.03), "settling frames are sent again"


def test_a_slow_drift_adds_up_until_it_is_sent() -> None:
    rng = np.random.default_rng(1)
    scene = np.full((48, 64, 3), 100, np.uint8)
    still = StillFilter(below=0.02, after=0, heartbeat_s=100.0)
    sent = [still.send(noisy(scene + i // 2, rng, 0.5), now=i) for i in range(1, 40)]
    first = sent.index(True, 1)
    assert 8 <= first <= 14, (
        f"a drift of 0.5 level a frame is sent once it passes 5 levels ({first})"
    )
    assert not any(sent[1:first])


def test_a_negative_threshold_sends_every_frame_and_a_new_size_always_changes() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    assert all(StillFilter(-1.0, 0, 1.0).send(frame, now=i) for i in range(5))
    still = StillFilter(0.02, 0, 100.0)
    assert still.send(frame, 0) and not still.send(frame, 1)
    assert still.send(np.zeros((96, 128, 3), np.uint8), 2)


def test_the_camera_skips_still_frames_of_a_file_and_keeps_their_indices(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    texture = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(texture, (0, 0), 2.0)  # a scene's edges, not pixel-sized noise
    path = tmp_path / "still-then-moving.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for i in range(60):
        frame = scene.copy() if i < 40 else np.roll(scene, 4 * (i - 39), axis=1)
        writer.write(noisy(frame, rng))
    writer.release()
    params = CameraNode.Params(source=str(path), speed=0, still_below=0.02, still_after=5)
    io = MockIO(CameraNode, "cam", params)
    io.run_source()
    indices = [m.meta["index"] for _, m in io.outputs]
    # Quiet after 5 still frames but for a frame a second on the file's clock (at speed 0 too),
    # until it moves.
    assert indices == [*range(6), 35, *range(40, 60)]
    assert io.node.stats() == {"frames": 60.0, "still_frames_held": 33.0}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"still_below": 1.5}, "still_below is 1.5; expected < 1"),
        ({"still_after": -1}, "still_after must be ≥ 0"),
        ({"still_heartbeat": 0.0}, "still_heartbeat > 0"),
        ({"threads": -1}, "threads is -1; expected ≥ 0"),
    ],
)
def test_bad_still_settings_are_named(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CameraNode.Params(source="0", **params)


def test_the_webcam_pipeline_camera_goes_quiet_only_once_the_model_holds(
    clip: Path, tmp_path: Path
) -> None:
    """camera → residual → model as in ``pipelines/webcam.toml``: of a still scene the model
    computes its settle steps from the frames the camera sends before it goes quiet, so each
    frame sent while quiet is a held step, and a scene that moves again is computed."""
    import tomllib

    from respike.nodes.model import ModelNode
    from respike.nodes.residual import ResidualNode

    webcam = tomllib.loads((PIPELINES / "webcam.toml").read_text())["nodes"]
    still = {k: v for k, v in webcam["source"]["params"].items() if k.startswith("still_")}
    assert still["still_below"] > 0, "the live demo's camera goes quiet"
    frames = reference_frames(clip)
    rng = np.random.default_rng(3)
    path = tmp_path / "still-then-moving.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for i in range(90):  # 3 s still, then 1 s of the clip
        writer.write(noisy(frames[0] if i < 60 else frames[i - 60], rng)[..., ::-1].copy())
    writer.release()
    camera = MockIO(CameraNode, "camera", CameraNode.Params(str(path), speed=0, **still))
    camera.run_source()
    residual = MockIO(ResidualNode, "residual", ResidualNode.Params(checkpoint="actions"))
    model = MockIO(ModelNode, "model", ModelNode.Params(checkpoint="actions", compiled_step="off"))
    for _, frame in camera.outputs:
        residual.send("frames", frame)
        for port, out in residual.outputs:
            model.send("steps" if port == "residual" else "keyframes", out)
        residual.outputs.clear()
    sent = [m.meta["index"] for _, m in camera.outputs]
    assert sent[:13] == list(range(13)) and 13 < sent[13] < 60, "quiet after 12 still frames"
    assert sent[-29:] == list(range(61, 90)), "every moving frame is sent (60 is the still one)"
    steps = [m.meta["snn_steps"] for _, m in model.outputs]
    quiet = [s for i, s in zip(sent, steps, strict=True) if 13 <= i < 60]
    assert quiet and not any(quiet), "frames sent while quiet are held steps"
    assert model.node.stats()["held_steps"] >= len(quiet)
    assert sum(steps[-29:]) >= 25, "the moving scene is computed"
