"""`ros2_in` and `ros2_out`: ROS 2 topics over DDS between processes, and into the model.

Cyclone DDS runs in-process (no daemon); the tests use their own ``ROS_DOMAIN_ID`` so runs on
one machine do not hear each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from respike.nodes.ros2 import Ros2In, Ros2Out
from respike.nodes.testing import MockIO, message
from respike.stream import kinds
from respike.stream.ros2 import Header, Image, Time
from respike.synthetic import SceneConfig, render_clip

RESPIKE = [sys.executable, "-m", "respike.nodes.cli"]


@pytest.fixture
def domain(monkeypatch: pytest.MonkeyPatch) -> str:
    """A ROS domain of this test's own (0-232)."""
    value = str(100 + os.getpid() % 100)
    monkeypatch.setenv("ROS_DOMAIN_ID", value)
    return value


def test_images_of_each_encoding_become_frames_and_bad_ones_are_counted(domain: str) -> None:
    io = MockIO(Ros2In, params=Ros2In.Params(count=0))
    rgb = np.random.default_rng(0).integers(0, 255, (2, 3, 3), dtype=np.uint8)
    stamp = Header(Time(5, 6000), "cam")
    padded = np.zeros((2, 12), np.uint8)  # step 12 > width * 3: row padding is dropped
    padded[:, :9] = rgb.reshape(2, 9)
    node = io.node
    node._image(Image(stamp, 2, 3, "rgb8", 0, 9, rgb.tobytes()))
    node._image(
        Image(
            stamp, 2, 3, "bgr8", 0, 12, padded[:, [2, 1, 0, 5, 4, 3, 8, 7, 6, 9, 10, 11]].tobytes()
        )
    )
    node._image(Image(stamp, 2, 3, "mono8", 0, 3, rgb[:, :, 0].tobytes()))
    node._image(Image(stamp, 2, 3, "yuv422", 0, 6, bytes(12)))
    node._image(Image(stamp, 2, 3, "rgb8", 0, 9, bytes(17)))
    node._image(Image(stamp, 2, 3, "rgb8", 0, 9, bytes(17)))
    frames = [m for _, m in io.outputs]
    assert [m.t for m in frames] == [5_000_006] * 3
    np.testing.assert_array_equal(frames[0].arrays["frame"], rgb)
    np.testing.assert_array_equal(frames[1].arrays["frame"], rgb)
    np.testing.assert_array_equal(frames[2].arrays["frame"][:, :, 1], rgb[:, :, 0])
    assert dict(node._bad.counts) == {"encoding": 1, "size": 2}
    io.end()


def test_ros2_out_writes_residuals_as_float_images_and_predictions_as_json(domain: str) -> None:
    from respike.nodes.ros2 import _image

    residual = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    step = message(kinds.Residual(), t=5, arrays={"residual": residual})
    image = _image(Header(), "residual", step)
    assert (image.encoding, image.height, image.width, image.step) == ("32FC2", 3, 4, 32)
    back = np.frombuffer(image.data, "<f4").reshape(3, 4, 2).transpose(2, 0, 1)
    np.testing.assert_array_equal(back, residual)
    prediction = message(kinds.Prediction(label="wave", topk=[["wave", 0.9]], energy_uj=3.0), t=7)
    record = kinds.prediction_record(prediction)
    assert record["label"] == "wave" and record["t"] == 7 and record["energy_uj"] == 3.0
    io = MockIO(Ros2Out)
    io.send("predictions", prediction)
    io.send(
        "frames",
        message(kinds.Frame(index=0), t=8, arrays={"frame": np.zeros((4, 6, 3), np.uint8)}),
    )
    io.send("frames", message(kinds.Frame(index=1), t=9, arrays={"frame": np.zeros((4, 6, 2))}))
    io.send("frames", message(kinds.Frame(index=2), t=10))
    assert io.node.stats() == {"sent_predictions": 1.0, "sent_frames": 1.0, "invalid": 2.0}
    io.end()


def test_a_late_transient_local_subscriber_gets_what_was_published_before_it(domain: str) -> None:
    """With ``durability = "transient_local"`` on both sides the writer keeps its last ``depth``
    samples for readers that join later: none is lost to discovery's timing."""
    talk = MockIO(
        Ros2Out, params=Ros2Out.Params(prefix="/late", depth=10, durability="transient_local")
    )
    for index in range(3):
        frame = np.full((2, 4, 3), index, np.uint8)
        talk.send("frames", message(kinds.Frame(index=index), t=index, arrays={"frame": frame}))
    listen = MockIO(
        Ros2In,
        params=Ros2In.Params(
            topic="/late/image", qos="default", depth=10, durability="transient_local", count=3
        ),
    )
    deadline = time.monotonic() + 10
    while listen.node.produce() is not None and time.monotonic() < deadline:
        pass
    frames = listen.published("frames")
    assert [int(m.arrays["frame"][0, 0, 0]) for m in frames] == [0, 1, 2]
    with pytest.raises(ValueError, match="durability 'latched'; expected volatile or"):
        Ros2In.Params(durability="latched")
    listen.end()
    talk.end()


def test_event_packets_and_typed_predictions_cross_dds(domain: str, shared_data: Path) -> None:
    """ros2_out → DDS → ros2_in: a real DVS Gesture recording's packets as evt3 come back event
    for event; typed predictions reach a respike_msgs/msg/Prediction reader."""
    from cyclonedds.sub import DataReader

    from respike.recorders import open_events
    from respike.stream.ros2 import Prediction, qos

    recording = open_events(shared_data / "dvs_gesture10" / "1.bs2")
    width, height = recording.sensor_size
    windows = [w.events for w, _ in zip(recording.windows(33_000), range(40), strict=False)]
    listen = MockIO(
        Ros2In, params=Ros2In.Params(topic="/r/events", type="events", qos="default", depth=100)
    )
    listen.node.produce()  # subscribes
    talk = MockIO(Ros2Out, params=Ros2Out.Params(prefix="/r", wait_s=10.0, predictions="typed"))
    typed = DataReader(
        talk.node._dds.participant,
        talk.node._dds.topic("/r/predictions", Prediction),
        qos("default", 100),
    )
    for index, events in enumerate(windows):
        meta = kinds.Events(width=width, height=height, window_start=index * 33_000)
        talk.send("events", message(meta, t=1_000 + index, arrays={"events": events}))
    talk.send(
        "predictions",
        message(
            kinds.Prediction(
                label="clap",
                topk=[["clap", 0.75], ["wave", 0.25]],
                raw_label="wave",
                state="changed",
                latency_ms={"e2e": 12.5},
                energy_uj=2.0,
            ),
            t=3_000_000,
        ),
    )
    deadline = time.monotonic() + 20
    while len(listen.published("events")) < len(windows) and time.monotonic() < deadline:
        listen.node.produce()
    received = listen.published("events")
    assert [m.t for m in received] == [1_000 + i for i in range(len(windows))]
    assert {(m.meta["width"], m.meta["height"]) for m in received} == {(width, height)}
    sent = np.concatenate(windows)
    back = np.concatenate([m.arrays["events"] for m in received])
    assert len(back) == len(sent) > 10_000
    for name in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(back[name], sent[name], err_msg=name)
    deadline = time.monotonic() + 10
    samples: list[Prediction] = []
    while not samples and time.monotonic() < deadline:
        samples = [s for s in typed.take(N=8) if s.sample_info.valid_data]
        time.sleep(0.02)
    assert len(samples) == 1
    got = samples[0]
    assert (got.label, got.raw_label, got.changed, got.classes) == (
        "clap",
        "wave",
        True,
        ["clap", "wave"],
    )
    assert (got.scores, got.latency_stages, got.latency_ms, got.energy_uj) == (
        [0.75, 0.25],
        ["e2e"],
        [12.5],
        2.0,
    )
    assert got.header.stamp.to_us() == 3_000_000
    listen.end()
    talk.end()


def test_ros2_interface_package_defines_the_typed_prediction(tmp_path: Path) -> None:
    """`respike ros2-interface` writes a colcon package whose .msg rosbags reads as the
    message ros2_out sends."""
    from rosbags.typesys import get_types_from_msg

    out = tmp_path / "respike_msgs"
    done = subprocess.run(
        [*RESPIKE, "ros2-interface", "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    text = (out / "msg" / "Prediction.msg").read_text()
    fields = get_types_from_msg(text, "respike_msgs/msg/Prediction")["respike_msgs/msg/Prediction"]
    assert [name for name, _ in fields[1]] == [
        "header",
        "label",
        "raw_label",
        "changed",
        "classes",
        "scores",
        "latency_stages",
        "latency_ms",
        "energy_uj",
    ]
    assert "<name>respike_msgs</name>" in (out / "package.xml").read_text()
    assert "rosidl_generate_interfaces" in (out / "CMakeLists.txt").read_text()
    again = subprocess.run(
        [*RESPIKE, "ros2-interface", "--out", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "is not empty" in again.stderr.splitlines()[-1]


def write_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
    scene = SceneConfig(width=width, height=height, framing="upper")
    for frame in render_clip("swipe_left", 5, frames, scene):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def start(pipeline: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RESPIKE, "run", str(pipeline), "--status", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def ended(process: subprocess.Popen[str], timeout: float, waiting_for: str) -> tuple[str, str]:
    """The process's output once it exits; one that does not is killed and the test fails
    saying what it was waiting for, with its log (a hang is a finding, not a pytest timeout)."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"still running after {timeout} s, {waiting_for}; its log:\n{err[-2000:]}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_640x480_images_at_30_hz_cross_between_processes_without_loss(
    tmp_path: Path, domain: str
) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 90, (640, 480))
    publisher = tmp_path / "out.toml"
    publisher.write_text(
        f'[nodes.source]\nkind = "camera"\nparams = {{ source = "{clip}", loop = false }}\n'
        '[nodes.ros]\nkind = "ros2_out"\n'
        'inputs = { frames = { from = "source/frames", delivery = "lossless" } }\n'
        'params = { prefix = "/cam", depth = 1000, durability = "transient_local", wait_s = 60.0 }\n'
    )
    subscriber = tmp_path / "in.toml"
    subscriber.write_text(
        '[nodes.ros]\nkind = "ros2_in"\n'
        'params = { topic = "/cam/image", qos = "default", depth = 1000, durability = "transient_local", count = 90 }\n'
        '[nodes.print]\nkind = "jsonl"\n'
        'inputs = { in = { from = "ros/frames", delivery = "lossless" } }\n'
    )
    env = {**os.environ, "ROS_DOMAIN_ID": domain}
    reader = start(subscriber, env)
    writer = start(publisher, env)
    out, err = ended(reader, 200, "waiting for 90 frames")
    ended(writer, 60, "ros2_out lingering for acks")
    assert reader.returncode == 0 and writer.returncode == 0, err[-2000:]
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["meta"]["index"] for f in frames] == list(range(90)), "none lost, in order"
    assert {tuple(f["arrays"]["frame"]["shape"]) for f in frames} == {(480, 640, 3)}
    stamps = [f["t"] for f in frames]
    assert stamps == sorted(stamps) and 2.5e6 < stamps[-1] - stamps[0] < 3.5e6, "30 Hz stamps"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_video_published_as_ros_images_gets_predictions_on_a_ros_topic(
    tmp_path: Path, domain: str
) -> None:
    """camera → ros2_out (as a robot's camera driver would publish) | ros2_in → residual →
    model → ros2_out | a DDS subscriber here reading std_msgs/String predictions."""
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader

    from respike.stream.ros2 import String, dds_topic, qos

    clip = write_clip(tmp_path / "clip.mp4", 60, (160, 120))
    camera = tmp_path / "camera.toml"
    camera.write_text(
        f'[nodes.source]\nkind = "camera"\nparams = {{ source = "{clip}", loop = false }}\n'
        '[nodes.ros]\nkind = "ros2_out"\n'
        'inputs = { frames = { from = "source/frames", delivery = "lossless" } }\n'
        'params = { prefix = "/cam", depth = 1000, durability = "transient_local", wait_s = 60.0 }\n'
    )
    model = tmp_path / "model.toml"
    model.write_text(
        '[nodes.ros]\nkind = "ros2_in"\n'
        'params = { topic = "/cam/image", qos = "default", depth = 1000, durability = "transient_local", count = 60 }\n'
        '[nodes.residual]\nkind = "residual"\n'
        'inputs = { frames = { from = "ros/frames", delivery = "lossless" } }\n'
        'params = { checkpoint = "actions" }\n'
        '[nodes.model]\nkind = "model"\n'
        'inputs = { steps = { from = "residual/residual", delivery = "lossless" }, '
        'keyframes = { from = "residual/keyframes", delivery = "lossless" } }\n'
        'params = { checkpoint = "actions" }\n'
        '[nodes.out]\nkind = "ros2_out"\n'
        'inputs = { predictions = { from = "model/predictions", delivery = "lossless" } }\n'
        'params = { prefix = "/respike", depth = 1000, durability = "transient_local", wait_s = 60.0 }\n'
    )
    participant = DomainParticipant(int(domain))
    from cyclonedds.topic import Topic

    topic = Topic(participant, dds_topic("/respike/predictions"), String)
    reader = DataReader(participant, topic, qos=qos("default", 1000, "transient_local"))
    env = {**os.environ, "ROS_DOMAIN_ID": domain}
    pipeline = start(model, env)
    source = start(camera, env)
    received: list[dict] = []
    deadline = time.monotonic() + 200
    while len(received) < 60 and time.monotonic() < deadline:
        received += [json.loads(s.data) for s in reader.take(N=64) if s.sample_info.valid_data]
        time.sleep(0.05)
    _, err = ended(pipeline, 60, f"{len(received)} of 60 predictions out")
    ended(source, 60, "ros2_out lingering for acks")
    assert pipeline.returncode == 0, err[-2000:]
    assert len(received) == 60, "a prediction per frame"
    from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint

    info = read_checkpoint_info(resolve_checkpoint("actions"))
    outputs = {*info.class_names, "no action"}
    assert {r["label"] for r in received} <= outputs, "labels of the model, nothing else"
    assert all(r["topk"] and r["topk"][0][0] in outputs for r in received)
    assert [r["t"] for r in received] == sorted(r["t"] for r in received)


PAUSED_SUBSCRIBER = """
import sys, time
from cyclonedds.domain import DomainParticipant
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from respike.stream.ros2 import String, qos
participant = DomainParticipant(int(sys.argv[1]))
reader = DataReader(participant, Topic(participant, "rt/l/predictions", String), qos("default"))
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_ros2_out_lingers_at_the_end_for_reliable_subscribers_to_ack(
    domain: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer's unacknowledged samples die with it, so the end waits for acks, bounded by
    linger_s, and names a subscriber that never sends them (here one that is paused)."""
    import logging
    import signal

    subscriber = subprocess.Popen(
        [sys.executable, "-c", PAUSED_SUBSCRIBER, domain], stdout=subprocess.PIPE, text=True
    )
    try:
        assert subscriber.stdout is not None and subscriber.stdout.readline() == "ready\n"
        talk = MockIO(
            Ros2Out, name="out", params=Ros2Out.Params(prefix="/l", wait_s=20.0, linger_s=1.5)
        )
        talk.send("predictions", message(kinds.Prediction(label="wave"), t=1))
        subscriber.send_signal(signal.SIGSTOP)
        for t in range(2, 6):
            talk.send("predictions", message(kinds.Prediction(label="wave"), t=t))
        with caplog.at_level(logging.WARNING):
            talk.node.finish()  # the paused reader acks nothing: the wait runs out
        assert (
            "out: predictions: not every subscriber acknowledged within linger_s=1.5" in caplog.text
        )
        caplog.clear()
        subscriber.send_signal(signal.SIGCONT)
        with caplog.at_level(logging.WARNING):
            talk.node.finish()  # running again, it acks what waited: the end waits for that
        assert "acknowledged" not in caplog.text, "acks seen, so the end stops waiting"
    finally:
        subscriber.send_signal(signal.SIGCONT)
        subscriber.kill()
        subscriber.wait()


def test_a_peer_of_another_type_on_the_topic_is_named_once(
    domain: str, caplog: pytest.LogCaptureFixture
) -> None:
    """DDS never matches a reader and a writer of different types: nothing would flow, and
    without this check nothing would say why."""
    import logging

    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from respike.stream.ros2 import Prediction, String, qos

    listen = MockIO(Ros2In, name="cam_in", params=Ros2In.Params(topic="/m/image"))
    talk = MockIO(Ros2Out, name="pred_out", params=Ros2Out.Params(prefix="/m"))
    talk.send("predictions", message(kinds.Prediction(label="wave"), t=1))  # std_msgs/String
    participant = DomainParticipant(int(domain))  # another program on the robot
    foreign = [
        DataWriter(participant, Topic(participant, "rt/m/image", String), qos("default")),
        DataReader(participant, Topic(participant, "rt/m/predictions", Prediction), qos("default")),
    ]
    with caplog.at_level(logging.WARNING):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            listen.node._bad.counts["type"] and talk.node._bad.counts["type"]
        ):
            listen.node.produce()
            talk.node.tick()
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if line.startswith("cam_in:")] == [
        "cam_in: a publication on /m/image uses std_msgs/msg/String, not sensor_msgs/msg/Image: "
        "DDS does not match them, so nothing passes between them (further ones are counted)"
    ]
    assert any(
        line.startswith(
            "pred_out: a subscription on /m/predictions uses respike_msgs/msg/Prediction"
        )
        for line in lines
    )
    assert listen.node.stats()["invalid"] == 1 and talk.node.stats()["invalid"] == 1
    del foreign
    listen.end()
    talk.end()
