"""The wire format: one message schema, its codec and its validation (the only such module).

A message on the wire is a ZeroMQ multipart ``[topic, header, *buffers]``:

- ``topic``: UTF-8 ``"node/port"``, also the subscription prefix;
- ``header``: a msgpack map ``{"v", "kind", "seq", "t", "pt", "src", "bufs", "meta"}``:
  schema version, message kind, sequence number per publisher and topic, capture or sensor
  time ``t`` (µs, int64), publish time ``pt`` (µs), source node name, one ``[name, dtype,
  shape]`` triple per buffer, and a small map of plain values;
- ``buffers``: the raw memory of C-contiguous arrays, sent and received without copies.

On one host (:mod:`respike.stream.shm`) the topic frame is ``\\0shm/`` + topic, the header
adds ``pub`` (the publisher's instance) and, when the buffers lie in a shared-memory slot
rather than in frames, ``slot``: ``[ring, pid, fd, ring bytes, offset, write index]``. Decoding
turns either form back into the plain one (``Message.frames`` too, for recorders).

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
from typing import Any, Final, NamedTuple, Protocol

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

SHM_TOPIC_PREFIX: Final = b"\x00shm/"
"""Prefix of the wire topic of a same-host message, whose buffers may lie in shared memory; it
matches no plain topic, so subscribers of either form get only their own."""

ALIGN: Final = 64
"""Buffers in a shared-memory slot start on 64-byte boundaries (aligned for SIMD kernels)."""


class SharedBuffers(Protocol):
    """Where a same-host message's buffers are read from (a subscriber's
    :class:`respike.stream.shm.SharedIn`)."""

    def publisher_seen(self, nonce: int) -> None: ...

    def buffer(self, slot: Sequence[int], nbytes: int) -> Any: ...


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


def encode_parts(
    message: Message, *, seq: int, pt: int, source: str | None = None
) -> tuple[dict[str, Any], list[memoryview]]:
    """The header map and the buffers of ``message``; array memory is referenced, not copied.

    Non-contiguous arrays are made contiguous (one copy); everything else goes out as the
    array's own buffer, so the caller must not modify an array until it has been sent.
    """
    descriptors = []
    buffers: list[memoryview] = []
    for name, array in message.arrays.items():
        array = np.asarray(array)
        wire_dtype = dtype_name(array.dtype)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        descriptors.append([name, wire_dtype, list(array.shape)])
        buffers.append(array.reshape(-1).view(np.uint8).data if array.size else memoryview(b""))
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
    return header, buffers


def encode(
    message: Message, *, seq: int, pt: int, source: str | None = None
) -> list[bytes | memoryview]:
    """Encode ``message`` into multipart frames ``[topic, header, *buffers]`` (no copies)."""
    header, buffers = encode_parts(message, seq=seq, pt=pt, source=source)
    return [message.topic.encode(), pack_header(header), *buffers]


def pack_header(header: Mapping[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def slot_layout(nbytes: Sequence[int]) -> tuple[list[int], int]:
    """Offsets of buffers of these sizes laid one after another at ``ALIGN`` boundaries in a
    shared-memory slot, and the bytes they take. Publisher and subscriber both use it."""
    offsets = []
    end = 0
    for size in nbytes:
        offsets.append(end)
        end += -(-size // ALIGN) * ALIGN
    return offsets, end


def decode(frames: Sequence[Any], shared: SharedBuffers | None = None) -> Message:
    """Validate and decode multipart ``frames`` (bytes, memoryviews or ``zmq.Frame``).

    Arrays are read-only views of the frames' memory, or of a shared-memory slot that
    ``shared`` holds for as long as they live. Raises :class:`MessageError`.
    """
    if len(frames) < 2:
        raise MessageError("too-few-frames", f"got {len(frames)} frames; expected topic, header")
    topic_bytes = frame_bytes(frames[0])
    if len(topic_bytes) > MAX_TOPIC_BYTES:
        raise MessageError("bad-topic", f"topic of {len(topic_bytes)} bytes exceeds the limit")
    same_host = bytes(topic_bytes[: len(SHM_TOPIC_PREFIX)]) == SHM_TOPIC_PREFIX
    try:
        topic = bytes(topic_bytes[len(SHM_TOPIC_PREFIX) if same_host else 0 :]).decode()
    except UnicodeDecodeError as exc:
        raise MessageError("bad-topic", "topic is not UTF-8") from exc
    header_bytes = frame_bytes(frames[1])
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise MessageError("header-too-large", f"{len(header_bytes)} bytes > {MAX_HEADER_BYTES}")
    header = _unpack_header(header_bytes)
    descriptors = header["bufs"]
    slot = _same_host_fields(header, shared) if same_host else None
    if slot is not None and shared is not None:
        specs = [_buffer_spec(d) for d in descriptors]
        buffers = _slot_buffers(specs, slot, shared)
    else:
        buffers = [frame_bytes(frame) for frame in frames[2:]]
        if len(buffers) != len(descriptors):
            raise MessageError(
                "buffer-count",
                f"header lists {len(descriptors)} buffers but {len(buffers)} frames follow",
            )
        specs = [_buffer_spec(d) for d in descriptors]
    arrays = {}
    for spec, buffer in zip(specs, buffers, strict=True):
        if spec.name in arrays:
            raise MessageError("bad-buffer", f"buffer name {spec.name!r} appears twice")
        arrays[spec.name] = _array(spec, buffer)
    if same_host:  # the plain form, as a recorder stores it
        if "pub" in header or "slot" in header:
            header.pop("pub", None)
            header.pop("slot", None)
            frames = [topic.encode(), pack_header(header), *buffers]
        else:
            frames = [topic.encode(), *frames[1:]]
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


def _same_host_fields(header: dict[str, Any], shared: SharedBuffers | None) -> list[int] | None:
    """Check ``pub`` and ``slot``; tell ``shared`` of the publisher; the slot if any."""
    nonce = header.get("pub")
    slot = header.get("slot")
    if nonce is None and slot is None:
        return None  # replayed recorded frames: inline, from no publisher's memory
    if not isinstance(nonce, int) or isinstance(nonce, bool) or nonce < 0:
        raise MessageError("bad-header", f"header field 'pub' is {nonce!r}; expected int >= 0")
    if shared is not None:
        shared.publisher_seen(nonce)
    if slot is None:
        return None
    if not (
        isinstance(slot, list)
        and len(slot) == 6
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in slot)
    ):
        raise MessageError("bad-header", f"header field 'slot' is {slot!r}; expected 6 ints >= 0")
    if shared is None:
        raise MessageError("shm-unavailable", "buffers in shared memory, and none is mapped")
    return [nonce, *slot]


def _slot_buffers(
    specs: list[_BufferSpec], slot: list[int], shared: SharedBuffers
) -> list[memoryview]:
    """The buffers of a shared-memory slot, cut at the sizes the descriptors give."""
    offsets, total = slot_layout([spec.nbytes for spec in specs])
    memory = memoryview(shared.buffer(slot, total)).cast("B")
    return [memory[o : o + spec.nbytes] for o, spec in zip(offsets, specs, strict=True)]


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


class _BufferSpec(NamedTuple):
    """A buffer descriptor, checked: its name, dtype, shape and size in bytes."""

    name: str
    dtype: np.dtype
    shape: list[int]
    nbytes: int


def _buffer_spec(descriptor: Any) -> _BufferSpec:
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
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_BUFFER_BYTES:
        raise MessageError("too-large", f"buffer {name!r} of {nbytes} bytes > {MAX_BUFFER_BYTES}")
    return _BufferSpec(name, dtype, shape, nbytes)


def _array(spec: _BufferSpec, data: memoryview) -> np.ndarray:
    """The read-only array ``spec`` describes, viewing ``data``."""
    if len(data) != spec.nbytes:
        raise MessageError(
            "byte-count",
            f"buffer {spec.name!r} has {len(data)} bytes; shape {spec.shape} needs {spec.nbytes}",
        )
    array = (
        np.frombuffer(data, dtype=spec.dtype).reshape(spec.shape)
        if spec.nbytes
        else np.empty(spec.shape, spec.dtype)
    )
    array.flags.writeable = False
    return array
