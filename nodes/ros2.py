"""`ros2_in` and `ros2_out`: ROS 2 topics over DDS, without a ROS installation.

Both speak what ROS 2 nodes on Cyclone DDS speak (:mod:`respike.stream.ros2`): topics
``rt/<name>``, ROS type names, XCDR1, ``ROS_DOMAIN_ID``, QoS profiles as ROS names them.

- ``ros2_in`` subscribes to one topic: ``sensor_msgs/msg/Image`` (rgb8, bgr8, mono8 and the
  other :data:`~respike.events.images.FRAME_ENCODINGS`) becomes frames,
  ``event_camera_msgs/msg/EventPacket`` (the encodings the bag readers decode) becomes events;
  the header stamp becomes the message's ``t``.
- ``ros2_out`` publishes what it receives under ``PREFIX``: frames as ``Image`` rgb8 on
  ``image``, residuals as ``Image`` ``32FC<channels>`` on ``residual``, event packets as
  ``EventPacket`` evt3 on ``events`` (each packet decodes on its own), predictions on
  ``predictions`` as ``std_msgs/msg/String`` JSON (label, topk, t, latency_ms, energy_uj,
  raw_label, state) or typed, ``respike_msgs/msg/Prediction`` (``respike ros2-interface``
  writes that ROS package).

A sample of an unknown encoding or a wrong size is counted and logged once per cause with the
node's name; the node keeps running.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from respike.events.images import FRAME_ENCODINGS, rgb_image
from respike.nodes.base import Node, param, register
from respike.stream import kinds
from respike.stream.messages import Message

log = logging.getLogger(__name__)

MATCH_SETTLE_S = 0.3
"""After a writer sees its first reader, discovery may not be complete on the reader's side:
a sample written at once can miss it (1 of 60 here). ``wait_s`` waits this much longer."""


TYPE_CHECK_S = 0.5
"""How often a node looks at the endpoints other participants announce, for type mismatches."""


class _Dds:
    """One participant in ``ROS_DOMAIN_ID``, the topics a node uses (made on first use), and
    the other side's endpoints on them: ``peers`` is ``publications`` (what a reader hears)
    or ``subscriptions`` (what a writer serves)."""

    def __init__(self, peers: str) -> None:
        from cyclonedds.builtin import (
            BuiltinDataReader,
            BuiltinTopicDcpsPublication,
            BuiltinTopicDcpsSubscription,
        )
        from cyclonedds.domain import DomainParticipant

        from respike.stream.ros2 import domain_id

        self.participant = DomainParticipant(domain_id())
        builtin = (
            BuiltinTopicDcpsPublication if peers == "publications" else BuiltinTopicDcpsSubscription
        )
        self._peers = BuiltinDataReader(self.participant, builtin)
        self._peer_kind = peers[:-1]
        self._types: dict[str, str] = {}
        self._next_check = 0.0

    def topic(self, name: str, data_type: type) -> Any:
        from cyclonedds.topic import Topic

        from respike.stream.ros2 import dds_topic

        self._types[dds_topic(name)] = data_type.__idl_typename__  # type: ignore[attr-defined]
        return Topic(self.participant, dds_topic(name), data_type)

    def check_types(self, bad: _Counted) -> None:
        """Count and log (once) each endpoint of another participant on one of our topics
        whose type differs from ours: DDS never matches the two, so nothing would flow."""
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + TYPE_CHECK_S
        from respike.stream.ros2 import ros_type_name

        for endpoint in self._peers.take(N=64):
            ours = self._types.get(getattr(endpoint, "topic_name", ""))
            if ours is None or endpoint.type_name == ours:
                continue
            bad(
                "type",
                f"a {self._peer_kind} on {endpoint.topic_name[2:]} uses "
                f"{ros_type_name(endpoint.type_name)}, not {ros_type_name(ours)}: DDS does not "
                "match them, so nothing passes between them",
            )


class _Counted:
    """Bad samples counted by cause, each cause logged once with the node's name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()

    def __call__(self, cause: str, detail: str) -> None:
        if not self.counts[cause]:
            log.warning("%s: %s (further ones are counted)", self.name, detail)
        self.counts[cause] += 1


DURABILITY_HELP = (
    "volatile, or transient_local: a subscriber that joins late still gets the last `depth` "
    "samples (as ROS's latched topics; both sides must ask for it)"
)


def _acknowledged(writer: Any, timeout_s: float) -> bool:
    """Whether every matched reliable reader acknowledged all the writer wrote, waiting up to
    ``timeout_s``. (cyclonedds 11.0's ``DataWriter.wait_for_acks`` raises AttributeError on a
    timeout: it compares with ``Exception.DDS_RETCODE_TIMEOUT``; the call beneath is sound.)"""
    from cyclonedds.core import DDSException
    from cyclonedds.util import duration

    code = writer._wait_for_acks(writer._ref, duration(seconds=timeout_s))
    if code not in (0, DDSException.DDS_RETCODE_TIMEOUT):
        raise DDSException(code, f"waiting for acks from {writer!r}")
    return code == 0


def _check_qos(profile: str, depth: int, durability: str) -> None:
    """The QoS settings both node kinds take (checked without loading DDS)."""
    if profile not in ("sensor_data", "default"):
        raise ValueError(f"qos {profile!r}; expected sensor_data or default")
    if depth < 0:
        raise ValueError(f"depth {depth}; expected >= 0")
    if durability not in ("volatile", "transient_local"):
        raise ValueError(f"durability {durability!r}; expected volatile or transient_local")


@dataclass(frozen=True)
class Ros2InParams:
    topic: str = param("/camera/image_raw", "ROS 2 topic to subscribe to")
    type: str = param("image", "image (sensor_msgs/msg/Image) or events (EventPacket)")
    qos: str = param("sensor_data", "sensor_data (best effort, last 5) or default (reliable)")
    depth: int = param(0, "history depth (samples kept until taken); 0 = the QoS profile's")
    durability: str = param("volatile", DURABILITY_HELP)
    count: int = param(0, "messages to pass on before `end`; 0 = until stopped")

    def __post_init__(self) -> None:
        _check_qos(self.qos, self.depth, self.durability)
        if self.type not in ("image", "events"):
            raise ValueError(f"type {self.type!r}; expected image or events")


@register("ros2_in")
class Ros2In(Node[Ros2InParams]):
    """Subscribes to a ROS 2 topic over DDS: images become frames, event packets events."""

    Params = Ros2InParams
    outputs = ("frames", "events")

    def start(self) -> None:
        self._dds = _Dds("publications")
        self._bad = _Counted(self.name)
        self._decoders: dict[tuple[str, int, int], Any] = {}
        self._reader: Any = None
        self.received = 0

    def _subscribe(self) -> None:
        """Subscribe at the first ``produce``, once every node after this one has started:
        samples that arrived while the model loaded would overflow the QoS history."""
        from cyclonedds.core import ReadCondition, SampleState, WaitSet
        from cyclonedds.sub import DataReader

        from respike.stream.ros2 import EventPacket, Image, qos

        data_type = Image if self.params.type == "image" else EventPacket
        topic = self._dds.topic(self.params.topic, data_type)
        reader_qos = qos(self.params.qos, self.params.depth, self.params.durability)
        self._reader = DataReader(self._dds.participant, topic, qos=reader_qos)
        self._waitset = WaitSet(self._dds.participant)
        self._waitset.attach(ReadCondition(self._reader, SampleState.NotRead))

    def produce(self) -> float | None:
        from cyclonedds.util import duration

        if self._reader is None:
            self._subscribe()
        self._dds.check_types(self._bad)
        self._waitset.wait(duration(milliseconds=50))
        for sample in self._reader.take(N=64):
            if not getattr(sample, "sample_info", None) or not sample.sample_info.valid_data:
                continue
            if self.params.type == "image":
                self._image(sample)
            else:
                self._events(sample)
            self.received += 1
            if self.params.count and self.received >= self.params.count:
                return None
        return 0.0

    def _image(self, image: Any) -> None:
        from respike.events.images import rgb_frame

        try:
            frame = rgb_frame(
                image.data,
                image.width,
                image.height,
                image.encoding,
                image.step,
                bool(image.is_bigendian),
            )
        except ValueError as error:
            known = image.encoding in FRAME_ENCODINGS
            self._bad("size" if known else "encoding", str(error))
            return
        meta = kinds.Frame(index=self.received, source=self.params.topic)
        self.publish("frames", meta, image.header.stamp.to_us(), {"frame": frame})

    def _events(self, packet: Any) -> None:
        from respike.events.types import make_events
        from respike.recorders.ros_codecs import PacketDecoder, PayloadError

        key = (packet.encoding, packet.width, packet.height)
        payload = np.frombuffer(packet.events, np.uint8)
        try:
            if key not in self._decoders:
                self._decoders[key] = PacketDecoder(*key)
            try:
                decoded = self._decoders[key].decode(payload, packet.time_base)
            except PayloadError:
                # A publisher that restarted (a replay looping back in time) or packets lost:
                # packets that decode on their own (ros2_out's) do so with a fresh decoder.
                self._decoders[key] = PacketDecoder(*key)
                decoded = self._decoders[key].decode(payload, packet.time_base)
        except (PayloadError, ValueError) as error:
            self._bad("payload", f"event packet ({packet.encoding}): {error}")
            return
        events = make_events(decoded.t_ns // 1000, decoded.x, decoded.y, decoded.p)
        meta = kinds.Events(width=packet.width, height=packet.height, source=self.params.topic)
        self.publish("events", meta, packet.header.stamp.to_us(), {"events": events})

    def stats(self) -> dict[str, float]:
        return {"received": float(self.received), "invalid": float(sum(self._bad.counts.values()))}

    def finish(self) -> None:
        if self._bad.counts:
            log.info("%s: invalid samples: %s", self.name, dict(self._bad.counts))


@dataclass(frozen=True)
class Ros2OutParams:
    prefix: str = param(
        "/respike", "topics are PREFIX/image, PREFIX/residual, PREFIX/events, PREFIX/predictions"
    )
    frame_id: str = param("camera", "header.frame_id of what is published")
    qos: str = param("default", "default (reliable, last 10) or sensor_data (best effort, last 5)")
    depth: int = param(0, "history depth (samples kept for late acks); 0 = the QoS profile's")
    durability: str = param("volatile", DURABILITY_HELP)
    wait_s: float = param(0.0, "wait up to this long for a subscriber before the first sample")
    linger_s: float = param(
        5.0, "at the end, wait up to this long for reliable subscribers to acknowledge every sample"
    )
    predictions: str = param(
        "json", "json (std_msgs/msg/String) or typed (respike_msgs/msg/Prediction)"
    )

    def __post_init__(self) -> None:
        _check_qos(self.qos, self.depth, self.durability)
        if self.predictions not in ("json", "typed"):
            raise ValueError(f"predictions {self.predictions!r}; expected json or typed")
        if self.linger_s < 0:
            raise ValueError(f"linger_s {self.linger_s}; expected >= 0")


@register("ros2_out")
class Ros2Out(Node[Ros2OutParams]):
    """Publishes frames, residuals, event packets and predictions as ROS 2 topics over DDS."""

    Params = Ros2OutParams
    inputs = ("frames", "residual", "events", "predictions")
    optional_inputs = frozenset(inputs)
    tick_interval = TYPE_CHECK_S

    def start(self) -> None:
        from respike.recorders.ros_codecs import Evt3Encoder

        self._dds = _Dds("subscriptions")
        self._writers: dict[str, Any] = {}
        self._bad = _Counted(self.name)
        self._evt3 = Evt3Encoder()
        self.sent: Counter[str] = Counter()

    def _writer(self, port: str, data_type: type) -> Any:
        writer = self._writers.get(port)
        if writer is None:
            from cyclonedds.pub import DataWriter

            from respike.stream.ros2 import qos

            topic = self._dds.topic(f"{self.params.prefix.rstrip('/')}/{_TOPICS[port]}", data_type)
            writer = self._writers[port] = DataWriter(
                self._dds.participant,
                topic,
                qos=qos(self.params.qos, self.params.depth, self.params.durability),
            )
            deadline = time.monotonic() + self.params.wait_s
            while (
                writer.get_publication_matched_status().current_count == 0
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            if self.params.wait_s and writer.get_publication_matched_status().current_count:
                time.sleep(MATCH_SETTLE_S)
        return writer

    def on_message(self, port: str, message: Message) -> None:
        from respike.stream.ros2 import Header, Time

        header = Header(Time.from_us(message.t), self.params.frame_id)
        try:
            if port == "predictions":
                sample = _prediction(header, message, typed=self.params.predictions == "typed")
            elif port == "events":
                sample = self._event_packet(header, message)
            else:
                sample = _image(header, port, message)
        except ValueError as error:
            self._bad(port, f"{message.kind} on {port}: {error}")
            return
        self._writer(port, type(sample)).write(sample)
        self.sent[port] += 1

    def tick(self) -> None:
        self._dds.check_types(self._bad)

    def _event_packet(self, header: Any, message: Message) -> Any:
        """``event_camera_msgs/msg/EventPacket`` in evt3 (``time_base`` is undefined for evt3)."""
        from respike.stream.ros2 import EventPacket

        meta = kinds.Events.read(message)
        events = message.arrays.get("events")
        if events is None:
            raise ValueError("no events array")
        payload = self._evt3.encode(events)
        seq = self.sent["events"]
        return EventPacket(header, meta.height, meta.width, seq, 0, "evt3", False, payload)

    def stats(self) -> dict[str, float]:
        counts = {f"sent_{port}": float(n) for port, n in self.sent.items()}
        return counts | {"invalid": float(sum(self._bad.counts.values()))}

    def finish(self) -> None:
        """A writer's samples die with it: a reliable reader still catching up (a slow one, or
        one that joined late to a transient-local topic) would never get the last of them, as a
        ZeroMQ socket closed without linger. So the end waits, bounded, for their acks."""
        deadline = time.monotonic() + self.params.linger_s
        for port, writer in self._writers.items():
            if not _acknowledged(writer, max(0.0, deadline - time.monotonic())):
                log.warning(
                    "%s: %s: not every subscriber acknowledged within linger_s=%g s",
                    self.name,
                    port,
                    self.params.linger_s,
                )


_TOPICS = {
    "frames": "image",
    "residual": "residual",
    "events": "events",
    "predictions": "predictions",
}


def _image(header: Any, port: str, message: Message) -> Any:
    """``sensor_msgs/msg/Image`` of a frame (H, W, 3) uint8 as rgb8 or a residual (C, h, w)
    float32 as ``32FC<C>``."""
    from respike.stream.ros2 import Image

    array = message.arrays.get("frame" if port == "frames" else "residual")
    if array is None:
        raise ValueError("no array to publish")
    if port == "frames":
        frame = rgb_image(array)
        height, width = frame.shape[:2]
        return Image(header, height, width, "rgb8", 0, width * 3, frame)
    planes = array.reshape(-1, *array.shape[-2:]).astype("<f4")
    channels, height, width = planes.shape
    data = np.ascontiguousarray(planes.transpose(1, 2, 0)).view(np.uint8)
    return Image(header, height, width, f"32FC{channels}", 0, width * channels * 4, data)


def _prediction(header: Any, message: Message, *, typed: bool) -> Any:
    """A prediction as ``std_msgs/msg/String`` JSON or as ``respike_msgs/msg/Prediction``."""
    from respike.stream.ros2 import Prediction, String

    if not typed:
        return String(json.dumps(kinds.prediction_record(message)))
    prediction = kinds.Prediction.read(message)
    energy = prediction.energy_uj
    return Prediction(
        header,
        label=prediction.label or (prediction.topk[0][0] if prediction.topk else ""),
        raw_label=prediction.raw_label or "",
        changed=prediction.state == "changed",
        classes=[str(name) for name, _ in prediction.topk],
        scores=[float(score) for _, score in prediction.topk],
        latency_stages=list(prediction.latency_ms),
        latency_ms=[float(ms) for ms in prediction.latency_ms.values()],
        energy_uj=float("nan") if energy is None else float(energy),
    )


PACKAGE_XML = """\
<?xml version="1.0"?>
<package format="3">
  <name>respike_msgs</name>
  <version>{version}</version>
  <description>Messages of respike-stream: typed action predictions (ros2_out).</description>
  <maintainer email="respike@example.invalid">respike-stream</maintainer>
  <license>MIT</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
"""

CMAKE_LISTS = """\
cmake_minimum_required(VERSION 3.8)
project(respike_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/Prediction.msg" DEPENDENCIES std_msgs)
ament_package()
"""


def write_interface_package(folder: Path) -> list[Path]:
    """Write the ROS 2 package ``respike_msgs`` (``colcon build`` it in a ROS workspace so ROS
    nodes can read ``ros2_out``'s typed predictions); refuses a folder that has files."""
    from importlib.metadata import PackageNotFoundError, version

    from respike.stream.ros2 import PREDICTION_MSG

    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty; expected a new folder for respike_msgs")
    try:
        package_version = version("respike-stream")
    except PackageNotFoundError:
        package_version = "0.0.0"
    files = {
        "package.xml": PACKAGE_XML.format(version=package_version),
        "CMakeLists.txt": CMAKE_LISTS,
        "msg/Prediction.msg": PREDICTION_MSG,
    }
    written = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


__all__ = ["Ros2In", "Ros2Out", "write_interface_package"]
