"""`foxglove`: a WebSocket client sees the channels advertised with Foxglove's schemas and
decodes what it subscribed to; a client that leaves mid-stream costs nothing else; the
recorder's MCAP files carry the same views."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from websockets.sync import client as websockets

from respike.events.types import make_events
from respike.nodes.foxglove import FoxgloveNode
from respike.nodes.testing import MockIO, message
from respike.stream import kinds
from respike.stream.messages import Message

SUBPROTOCOL = "foxglove.sdk.v1"


def protobuf_class(name: str, descriptor_set: bytes) -> Any:
    """The message class of ``name`` from a FileDescriptorSet (what a protobuf channel's
    schema holds), as a Foxglove client builds it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


class Client:
    """A Foxglove WebSocket client: the advertised channels, subscriptions, decoded messages."""

    def __init__(self, port: int) -> None:
        connection = websockets.connect(
            f"ws://127.0.0.1:{port}",
            subprotocols=[SUBPROTOCOL],
            open_timeout=10,
        )
        self.ws = connection.__enter__()  # closed by the test, mid-stream or with the server
        self.channels: dict[str, dict[str, Any]] = {}
        self.subscribed: dict[int, dict[str, Any]] = {}

    def advertised(self, topics: set[str]) -> None:
        deadline = time.monotonic() + 10
        while not topics <= set(self.channels) and time.monotonic() < deadline:
            op = json.loads(self.ws.recv(timeout=5))
            for channel in op.get("channels", []) if op["op"] == "advertise" else []:
                self.channels[channel["topic"]] = channel
        assert topics <= set(self.channels), f"advertised: {sorted(self.channels)}"

    def subscribe(self, topics: list[str]) -> None:
        subscriptions = []
        for sid, topic in enumerate(topics, start=1):
            self.subscribed[sid] = self.channels[topic]
            subscriptions.append({"id": sid, "channelId": self.channels[topic]["id"]})
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))

    def messages(self, count: int) -> list[tuple[str, int, Any]]:
        """``count`` messages as (topic, log time ns, decoded message)."""
        out: list[tuple[str, int, Any]] = []
        while len(out) < count:
            data = self.ws.recv(timeout=10)
            if isinstance(data, str):
                continue
            assert data[0] == 1, "opcode 1: message data"
            sid = int.from_bytes(data[1:5], "little")
            log_time = int.from_bytes(data[5:13], "little")
            channel = self.subscribed[sid]
            payload = data[13:]
            if channel["encoding"] == "json":
                decoded = json.loads(payload)
            else:
                schema = base64.b64decode(channel["schema"])
                decoded = protobuf_class(channel["schemaName"], schema).FromString(payload)
            out.append((channel["topic"], log_time, decoded))
        return out


def sample_messages(t: int) -> list[Message]:
    rng = np.random.default_rng(t)
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32] = (200, 30, 30)
    residual = rng.normal(0, 0.1, (2, 24, 32)).astype(np.float32)
    events = make_events(
        np.arange(50) + t, rng.integers(0, 64, 50), rng.integers(0, 48, 50), rng.integers(0, 2, 50)
    )
    return [
        message(kinds.Frame(index=t), t=t, arrays={"frame": frame}, topic="camera/frames"),
        message(kinds.Residual(), t=t, arrays={"residual": residual}, topic="residual/residual"),
        message(
            kinds.Events(width=64, height=48), t=t, arrays={"events": events}, topic="dvs/events"
        ),
        message(
            kinds.Prediction(
                label="wave", topk=[["wave", 0.8], ["clap", 0.2]], latency_ms={"e2e": 9.0}
            ),
            t=t,
            topic="model/predictions",
        ),
    ]


TOPICS = ["/camera/frames", "/residual/residual", "/dvs/events", "/model/predictions"]


def send_all(io: MockIO, messages: list[Message]) -> None:
    for m in messages:
        io.send(m.topic.rpartition("/")[2], m)


def test_a_client_decodes_images_and_predictions_with_foxglove_schemas() -> None:
    from foxglove.messages import CompressedImage

    io = MockIO(FoxgloveNode, params=FoxgloveNode.Params(port=0))
    send_all(io, sample_messages(1_000))  # channels are made by their first message
    assert io.node.stats()["unwatched"] == 4, "nothing is drawn before a client subscribes"
    client = Client(io.node.port)
    client.advertised(set(TOPICS))
    frames = client.channels["/camera/frames"]
    assert (frames["schemaName"], frames["encoding"]) == ("foxglove.CompressedImage", "protobuf")
    assert base64.b64decode(frames["schema"]) == CompressedImage.get_schema().data
    predictions = client.channels["/model/predictions"]
    assert (predictions["schemaName"], predictions["schemaEncoding"]) == (
        "respike.Prediction",
        "jsonschema",
    )
    assert "topk" in json.loads(predictions["schema"])["properties"]
    client.subscribe(TOPICS)
    deadline = time.monotonic() + 10
    while io.node.stats()["subscriptions"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    send_all(io, sample_messages(2_000_000))
    got = {topic: (log_time, decoded) for topic, log_time, decoded in client.messages(4)}
    assert {topic: t for topic, (t, _) in got.items()} == dict.fromkeys(TOPICS, 2_000_000_000)
    image = got["/camera/frames"][1]
    assert image.format == "jpeg" and image.timestamp.seconds == 2
    rgb = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert (
        rgb.shape == (48, 64, 3) and abs(int(rgb[10, 5, 0]) - 200) < 12 and rgb[10, 50].max() < 12
    )
    events = cv2.imdecode(np.frombuffer(got["/dvs/events"][1].data, np.uint8), cv2.IMREAD_COLOR)
    assert events.shape == (48, 64, 3) and events.any()
    assert got["/model/predictions"][1]["label"] == "wave"
    assert got["/model/predictions"][1]["topk"] == [["wave", 0.8], ["clap", 0.2]]
    assert io.node.stats()["sent"] == 4
    io.end()


def test_a_port_in_use_is_named() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"Foxglove cannot serve on 127.0.0.1:{port}: .*in use"):
            MockIO(FoxgloveNode, params=FoxgloveNode.Params(port=port))


def test_raw_images_and_what_cannot_be_drawn(caplog: pytest.LogCaptureFixture) -> None:
    io = MockIO(FoxgloveNode, params=FoxgloveNode.Params(port=0, images="raw"))
    send_all(io, sample_messages(1))
    client = Client(io.node.port)
    client.advertised({"/residual/residual"})
    client.subscribe(["/residual/residual"])
    deadline = time.monotonic() + 10
    while io.node.stats()["subscriptions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    bad = message(
        kinds.Residual(),
        t=5,
        arrays={"residual": np.zeros((5, 2, 2), np.float32)},
        topic="residual/residual",
    )
    with caplog.at_level(logging.WARNING):
        io.send("residual", bad)
        io.send("residual", bad)
    assert sum("residual has shape (5, 2, 2)" in r.getMessage() for r in caplog.records) == 1
    send_all(io, sample_messages(7))
    ((_, _, image),) = client.messages(1)
    assert (image.width, image.height, image.encoding, image.step) == (32, 24, "rgb8", 96)
    assert len(image.data) == 24 * 96
    assert io.node.stats()["invalid"] == 2
    io.end()


def test_a_client_that_leaves_mid_stream_costs_the_others_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    io = MockIO(FoxgloveNode, params=FoxgloveNode.Params(port=0))
    send_all(io, sample_messages(0))
    staying, leaving = Client(io.node.port), Client(io.node.port)
    for client in (staying, leaving):
        client.advertised({"/camera/frames"})
        client.subscribe(["/camera/frames"])
    deadline = time.monotonic() + 10
    while io.node.stats()["subscriptions"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    with caplog.at_level(logging.WARNING):
        for t in range(1, 31):
            io.send("frames", sample_messages(t)[0])
            if t == 10:
                leaving.ws.socket.close()  # gone without a close frame, mid-stream
    received = [log_time for _, log_time, _ in staying.messages(30)]
    assert received == [t * 1000 for t in range(1, 31)], "the staying client lost nothing"
    deadline = time.monotonic() + 10
    while io.node.stats()["clients_left"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert io.node.stats()["clients_left"] == 1
    assert (
        sum(
            "left mid-stream" in r.getMessage() and "foxglove" in r.getMessage()
            for r in caplog.records
        )
        == 1
    )
    io.end()


def test_recordings_carry_the_same_views_and_replay_skips_them(tmp_path: Path) -> None:
    from foxglove.messages import CompressedImage
    from mcap.reader import make_reader

    from respike.nodes.recorder import RecorderNode
    from respike.recorders.recording import read_recording

    path = tmp_path / "run.mcap"
    io = MockIO(RecorderNode, params=RecorderNode.Params(path=str(path)))
    messages = sample_messages(1_000_000)
    send_all(io, messages)
    io.send(
        "stats", message(kinds.Stats(node="x", kind="y", uptime_s=1.0, busy=0.0), topic="x/stats")
    )
    io.end()
    assert [m.topic for m in read_recording(path)] == [*(m.topic for m in messages), "x/stats"]
    with path.open("rb") as stream:
        reader = make_reader(stream)
        views = {c.topic: (s, m) for s, c, m in reader.iter_messages() if c.topic.startswith("/")}
    assert set(views) == set(TOPICS), "one view per shown kind; none for stats"
    schema, record = views["/camera/frames"]
    assert (schema.name, schema.encoding, schema.data) == (
        "foxglove.CompressedImage",
        "protobuf",
        CompressedImage.get_schema().data,
    )
    image = protobuf_class(schema.name, schema.data).FromString(record.data)
    assert cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    schema, record = views["/model/predictions"]
    assert schema.encoding == "jsonschema" and json.loads(record.data)["label"] == "wave"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_pipeline_serves_foxglove_while_its_other_outputs_lose_nothing(tmp_path: Path) -> None:
    """testsource → foxglove + jsonl; a client subscribes and disconnects mid-stream; the
    jsonl output gets every frame and the pipeline ends cleanly."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipeline = tmp_path / "fox.toml"
    pipeline.write_text(
        '[nodes.source]\nkind = "synthetic"\nparams = { count = 150, width = 160, height = 120 }\n'
        '[nodes.fox]\nkind = "foxglove"\n'
        'inputs = { frames = { from = "source/frames" } }\n'
        f"params = {{ port = {port} }}\n"
        '[nodes.print]\nkind = "jsonl"\n'
        'inputs = { in = { from = "source/frames", delivery = "lossless" } }\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "respike.nodes.cli", "run", str(pipeline), "--status", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 60
    client = None
    while client is None and time.monotonic() < deadline:
        try:
            client = Client(port)
        except OSError:
            time.sleep(0.1)
    assert client is not None, "the foxglove node serves on its port"
    client.advertised({"/source/frames"})
    client.subscribe(["/source/frames"])
    assert len(client.messages(5)) == 5
    client.ws.socket.close()
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err[-2000:]
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["meta"]["index"] for f in frames] == list(range(150)), "jsonl lost nothing"
    assert err.count("left mid-stream") == 1
