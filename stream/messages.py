"""The wire format: one message schema, its codec and its validation (the only such module).

A message on the wire is a ZeroMQ multipart ``[topic, header, *buffers]``:

- ``topic``: UTF-8 ``"node/port"``, also the subscription prefix;
- ``header``: a msgpack map ``{"v", "kind", "seq", "t", "pt", "src", "bufs", "meta"}``:
  schema version, message kind, sequence number per publisher and topic, capture or sensor
  time ``t`` (µs, int64), publish time ``pt`` (µs), source node name, one ``[name, dtype,
  shape]`` triple per buffer, and a small map of plain values;
- ``buffers``: the raw memory of C-contiguous arrays, sent and received without copies.

Decoding validates everything before any array is built (version, kind, dtype allow-list,
shape limits, byte counts) and raises :class:`MessageError` with a short ``cause`` that
receivers count; nothing is ever unpickled. Decoded arrays are read-only views of the received
frames: receivers must not mutate them (the packet contract of :mod:`respike.events.types`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import numpy as np

from respike.events.types import EVENT_DTYPE

SCHEMA_VERSION: Final = 1

KINDS: Final = frozenset({"frame", "events", "residual", "features", "prediction", "stats", "end"})
"""Message kinds; ``end`` says a source has finished and nothing more follows on the topic."""

EVENTS_DTYPE_NAME: Final = "events"
"""Wire name of :data:`respike.events.types.EVENT_DTYPE` in buffer descriptors."""

_PLAIN_DTYPES: Final = (
    "|b1",
    "|u1",
    "|i1",
    "<u2",
    "<i2",
    "<u4",
    "<i4",
    "<u8",
    "<i8",
    "<f2",
    "<f4",
    "<f8",
)
DTYPES: Final[Mapping[str, np.dtype]] = {
    **{name: np.dtype(name) for name in _PLAIN_DTYPES},
    EVENTS_DTYPE_NAME: EVENT_DTYPE,
}
"""The dtype allow-list: little-endian numeric types and the event record, nothing else."""

MAX_NDIM: Final = 6
MAX_BUFFERS: Final = 16
MAX_HEADER_BYTES: Final = 64 * 1024
MAX_BUFFER_BYTES: Final = 512 * 1024 * 1024
MAX_TOPIC_BYTES: Final = 256


def now_us() -> int:
    """Wall-clock time in integer microseconds: the unit of every timestamp on the wire."""
    return time.time_ns() // 1000


class MessageError(ValueError):
    """A received message that breaks the schema; ``cause`` is a short key for counting."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail


@dataclass(frozen=True)
class Message:
    """One decoded (or to-be-encoded) message.

    ``arrays`` maps buffer names to arrays; ``meta`` holds small plain values (numbers,
    strings, lists, maps) such as labels, scores or counters. ``seq`` and ``pt`` are filled in
    by the publisher when it sends. A decoded message keeps its received ``frames`` so a
    recorder can store the exact bytes without encoding them again.
    """

    topic: str
    kind: str
    t: int
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0
    pt: int = 0
    source: str = ""
    frames: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"message kind {self.kind!r} is not one of {sorted(KINDS)}")

    @property
    def end(self) -> bool:
        """True for the ``end`` message that closes a topic."""
        return self.kind == "end"


def dtype_name(dtype: np.dtype) -> str:
    """The wire name of ``dtype``; raises ValueError for dtypes outside the allow-list."""
    if dtype == EVENT_DTYPE:
        return EVENTS_DTYPE_NAME
    name = dtype.str
    if name not in DTYPES:
        allowed = ", ".join(DTYPES)
        raise ValueError(f"dtype {dtype} cannot be sent; allowed dtypes: {allowed}")
    return name


def encode(
    message: Message, *, seq: int, pt: int, source: str | None = None
) -> list[bytes | memoryview]:
    """Encode ``message`` into multipart frames; array memory is referenced, not copied.

    Non-contiguous arrays are made contiguous (one copy); everything else goes out as the
    array's own buffer, so the caller must not modify an array until it has been sent.
    """
    descriptors = []
    buffers: list[bytes | memoryview] = []
    for name, array in message.arrays.items():
        array = np.asarray(array)
        wire_dtype = dtype_name(array.dtype)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        descriptors.append([name, wire_dtype, list(array.shape)])
        buffers.append(array.reshape(-1).view(np.uint8).data if array.size else b"")
    header = {
        "v": SCHEMA_VERSION,
        "kind": message.kind,
        "seq": seq,
        "t": int(message.t),
        "pt": pt,
        "src": message.source if source is None else source,
        "bufs": descriptors,
        "meta": dict(message.meta),
    }
    packed = msgpack.packb(header, use_bin_type=True)
    return [message.topic.encode(), packed, *buffers]


def decode(frames: Sequence[Any]) -> Message:
    """Validate and decode multipart ``frames`` (bytes, memoryviews or ``zmq.Frame``).

    Arrays are read-only views of the frames' memory. Raises :class:`MessageError`.
    """
    if len(frames) < 2:
        raise MessageError("too-few-frames", f"got {len(frames)} frames; expected topic, header")
    topic_bytes = frame_bytes(frames[0])
    if len(topic_bytes) > MAX_TOPIC_BYTES:
        raise MessageError("bad-topic", f"topic of {len(topic_bytes)} bytes exceeds the limit")
    try:
        topic = bytes(topic_bytes).decode()
    except UnicodeDecodeError as exc:
        raise MessageError("bad-topic", "topic is not UTF-8") from exc
    header_bytes = frame_bytes(frames[1])
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise MessageError("header-too-large", f"{len(header_bytes)} bytes > {MAX_HEADER_BYTES}")
    header = _unpack_header(header_bytes)
    descriptors = header["bufs"]
    if len(frames) - 2 != len(descriptors):
        raise MessageError(
            "buffer-count",
            f"header lists {len(descriptors)} buffers but {len(frames) - 2} frames follow",
        )
    arrays = {}
    for descriptor, frame in zip(descriptors, frames[2:], strict=True):
        name, array = _decode_buffer(descriptor, frame_bytes(frame))
        if name in arrays:
            raise MessageError("bad-buffer", f"buffer name {name!r} appears twice")
        arrays[name] = array
    return Message(
        topic=topic,
        kind=header["kind"],
        t=header["t"],
        arrays=arrays,
        meta=header["meta"],
        seq=header["seq"],
        pt=header["pt"],
        source=header["src"],
        frames=tuple(frames),
    )


def frame_bytes(frame: Any) -> memoryview:
    """The memory of one received frame (bytes, memoryview or ``zmq.Frame``) without a copy."""
    buffer = getattr(frame, "buffer", None)  # zmq.Frame exposes its memory without a copy
    return memoryview(buffer if buffer is not None else frame).cast("B")


_HEADER_FIELDS: Final = {
    "v": int,
    "kind": str,
    "seq": int,
    "t": int,
    "pt": int,
    "src": str,
    "bufs": list,
    "meta": dict,
}


def _unpack_header(data: memoryview) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MessageError("bad-header", f"header is not msgpack: {exc}") from exc
    if not isinstance(header, dict):
        raise MessageError("bad-header", f"header is a {type(header).__name__}; expected a map")
    version = header.get("v")
    if version != SCHEMA_VERSION:
        raise MessageError("bad-version", f"schema version {version!r}; expected {SCHEMA_VERSION}")
    for key, expected in _HEADER_FIELDS.items():
        value = header.get(key)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise MessageError(
                "bad-header", f"header field {key!r} is {value!r}; expected {expected.__name__}"
            )
    if header["kind"] not in KINDS:
        raise MessageError("bad-kind", f"kind {header['kind']!r} is not one of {sorted(KINDS)}")
    if header["seq"] < 0:
        raise MessageError("bad-header", f"sequence number {header['seq']} is negative")
    if not -(2**63) <= header["t"] < 2**63 or not -(2**63) <= header["pt"] < 2**63:
        raise MessageError("bad-header", "timestamps do not fit in int64 microseconds")
    if len(header["bufs"]) > MAX_BUFFERS:
        raise MessageError("buffer-count", f"{len(header['bufs'])} buffers > {MAX_BUFFERS}")
    return header


def _decode_buffer(descriptor: Any, data: memoryview) -> tuple[str, np.ndarray]:
    if not (isinstance(descriptor, list) and len(descriptor) == 3):
        raise MessageError(
            "bad-buffer", f"descriptor {descriptor!r}; expected [name, dtype, shape]"
        )
    name, wire_dtype, shape = descriptor
    if not isinstance(name, str) or not isinstance(wire_dtype, str) or not isinstance(shape, list):
        raise MessageError("bad-buffer", f"descriptor {descriptor!r}; expected [str, str, list]")
    dtype = DTYPES.get(wire_dtype)
    if dtype is None:
        raise MessageError("bad-dtype", f"buffer {name!r} has dtype {wire_dtype!r}; not allowed")
    if len(shape) > MAX_NDIM or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise MessageError(
            "bad-shape",
            f"buffer {name!r} has shape {shape}; expected ≤ {MAX_NDIM} non-negative ints",
        )
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_BUFFER_BYTES:
        raise MessageError("too-large", f"buffer {name!r} of {expected} bytes > {MAX_BUFFER_BYTES}")
    if len(data) != expected:
        raise MessageError(
            "byte-count", f"buffer {name!r} has {len(data)} bytes; shape {shape} needs {expected}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape) if expected else np.empty(shape, dtype)
    array.flags.writeable = False
    return name, array
