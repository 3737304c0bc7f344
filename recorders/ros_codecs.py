"""Codecs for the event payloads of ROS messages: the EventPacket encodings, dvs_msgs arrays.

``event_camera_msgs/EventPacket`` and ``event_array_msgs/EventArray`` carry packed events in an
``encoding``; only the C++ event_camera_codecs decodes them, so they are decoded here after its
definitions (include/event_camera_codecs/{evt3,libcaer,libcaer_cmp,mono,trigger}_decoder.h):
evt3 and libcaer_cmp through numba kernels (the evt3 one shared with Prophesee RAW files),
libcaer, mono and trigger with vectorised numpy. Times come out in nanoseconds as the codec
reports them (evt3: sensor time; libcaer: time_base + sensor time, unwrapped at 2**31 µs inside
a packet; libcaer_cmp: time_base + 24-bit µs offset; mono and trigger: time_base + 32-bit ns
offset), so the checksums of ../shared/data/README.md can be checked exactly; the bag reader
turns them into µs. External trigger events (evt3 EXT_TRIGGER words, ``trigger`` packets) come
out beside the CD events in :attr:`PacketDecoder.triggers`.

:class:`Evt3Encoder` writes evt3 packets (what ``ros2_out`` publishes): each packet decodes on
its own, so a subscriber may join or lose packets mid-stream.

``dvs_msgs/EventArray`` holds one struct per event; deserialising those one Python object at a
time is slow, so its ROS 1 and CDR byte layouts are read directly with numpy.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from respike.events import EVENT_DTYPE
from respike.events.types import EventArray
from respike.recorders.kernels import (
    ERROR_TEXT,
    decode_evt3,
    decode_libcaer_cmp,
    encode_evt3,
    evt3_state,
    libcaer_cmp_state,
    record_words,
)

ENCODINGS = ("evt3", "libcaer", "libcaer_cmp", "mono", "trigger")


class DecodedEvents(NamedTuple):
    """Columns of one decoded message; ``t_ns`` in nanoseconds."""

    t_ns: npt.NDArray[np.int64]
    x: npt.NDArray[np.uint16]
    y: npt.NDArray[np.uint16]
    p: npt.NDArray[np.uint8]


class Triggers(NamedTuple):
    """External trigger events of one message; ``t_ns`` in nanoseconds, ``edge`` 1 for rising."""

    t_ns: npt.NDArray[np.int64]
    edge: npt.NDArray[np.uint8]
    id: npt.NDArray[np.uint8]


NO_TRIGGERS = Triggers(np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.uint8))
NO_EVENTS = DecodedEvents(
    np.empty(0, np.int64), np.empty(0, np.uint16), np.empty(0, np.uint16), np.empty(0, np.uint8)
)


class PayloadError(ValueError):
    """A message payload cannot be decoded; ``offset`` is the byte inside the payload."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class PacketDecoder:
    """Decodes the packets of one topic in order (evt3 and libcaer_cmp carry state across them).

    ``width``/``height`` of the messages bound the coordinates for evt3 and libcaer_cmp (0
    disables the check). After each packet, :attr:`triggers` holds its external trigger events
    (evt3 EXT_TRIGGER words, every event of a ``trigger`` packet; empty for the other encodings).
    """

    def __init__(self, encoding: str, width: int = 0, height: int = 0) -> None:
        if encoding not in ENCODINGS:
            raise PayloadError(
                f"event encoding {encoding!r} is not supported; supported: {', '.join(ENCODINGS)}"
            )
        self.encoding = encoding
        self.width = width
        self.height = height
        self._state = libcaer_cmp_state() if encoding == "libcaer_cmp" else evt3_state()
        self.triggers = NO_TRIGGERS

    def decode(self, payload: npt.NDArray[np.uint8], time_base: int) -> DecodedEvents:
        """Decode one message's ``events`` bytes; raises PayloadError on damage."""
        self.triggers = NO_TRIGGERS
        if self.encoding == "evt3":
            return self._evt3(payload)
        if self.encoding == "libcaer":
            return decode_libcaer(payload, time_base)
        if self.encoding == "libcaer_cmp":
            return self._libcaer_cmp(payload, time_base)
        if self.encoding == "trigger":
            self.triggers = decode_trigger(payload, time_base)
            return NO_EVENTS
        return decode_mono(payload, time_base)

    def _libcaer_cmp(self, payload: npt.NDArray[np.uint8], time_base: int) -> DecodedEvents:
        if payload.shape[0] % 2:
            raise PayloadError(
                "libcaer_cmp payload has an odd number of bytes", payload.shape[0] - 1
            )
        words = payload.view("<u2")
        packet = np.empty(words.shape[0] * 8, dtype=EVENT_DTYPE)
        n, stop, err = decode_libcaer_cmp(
            words, self._state, record_words(packet), self.width, self.height
        )
        if err:
            raise PayloadError(f"libcaer_cmp: {ERROR_TEXT[err]}", stop * 2)
        out = packet[:n]
        return DecodedEvents(np.int64(time_base) + out["t"] * 1000, out["x"], out["y"], out["p"])

    def _evt3(self, payload: npt.NDArray[np.uint8]) -> DecodedEvents:
        if payload.shape[0] % 2:
            raise PayloadError("evt3 payload has an odd number of bytes", payload.shape[0] - 1)
        words = payload.view("<u2")
        packet = np.empty(words.shape[0] * 12 + 12, dtype=EVENT_DTYPE)
        tt = np.empty(words.shape[0], np.int64)
        te = np.empty(words.shape[0], np.uint8)
        ti = np.empty(words.shape[0], np.uint8)
        n, nt, stop, err = decode_evt3(
            words, 0, self._state, record_words(packet), 0, self.width, self.height, tt, te, ti, 0
        )
        self.triggers = Triggers(tt[:nt] * 1000, te[:nt], ti[:nt])
        if err:
            raise PayloadError(ERROR_TEXT[err], stop * 2)
        out = packet[:n]
        return DecodedEvents(out["t"] * 1000, out["x"], out["y"], out["p"])


EVT3_MAX_SIDE = 2048
"""EVT3 addresses are 11 bits."""


class Evt3Encoder:
    """Encodes the event packets of one stream as evt3 ``events`` bytes, in order.

    Each packet starts with TIME_HIGH, TIME_LOW and ADDR_Y words, so it decodes on its own; the
    encoder remembers the last TIME_HIGH so a decoder that saw the previous packet follows
    12-bit wraps (every 2**24 µs) and long pauses. EVT3 carries sensor time modulo 2**24 µs: a
    fresh decoder reports times from the first wrap it saw.
    """

    def __init__(self) -> None:
        self._last_high = -1

    def encode(self, events: EventArray) -> npt.NDArray[np.uint8]:
        """The evt3 bytes of ``events`` (sorted by time here when they are not)."""
        if events.shape[0] == 0:
            return np.empty(0, np.uint8)
        t = events["t"]
        if t[0] < 0 or (t.shape[0] > 1 and np.any(np.diff(t) < 0)):
            if t.min() < 0:
                raise ValueError(f"event times from {t.min()} µs; evt3 needs times >= 0")
            events = events[np.argsort(t, kind="stable")]
        for axis in ("x", "y"):
            if events[axis].max() >= EVT3_MAX_SIDE:
                raise ValueError(
                    f"event {axis} up to {events[axis].max()}; evt3 addresses are below "
                    f"{EVT3_MAX_SIDE}"
                )
        t, x, y, p = (np.ascontiguousarray(events[name]) for name in ("t", "x", "y", "p"))
        size = 4 * events.shape[0] + 16
        while True:
            words = np.empty(size, np.uint16)
            n, high = encode_evt3(t, x, y, p, self._last_high, words)
            if n >= 0:
                self._last_high = high
                return words[:n].view(np.uint8)
            size *= 2


def decode_libcaer(payload: npt.NDArray[np.uint8], time_base: int) -> DecodedEvents:
    """libcaer polarity events: 8 bytes each (u32 data, i32 µs); ns = time_base + µs * 1000.

    data bits: 1 polarity, 2-16 y, 17-31 x. A µs value lower than the one before wraps at 2**31
    (the codec's rule: rollovers are tracked inside one packet only).
    """
    if payload.shape[0] % 8:
        raise PayloadError(
            "libcaer payload is not a whole number of 8-byte events",
            payload.shape[0] - payload.shape[0] % 8,
        )
    rec = payload.view("<u4").reshape(-1, 2)
    data = rec[:, 0]
    low = rec[:, 1].view("<i4").astype(np.int64)
    if low.shape[0] and low.min() < 0:
        bad = int(np.flatnonzero(low < 0)[0])
        raise PayloadError("libcaer event has a negative timestamp", bad * 8 + 4)
    wraps = np.zeros(low.shape[0], np.int64)
    if low.shape[0] > 1:
        wraps[1:] = np.cumsum(low[1:] < low[:-1])
    t_ns = np.int64(time_base) + (low + (wraps << 31)) * 1000
    x = ((data >> 17) & 0x7FFF).astype(np.uint16)
    y = ((data >> 2) & 0x7FFF).astype(np.uint16)
    p = ((data >> 1) & 1).astype(np.uint8)
    return DecodedEvents(t_ns, x, y, p)


def decode_mono(payload: npt.NDArray[np.uint8], time_base: int) -> DecodedEvents:
    """mono events: one little-endian u64 each: bits 0-31 ns offset, 32-47 x, 48-62 y, 63 p."""
    if payload.shape[0] % 8:
        raise PayloadError(
            "mono payload is not a whole number of 8-byte events",
            payload.shape[0] - payload.shape[0] % 8,
        )
    v = payload.view("<u8")
    t_ns = np.int64(time_base) + (v & 0xFFFFFFFF).astype(np.int64)
    x = ((v >> 32) & 0xFFFF).astype(np.uint16)
    y = ((v >> 48) & 0x7FFF).astype(np.uint16)
    p = (v >> 63).astype(np.uint8)
    return DecodedEvents(t_ns, x, y, p)


def decode_trigger(payload: npt.NDArray[np.uint8], time_base: int) -> Triggers:
    """trigger events: one little-endian u64 each: bits 0-31 ns offset, 48-62 id, 63 edge.

    The codec hands the id on as a uint8, so only bits 48-55 survive; so here.
    """
    if payload.shape[0] % 8:
        raise PayloadError(
            "trigger payload is not a whole number of 8-byte events",
            payload.shape[0] - payload.shape[0] % 8,
        )
    v = payload.view("<u8")
    t_ns = np.int64(time_base) + (v & 0xFFFFFFFF).astype(np.int64)
    edge = (v >> 63).astype(np.uint8)
    ident = ((v >> 48) & 0xFF).astype(np.uint8)
    return Triggers(t_ns, edge, ident)


# dvs_msgs/Event {uint16 x; uint16 y; time ts; bool polarity}: 13 packed bytes in ROS 1.
_DVS_ROS1 = np.dtype(
    {
        "names": ["x", "y", "sec", "nsec", "p"],
        "formats": ["<u2", "<u2", "<u4", "<u4", "u1"],
        "offsets": [0, 2, 4, 8, 12],
        "itemsize": 13,
    }
)
# In CDR every member is aligned to its size; from the second element on the stride is 16.
_DVS_CDR_FIRST = np.dtype(
    {
        "names": ["x", "y", "sec", "nsec", "p"],
        "formats": ["<u2", "<u2", "<i4", "<u4", "u1"],
        "offsets": [0, 2, 4, 8, 12],
        "itemsize": 13,
    }
)
_DVS_CDR_REST = np.dtype(
    {
        "names": ["x", "y", "sec", "nsec", "p"],
        "formats": ["<u2", "<u2", "<i4", "<u4", "u1"],
        "offsets": [0, 2, 6, 10, 14],
        "itemsize": 15,
    }
)


class DvsArray(NamedTuple):
    """A decoded ``dvs_msgs/EventArray``: sensor size and event columns."""

    width: int
    height: int
    events: DecodedEvents


def decode_dvs_array(raw: bytes | memoryview, *, cdr: bool) -> DvsArray:
    """Decode a serialised ``dvs_msgs/EventArray`` (ROS 1 when ``cdr`` is False, else ROS 2).

    Reads the header to find the array, then views the event structs with numpy.
    """
    buf = bytes(raw)
    try:
        if cdr:
            return _dvs_cdr(buf)
        return _dvs_ros1(buf)
    except struct.error:
        raise PayloadError("dvs_msgs/EventArray message is shorter than its header says") from None


def _dvs_ros1(buf: bytes) -> DvsArray:
    (flen,) = struct.unpack_from("<I", buf, 12)
    pos = 16 + flen
    height, width, n = struct.unpack_from("<III", buf, pos)
    pos += 12
    if pos + 13 * n > len(buf):
        raise PayloadError(f"{n} events announced but the message holds fewer", pos)
    rec = np.frombuffer(buf, dtype=_DVS_ROS1, count=n, offset=pos)
    return DvsArray(width, height, _columns(rec))


def _dvs_cdr(buf: bytes) -> DvsArray:
    if len(buf) < 4 or buf[1] != 1:
        raise PayloadError("only little-endian CDR messages are supported", 0)
    body = memoryview(buf)[4:]
    (flen,) = struct.unpack_from("<I", body, 8)
    pos = 12 + flen
    pos += -pos % 4
    height, width, n = struct.unpack_from("<III", body, pos)
    pos += 12
    if n == 0:
        return DvsArray(width, height, _columns(np.zeros(0, _DVS_CDR_FIRST)))
    end = pos + 16 * n - 3 if n > 1 else pos + 13
    if end > len(body):
        raise PayloadError(f"{n} events announced but the message holds fewer", 4 + pos)
    first = np.frombuffer(body, dtype=_DVS_CDR_FIRST, count=1, offset=pos)
    rest = (
        np.ndarray((n - 1,), dtype=_DVS_CDR_REST, buffer=body, offset=pos + 14, strides=(16,))
        if n > 1
        else np.zeros(0, _DVS_CDR_REST)
    )
    cols = [_columns(first), _columns(rest)]
    return DvsArray(
        width,
        height,
        DecodedEvents(*(np.concatenate([c[i] for c in cols]) for i in range(4))),
    )


def _columns(rec: np.ndarray) -> DecodedEvents:
    t_ns = rec["sec"].astype(np.int64) * 1_000_000_000 + rec["nsec"].astype(np.int64)
    return DecodedEvents(
        t_ns, rec["x"].astype(np.uint16), rec["y"].astype(np.uint16), rec["p"].astype(np.uint8)
    )
