"""ROS 2 messages on the DDS wire, without a ROS installation.

ROS 2 nodes on Cyclone DDS (``rmw_cyclonedds_cpp``) exchange plain CDR (XCDR1, little endian)
samples on DDS topics named ``rt/<topic>`` with type names ``<pkg>::msg::dds_::<Type>_``. This
module defines the messages respike speaks that way, with Cyclone DDS's Python binding for the
DDS side (its IDL classes give the topics their type names) and our own CDR codec for the
bytes: the binding packs a ``uint8`` sequence one Python int at a time (about 40 ms for a
640x480 image), where this codec copies it whole (under a millisecond). The bytes equal
``rosbags``' CDR serialisation of the same message (tested).

Quality of service as ROS names it: :data:`SENSOR_DATA` (best effort, keep last 5) and
:data:`DEFAULT` (reliable, keep last 10), both volatile; ``ROS_DOMAIN_ID`` picks the domain.
"""

# No `from __future__ import annotations`: Cyclone DDS reads the field annotations as types.
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl

if TYPE_CHECKING:  # what the fields hold; the IDL types below say how DDS names them
    Int32: TypeAlias = int
    UInt32: TypeAlias = int
    UInt64: TypeAlias = int
    UInt8: TypeAlias = int
    Float32: TypeAlias = float
    Octets: TypeAlias = Any  # bytes or a uint8 array
    Float32s: TypeAlias = list[float]
    Strings: TypeAlias = list[str]
else:
    Int32, UInt32, UInt64, UInt8 = idl.int32, idl.uint32, idl.uint64, idl.uint8
    Float32 = idl.float32
    Octets = idl.sequence[idl.uint8]
    Float32s = idl.sequence[idl.float32]
    Strings = idl.sequence[str]

ENCAPSULATION = b"\x00\x01\x00\x00"
"""CDR (XCDR1) little endian, no options: what ROS 2 writes and reads."""


class CdrError(ValueError):
    """A sample whose bytes do not hold the message they claim to."""


class _Writer:
    """CDR encoding into one buffer; alignment counts from after the encapsulation header."""

    def __init__(self) -> None:
        self.out = bytearray(ENCAPSULATION)

    def _align(self, size: int) -> None:
        self.out += b"\x00" * (-(len(self.out) - 4) % size)

    def pack(self, fmt: str, value: Any) -> None:
        size = struct.calcsize(fmt)
        self._align(size)
        self.out += struct.pack("<" + fmt, value)

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.pack("I", len(data))
        self.out += data

    def octets(self, data: bytes | np.ndarray) -> None:
        array = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
        view = np.ascontiguousarray(array, dtype=np.uint8).reshape(-1).data
        self.pack("I", len(view))
        self.out += view

    def strings(self, texts: list[str]) -> None:
        self.pack("I", len(texts))
        for text in texts:
            self.string(text)

    def floats(self, values: list[float]) -> None:
        self.pack("I", len(values))
        if values:
            self._align(4)
            self.out += np.asarray(values, "<f4").tobytes()


class _Reader:
    """CDR decoding of one sample; raises :class:`CdrError` on a short or bad buffer."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = memoryview(data).cast("B")
        self.what = what
        if bytes(self.data[:2]) != ENCAPSULATION[:2]:
            raise CdrError(
                f"{what}: encapsulation {bytes(self.data[:4]).hex()}; expected CDR little "
                "endian (0001)"
            )
        self.at = 4

    def _take(self, size: int, align: int) -> memoryview:
        self.at += -(self.at - 4) % align
        if self.at + size > len(self.data):
            raise CdrError(f"{self.what}: the sample ends at byte {len(self.data)}, inside a field")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack("<" + fmt, self._take(size, size))[0]

    def string(self) -> str:
        raw = bytes(self._take(self.unpack("I"), 1))
        if not raw.endswith(b"\x00"):
            raise CdrError(f"{self.what}: a string is not NUL-terminated")
        return raw[:-1].decode(errors="replace")

    def octets(self) -> np.ndarray:
        return np.frombuffer(self._take(self.unpack("I"), 1), dtype=np.uint8)

    def strings(self) -> list[str]:
        return [self.string() for _ in range(self.unpack("I"))]

    def floats(self) -> list[float]:
        count = self.unpack("I")
        return np.frombuffer(self._take(4 * count, 4), "<f4").tolist() if count else []


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """builtin_interfaces/msg/Time."""

    sec: Int32 = 0
    nanosec: UInt32 = 0

    @classmethod
    def from_us(cls, t_us: int) -> "Time":
        """The stamp of a time in integer microseconds."""
        return cls(t_us // 1_000_000, t_us % 1_000_000 * 1000)

    def to_us(self) -> int:
        return self.sec * 1_000_000 + self.nanosec // 1000


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    """std_msgs/msg/Header."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


def _write_header(w: _Writer, header: Header) -> None:
    w.pack("i", header.stamp.sec)
    w.pack("I", header.stamp.nanosec)
    w.string(header.frame_id)


def _read_header(r: _Reader) -> Header:
    sec, nanosec = r.unpack("i"), r.unpack("I")
    return Header(Time(sec, nanosec), r.string())


_T = TypeVar("_T")


def _fast_cdr(ros_type: str) -> Callable[[type[_T]], type[_T]]:
    """Give an IDL class our CDR codec (its ``_write`` / ``_read``) in place of the binding's,
    with the same bytes; ``ros_type`` names the message in errors."""

    def install(cls: type[_T]) -> type[_T]:
        def serialize(
            self: Any, buffer: Any = None, endianness: Any = None, use_version_2: Any = None
        ) -> bytes:
            if use_version_2:
                raise CdrError(f"{ros_type}: ROS 2 speaks XCDR1, not XCDR2")
            writer = _Writer()
            self._write(writer)
            return bytes(writer.out)

        def deserialize(
            cls_: Any, data: bytes, has_header: bool = True, use_version_2: Any = None
        ) -> Any:
            return cls_._read(_Reader(data, ros_type))

        cls.serialize = serialize  # type: ignore[attr-defined]
        cls.deserialize = classmethod(deserialize)  # type: ignore[attr-defined]
        cls.ROS_TYPE = ros_type  # type: ignore[attr-defined]
        return cls

    return install


@_fast_cdr("std_msgs/msg/String")
@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    """std_msgs/msg/String (respike sends predictions as JSON in it)."""

    data: str = ""

    def _write(self, w: _Writer) -> None:
        w.string(self.data)

    @classmethod
    def _read(cls, r: _Reader) -> "String":
        return cls(r.string())


@_fast_cdr("sensor_msgs/msg/Image")
@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    """sensor_msgs/msg/Image; ``data`` is bytes or a uint8 array (what the reader gives)."""

    header: Header = field(default_factory=Header)
    height: UInt32 = 0
    width: UInt32 = 0
    encoding: str = ""
    is_bigendian: UInt8 = 0
    step: UInt32 = 0
    data: Octets = field(default_factory=bytes)

    def _write(self, w: _Writer) -> None:
        _write_header(w, self.header)
        w.pack("I", self.height)
        w.pack("I", self.width)
        w.string(self.encoding)
        w.pack("B", self.is_bigendian)
        w.pack("I", self.step)
        w.octets(self.data)

    @classmethod
    def _read(cls, r: _Reader) -> "Image":
        header = _read_header(r)
        height, width, encoding = r.unpack("I"), r.unpack("I"), r.string()
        return cls(header, height, width, encoding, r.unpack("B"), r.unpack("I"), r.octets())


@_fast_cdr("event_camera_msgs/msg/EventPacket")
@dataclass
class EventPacket(IdlStruct, typename="event_camera_msgs::msg::dds_::EventPacket_"):
    """event_camera_msgs/msg/EventPacket: ``events`` encoded as ``encoding`` says (evt3, ...)."""

    header: Header = field(default_factory=Header)
    height: UInt32 = 0
    width: UInt32 = 0
    seq: UInt64 = 0
    time_base: UInt64 = 0
    encoding: str = ""
    is_bigendian: bool = False
    events: Octets = field(default_factory=bytes)

    def _write(self, w: _Writer) -> None:
        _write_header(w, self.header)
        w.pack("I", self.height)
        w.pack("I", self.width)
        w.pack("Q", self.seq)
        w.pack("Q", self.time_base)
        w.string(self.encoding)
        w.pack("?", self.is_bigendian)
        w.octets(self.events)

    @classmethod
    def _read(cls, r: _Reader) -> "EventPacket":
        header = _read_header(r)
        height, width, seq, time_base = r.unpack("I"), r.unpack("I"), r.unpack("Q"), r.unpack("Q")
        return cls(header, height, width, seq, time_base, r.string(), r.unpack("?"), r.octets())


PREDICTION_MSG = """\
# One rolling action prediction of respike (ros2_out's typed predictions).
std_msgs/Header header  # stamp: the time of the step predicted
string label            # the rolling label: smoothed, "no action" below the threshold
string raw_label        # this step's own best label
bool changed            # the rolling label changed at this step
string[] classes        # the top labels, best first
float32[] scores        # their probabilities
string[] latency_stages # stages of the pipeline; "e2e" is capture to prediction
float32[] latency_ms    # each stage's latency
float32 energy_uj       # energy of this step (NaN when unknown)
"""
"""``respike_msgs/msg/Prediction``: ``respike ros2-interface`` writes it into a ROS package."""


@_fast_cdr("respike_msgs/msg/Prediction")
@dataclass
class Prediction(IdlStruct, typename="respike_msgs::msg::dds_::Prediction_"):
    """respike_msgs/msg/Prediction (:data:`PREDICTION_MSG`)."""

    header: Header = field(default_factory=Header)
    label: str = ""
    raw_label: str = ""
    changed: bool = False
    classes: Strings = field(default_factory=list)
    scores: Float32s = field(default_factory=list)
    latency_stages: Strings = field(default_factory=list)
    latency_ms: Float32s = field(default_factory=list)
    energy_uj: Float32 = float("nan")

    def _write(self, w: _Writer) -> None:
        _write_header(w, self.header)
        w.string(self.label)
        w.string(self.raw_label)
        w.pack("?", self.changed)
        w.strings(self.classes)
        w.floats(self.scores)
        w.strings(self.latency_stages)
        w.floats(self.latency_ms)
        w.pack("f", self.energy_uj)

    @classmethod
    def _read(cls, r: _Reader) -> "Prediction":
        header, label, raw_label, changed = _read_header(r), r.string(), r.string(), r.unpack("?")
        classes, scores, stages, latency = r.strings(), r.floats(), r.strings(), r.floats()
        return cls(
            header, label, raw_label, changed, classes, scores, stages, latency, r.unpack("f")
        )


def dds_topic(name: str) -> str:
    """The DDS topic of ROS 2 topic ``name`` (``/camera/image`` → ``rt/camera/image``)."""
    return "rt/" + name.lstrip("/")


def ros_type_name(dds_type: str) -> str:
    """The ROS name of a DDS type name (``std_msgs::msg::dds_::String_`` →
    ``std_msgs/msg/String``); a name not made by ROS comes back as it is."""
    parts = dds_type.split("::")
    if len(parts) == 4 and parts[2] == "dds_" and parts[3].endswith("_"):
        return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"
    return dds_type


def domain_id() -> int:
    """``ROS_DOMAIN_ID`` (0 when unset), as ROS 2 reads it."""
    value = os.environ.get("ROS_DOMAIN_ID", "0") or "0"
    if not value.isdigit() or int(value) > 232:
        raise ValueError(f"ROS_DOMAIN_ID is {value!r}; expected 0-232")
    return int(value)


DURABILITIES = ("volatile", "transient_local")
"""ROS 2's durability policies: ``transient_local`` writers keep their last ``depth`` samples
for readers that join later (and ask for them), as latched topics do."""


def qos(profile: str, depth: int = 0, durability: str = "volatile") -> Any:
    """Cyclone DDS QoS of a ROS 2 profile, ``sensor_data`` or ``default``, in XCDR1; ``depth``
    > 0 replaces the profile's history depth (as a ROS node's ``depth`` argument does), and
    ``durability`` the profile's ``volatile``."""
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    if profile == "sensor_data":
        reliability: Any = Policy.Reliability.BestEffort
        keep = 5
    elif profile == "default":
        reliability = Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
        keep = 10
    else:
        raise ValueError(f"QoS profile {profile!r}; expected sensor_data or default")
    if depth < 0:
        raise ValueError(f"QoS depth {depth}; expected >= 0 (0: the profile's)")
    if durability not in DURABILITIES:
        raise ValueError(f"QoS durability {durability!r}; expected volatile or transient_local")
    history = Policy.History.KeepLast(depth or keep)
    if durability == "volatile":
        return Qos(reliability, history, Policy.Durability.Volatile, xcdr1)
    # Cyclone keeps a late joiner's samples by the durability service's history (default: the
    # last one), not the writer's; rmw_cyclonedds sets it to the history, and so do we.
    kept = Policy.DurabilityService(0, history, -1, -1, -1)
    return Qos(reliability, history, Policy.Durability.TransientLocal, kept, xcdr1)


ROS_TYPES: dict[str, type[IdlStruct]] = {
    "std_msgs/msg/String": String,
    "sensor_msgs/msg/Image": Image,
    "event_camera_msgs/msg/EventPacket": EventPacket,
    "respike_msgs/msg/Prediction": Prediction,
}
"""The ROS 2 message types respike reads and writes, by their ROS names."""


__all__ = [
    "ENCAPSULATION",
    "PREDICTION_MSG",
    "ROS_TYPES",
    "CdrError",
    "EventPacket",
    "Header",
    "Image",
    "Prediction",
    "String",
    "Time",
    "dds_topic",
    "domain_id",
    "qos",
    "ros_type_name",
]
