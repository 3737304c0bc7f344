"""Recording and replay through real processes: bit-identical payloads, timing, SIGKILL safety."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from respike.nodes.recorder import RecorderNode, ReplayNode
from respike.nodes.testing import MockIO
from respike.recorders.recording import read_recording, recording_topics
from respike.stream.messages import Message, decode, encode, now_us
from respike.stream.sockets import Delivery, Subscriber

RECORD = """
[pipeline]
name = "{name}"

[nodes.counter]
kind = "counter"
params = {{ rate = {rate}, count = {count}, shape = "32x32" }}

[nodes.rec]
kind = "recorder"
params = {{ path = "{path}", flush_interval = 0.5 }}
inputs = {{ ticks = {{ from = "counter/ticks", delivery = "lossless" }} }}
"""


def record(tmp_path: Path, spawn, rate: float, count: int) -> Path:
    path = tmp_path / "rec.mcap"
    pipeline = tmp_path / "record.toml"
    pipeline.write_text(
        RECORD.format(name=f"r{uuid.uuid4().hex[:6]}", rate=rate, count=count, path=path)
    )
    process = spawn("run", str(pipeline), "--for", "60")
    assert process.wait(timeout=90) == 0
    return path


def wait_for_growth(path: Path, size: int, timeout: float = 30.0) -> bool:
    """Whether ``path`` reaches ``size`` bytes within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= size):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def replay(spawn, ipc_dir: Path, path: Path, speed: float) -> tuple[list[Message], list[float]]:
    """The messages a replay node sends, and the time each was received (the replay keeps the
    recorded ``t``/``pt``, so receipt is the only record of when it sent them)."""
    endpoint = f"ipc://{ipc_dir}/replay-{uuid.uuid4().hex[:6]}.sock"
    subscriber = Subscriber(endpoint, "replay/ticks", delivery=Delivery.LOSSLESS)
    spawn(
        "node",
        "replay",
        "--name",
        "replay",
        "--output",
        endpoint,
        "--lossless-outputs",
        "--expect",
        "ticks=1",
        "--path",
        str(path),
        "--speed",
        str(speed),
    )
    messages, received = [], []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for message in subscriber.receive(timeout=1.0):
                if message.end:
                    return messages, received
                messages.append(message)
                received.append(time.monotonic())
    finally:
        subscriber.close()
    raise AssertionError("the replay never ended")


@pytest.mark.slow
def test_record_then_replay_is_bit_identical(tmp_path: Path, spawn, ipc_dir: Path) -> None:
    path = record(tmp_path, spawn, rate=0, count=300)
    recorded = list(read_recording(path))
    assert recording_topics(path) == {"counter/ticks": 300}
    assert [decode(m.frames).meta["i"] for m in recorded] == list(range(300)), (
        "every message, in order"
    )
    replayed, _ = replay(spawn, ipc_dir, path, speed=0)
    assert len(replayed) == 300
    for original, again in zip(recorded, replayed, strict=True):
        assert [bytes(f) for f in original.frames[1:]] == [bytes(f) for f in again.frames[1:]], (
            "payload changed"
        )
    assert replayed[5].topic == "replay/ticks" and replayed[5].seq == 5, (
        "original sequence numbers are kept"
    )


@pytest.mark.slow
def test_replay_keeps_the_original_timing(tmp_path: Path, spawn, ipc_dir: Path) -> None:
    path = record(tmp_path, spawn, rate=40, count=40)  # ~1 s of messages
    recorded = list(read_recording(path))
    span = (recorded[-1].log_time_ns - recorded[0].log_time_ns) / 1e9
    # The schedule never sends early and does not drift: a load spike only adds its own length
    # once. A replay as fast as possible reads ~0; speed 4 ignored reads 4.
    for speed in (1.0, 4.0):
        _, received = replay(spawn, ipc_dir, path, speed=speed)
        ratio = (received[-1] - received[0]) * speed / span
        assert 0.5 < ratio < 2.0, (
            f"at speed {speed} the replay took {ratio:.2f}x the recording's span over speed"
        )


@pytest.mark.slow
def test_a_recorder_killed_with_sigkill_leaves_a_readable_file(
    tmp_path: Path, spawn, node_pids
) -> None:
    path = tmp_path / "rec.mcap"
    pipeline = tmp_path / "record.toml"
    name = f"k{uuid.uuid4().hex[:6]}"
    pipeline.write_text(RECORD.format(name=name, rate=200, count=0, path=path))
    process = spawn("run", str(pipeline), "--for", "60")
    assert wait_for_growth(path, 50_000), "the recorder wrote no 50 kB"
    assert wait_for_growth(path, path.stat().st_size + 1), "the recorder never flushed again"
    (pid,) = node_pids(name, "rec")
    os.kill(pid, signal.SIGKILL)
    killed_at_ns = now_us() * 1000
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    messages = list(read_recording(path))
    assert len(messages) > 100, "the flushed part of the recording must be readable"
    lost_s = (killed_at_ns - messages[-1].log_time_ns) / 1e9
    assert lost_s < 1.5, f"a SIGKILL lost {lost_s:.2f} s of data; the recorder flushes every 0.5 s"


def test_replay_of_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MockIO(ReplayNode, "replay", ReplayNode.Params(path=str(tmp_path / "none.mcap")))
    foreign = tmp_path / "foreign.mcap"
    foreign.write_bytes(b"not mcap at all")
    with pytest.raises(ValueError, match="not an MCAP recording"):
        MockIO(ReplayNode, "replay", ReplayNode.Params(path=str(foreign)))


def test_recorder_takes_inputs_of_any_name(tmp_path: Path) -> None:
    io = MockIO(RecorderNode, "rec", RecorderNode.Params(path=str(tmp_path / "x.mcap")))
    for topic in ("cam/frames", "model/predictions"):
        frames = [bytes(f) for f in encode(Message(topic, "frame", 1), seq=0, pt=2)]
        io.send(topic.split("/")[1], decode(frames))
    io.end()
    assert recording_topics(tmp_path / "x.mcap") == {"cam/frames": 1, "model/predictions": 1}
