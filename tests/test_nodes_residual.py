"""The residual node: the live kernels on real video, through sockets, with bad input handled."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.events.emulator import DvsEmulator
from respike.events.residual import ResidualFrames
from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint
from respike.nodes.residual import ResidualNode
from respike.nodes.testing import MockIO
from respike.stream.messages import Message
from respike.stream.sockets import Delivery, Subscriber


def frame_message(frame: np.ndarray, t: int, **meta: object) -> Message:
    return Message("cam/frames", "frame", t, {"frame": frame}, dict(meta))


def test_keyframes_every_stride_with_zero_residual_and_truth_passed_on(
    rng: np.random.Generator,
) -> None:
    io = MockIO(
        ResidualNode, "res", ResidualNode.Params(stride=4, width=32, height=24, events=True)
    )
    for i in range(9):
        io.send(
            "frames",
            frame_message(
                rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                1_000_000 + 33_333 * i,
                action="wave",
                index=i,
            ),
        )
    keyframes = [m for port, m in io.outputs if port == "keyframes"]
    residuals = [m for port, m in io.outputs if port == "residual"]
    assert [m.meta["index"] for m in keyframes] == [0, 4, 8]
    assert residuals[0].arrays["residual"].shape == (1, 24, 32)
    assert not residuals[4].arrays["residual"].any(), "a key frame's residual is zero"
    assert residuals[5].arrays["residual"].any()
    assert all(m.meta["action"] == "wave" for _, m in io.outputs)
    assert {m.meta["key_residual"] for m in residuals} == {"zero"}, "the model node checks it"
    events = [m for port, m in io.outputs if port == "events"]
    assert len(events[0].arrays["events"]) == 0, "the first frame has no events"
    assert sum(len(m.arrays["events"]) for m in events) > 0


def test_previous_key_residual_makes_key_frames_carry_the_change(
    rng: np.random.Generator,
) -> None:
    io = MockIO(ResidualNode, "res", ResidualNode.Params(stride=4, key_residual="previous"))
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(5)]
    for i, frame in enumerate(frames):
        io.send("frames", frame_message(frame, 1000 * i))
    residuals = [m for port, m in io.outputs if port == "residual"]
    expected, state = None, None
    for frame in frames:
        expected, state = ResidualFrames(stride=4, key_residual="previous", channel_order="rgb")(
            frame, state
        )
    assert residuals[4].arrays["residual"].any(), "key frame 4: minus key frame 0, not zero"
    assert np.array_equal(residuals[4].arrays["residual"], expected)
    assert residuals[4].meta["key_residual"] == "previous"


def test_bad_frames_are_rejected_and_a_size_change_restarts_the_streams(
    rng: np.random.Generator,
) -> None:
    io = MockIO(ResidualNode, "res", ResidualNode.Params(events=True))
    io.send("frames", frame_message(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), 1000))
    with pytest.raises(ValueError, match="int16"):
        io.send("frames", frame_message(np.zeros((20, 30, 3), np.int16), 2000))
    with pytest.raises(ValueError, match=r"arrays\['frame'\]"):
        io.send("frames", Message("cam/frames", "frame", 3000, {"data": np.zeros(3)}))
    io.send("frames", frame_message(rng.integers(0, 256, (10, 15, 3), dtype=np.uint8), 4000))
    assert io.node.stats()["format_changes"] == 1
    residual = [m for port, m in io.outputs if port == "residual"][-1]
    assert (
        residual.arrays["residual"].shape == (1, 10, 15) and not residual.arrays["residual"].any()
    )


def offline(path: Path, stride: int, size: tuple[int, int]) -> tuple[list[np.ndarray], int]:
    """The kernels run directly on the file's frames, as the node should."""
    residuals, events = [], 0
    frames = ResidualFrames(stride=stride, size=size, channel_order="rgb")
    dvs = DvsEmulator(channel_order="rgb")
    capture = cv2.VideoCapture(str(path))
    r_state = d_state = None
    t = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            return residuals, events
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        residual, r_state = frames(rgb, r_state)
        residuals.append(residual)
        t += 33_367
        packet, d_state = dvs(rgb, t, d_state)
        events += len(packet)


@pytest.mark.slow
def test_video_file_through_camera_and_residual_processes_matches_the_offline_kernels(
    shared_data: Path, ipc_dir: Path, spawn
) -> None:
    clip = shared_data / "videos" / "carphone.mp4"
    cam, res = f"ipc://{ipc_dir}/cam.sock", f"ipc://{ipc_dir}/res.sock"
    residuals = Subscriber(res, "res/residual", delivery=Delivery.LOSSLESS)
    events = Subscriber(res, "res/events", delivery=Delivery.LOSSLESS)
    spawn(
        "node",
        "camera",
        "--name",
        "cam",
        "--output",
        cam,
        "--lossless-outputs",
        "--expect",
        "frames=1",
        "--source",
        str(clip),
        "--speed",
        "0",
    )
    spawn(
        "node",
        "residual",
        "--name",
        "res",
        "--output",
        res,
        "--lossless-outputs",
        "--expect",
        "residual=1",
        "--expect",
        "events=1",
        "--input",
        f"frames=cam/frames@{cam}",
        "--delivery",
        "frames=lossless",
        "--width",
        "44",
        "--height",
        "36",
        "--events",
        "true",
    )
    got: dict[str, list[Message]] = {"residual": [], "events": []}
    done: set[str] = set()
    deadline = time.monotonic() + 120
    while done != {"residual", "events"} and time.monotonic() < deadline:
        for name, subscriber in (("residual", residuals), ("events", events)):
            for message in subscriber.receive(timeout=0.2):
                if message.end:
                    done.add(name)
                else:
                    got[name].append(message)
    residuals.close()
    events.close()
    expected, expected_events = offline(clip, 4, (44, 36))
    assert len(got["residual"]) == len(expected) == 120, "every frame gives one residual"
    for message, reference in zip(got["residual"], expected, strict=True):
        np.testing.assert_array_equal(message.arrays["residual"], reference)
    n_events = sum(len(m.arrays["events"]) for m in got["events"])
    # Event times follow the capture clock, but which crossings happen does not depend on it.
    assert n_events == expected_events, (n_events, expected_events)


def test_a_node_fitted_to_a_checkpoint_makes_the_input_it_expects(
    rng: np.random.Generator,
) -> None:
    spec = read_checkpoint_info(resolve_checkpoint("actions")).input_spec
    io = MockIO(ResidualNode, "res", ResidualNode.Params(checkpoint="actions"))
    for i in range(5):
        io.send("frames", frame_message(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i))
    residuals = [m for port, m in io.outputs if port == "residual"]
    assert residuals[4].arrays["residual"].shape == (spec.snn_channels, *spec.snn_size)
    assert spec.key_residual == "previous" and residuals[4].meta["key_residual"] == "previous"
    assert residuals[4].arrays["residual"].any(), "key frame 4 carries the change (previous)"
