"""ROS 1 bags read record by record from the start, for bags whose index cannot be used.

A ROS 1 bag (format 2.0) keeps its index (connection records and chunk infos) at the end of the
file, so a bag cut by even one byte, or a recording killed before it closed, loses the index
while every chunk before the cut is intact. rosbags refuses such a bag ("Bag index looks
damaged", "Bag is not indexed"); :class:`Ros1Scan` walks the chunks in file order instead,
hands out every message that lies whole before the damage (inside an uncompressed chunk,
message by message; a compressed chunk only whole), and then raises :class:`BagDamage` naming
the byte offset where reading stopped. Record layout: http://wiki.ros.org/Bags/Format/2.0
(u32 header length, header fields ``u32 length, name=value``, u32 data length, data).
"""

from __future__ import annotations

import bz2
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

ROS1_MAGIC = b"#ROSBAG V2.0\n"
OP_MESSAGE = 2
OP_CHUNK = 5
OP_CHUNK_INFO = 6
OP_CONNECTION = 7
RECORD_KINDS = {
    OP_MESSAGE: "message",
    3: "bag header",
    4: "index data",
    OP_CHUNK: "chunk",
    OP_CHUNK_INFO: "chunk info (index)",
    OP_CONNECTION: "connection",
}


class BagDamage(ValueError):
    """A bag cannot be read past ``offset``, a byte offset in the file; ``reason`` says why."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.reason = reason
        self.offset = offset


class Ros1Connection(NamedTuple):
    """One topic of the bag, as the bag reader needs it (all its connection ids together)."""

    topic: str
    msgtype: str
    msgcount: int


class _Record(NamedTuple):
    offset: int  # byte offset of the record in the file
    fields: dict[str, bytes]
    data: bytes | memoryview


def header_fields(buf: bytes | memoryview) -> dict[str, bytes]:
    """The ``name=value`` fields of a record header; ValueError when it is malformed."""
    fields: dict[str, bytes] = {}
    pos = 0
    while pos < len(buf):
        if pos + 4 > len(buf):
            raise ValueError("a header field length is cut")
        (size,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + size > len(buf):
            raise ValueError("a header field runs past its header")
        name, sep, value = bytes(buf[pos : pos + size]).partition(b"=")
        if not sep:
            raise ValueError("a header field has no '='")
        fields[name.decode("latin-1")] = value
        pos += size
    return fields


def _u32(fields: dict[str, bytes], name: str) -> int:
    value = fields.get(name, b"")
    if len(value) < 4:
        raise ValueError(f"header field {name!r} is missing or short")
    return int(struct.unpack_from("<I", value)[0])


def _op(fields: dict[str, bytes]) -> int:
    value = fields.get("op", b"")
    if len(value) != 1:
        raise ValueError("record header has no op field")
    return value[0]


def _records_in(buf: memoryview, base: int, what: str) -> Iterator[_Record]:
    """The records of a chunk's data; BagDamage at the first one that is incomplete or
    malformed, its offset ``base`` plus its position (``base`` < 0: the chunk's own offset,
    for compressed chunks whose inner positions are not file positions)."""
    pos = 0
    n = len(buf)
    while pos < n:
        start = pos
        at = base + start if base >= 0 else -base
        if pos + 4 > n:
            raise BagDamage(f"{what} ends inside a record's header length", at)
        (hlen,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + hlen + 4 > n:
            raise BagDamage(f"{what} ends inside a record header", at)
        try:
            fields = header_fields(buf[pos : pos + hlen])
            _op(fields)
        except ValueError as exc:
            raise BagDamage(f"record header is malformed ({exc})", at) from None
        pos += hlen
        (dlen,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + dlen > n:
            raise BagDamage(f"{what} ends inside a record's data", at)
        yield _Record(at, fields, buf[pos : pos + dlen])
        pos += dlen


def _decompress(compression: str, data: bytes) -> bytes:
    if compression == "bz2":
        return bz2.decompress(data)
    if compression == "lz4":
        from lz4.frame import decompress

        return bytes(decompress(data))
    raise ValueError(f"chunk compression {compression!r} is not supported (none, bz2, lz4)")


class Ros1Scan:
    """A ROS 1 bag read in file order without its index (see the module docstring).

    Offers the subset of rosbags' ``AnyReader`` the bag reader uses (``connections``,
    ``messages``, ``deserialize``, ``close``). ``why`` says why the index could not be used.
    One scan at construction lists the topics and counts the intact messages; a bag damaged
    before its first connection record is refused with a ValueError naming the offset.
    """

    def __init__(self, path: Path, why: str, typestore: Any) -> None:
        self._path = path
        self.why = why
        self._store = typestore
        self._topics: dict[int, tuple[str, str]] = {}
        counts: dict[str, int] = {}
        try:
            for kind, cid, _, _ in self._walk():
                if kind == OP_MESSAGE and cid in self._topics:
                    topic = self._topics[cid][0]
                    counts[topic] = counts.get(topic, 0) + 1
        except BagDamage as exc:
            if not self._topics:
                raise BagDamage(
                    f"{exc.reason}, before the first connection record", exc.offset
                ) from None
        types = {topic: msgtype for topic, msgtype in self._topics.values()}
        self.connections = [Ros1Connection(t, types[t], counts.get(t, 0)) for t in sorted(types)]

    def messages(self, connections: list[Ros1Connection]) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, time in ns, ROS 1 bytes) of ``connections`` in file order; after the
        last intact message, BagDamage naming where reading stopped."""
        wanted = {c.topic: c for c in connections}
        for kind, cid, stamp, data in self._walk():
            if kind != OP_MESSAGE or cid not in self._topics:
                continue
            conn = wanted.get(self._topics[cid][0])
            if conn is not None:
                yield conn, stamp, bytes(data)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self._store.deserialize_ros1(raw, msgtype)

    def close(self) -> None:
        """Nothing stays open between calls (each ``messages`` pass opens the file)."""

    def _walk(self) -> Iterator[tuple[int, int, int, bytes | memoryview]]:
        """(op, connection id, time ns, data) for connection and message records in file
        order, connections learned on the way; BagDamage at the first damage, or at the end
        of the file (the index that could not be used is damage too)."""
        with self._path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(ROS1_MAGIC)) != ROS1_MAGIC:
                raise BagDamage("the file does not start with '#ROSBAG V2.0'", 0)
            pos = len(ROS1_MAGIC)
            index_at: int | None = None
            while pos < size:
                f.seek(pos)
                head = f.read(4)
                if len(head) < 4:
                    raise BagDamage("the file ends inside a record's header length", pos)
                (hlen,) = struct.unpack("<I", head)
                if pos + 8 + hlen > size:
                    raise BagDamage("the file ends inside a record header", pos)
                try:
                    fields = header_fields(f.read(hlen))
                    op = _op(fields)
                except ValueError as exc:
                    raise BagDamage(f"record header is malformed ({exc})", pos) from None
                (dlen,) = struct.unpack("<I", f.read(4))
                data_at = pos + 8 + hlen
                if op == OP_CHUNK:
                    yield from self._chunk(_Record(pos, fields, f.read(dlen)), dlen, data_at)
                elif data_at + dlen > size:
                    kind = RECORD_KINDS.get(op, f"op {op}")
                    raise BagDamage(f"the file ends inside a {kind} record", pos)
                elif op == OP_CONNECTION:
                    yield self._connection(_Record(pos, fields, f.read(dlen)))
                elif op == OP_CHUNK_INFO and index_at is None:
                    index_at = pos
                pos = data_at + dlen
            if index_at is None:
                raise BagDamage("the file ends before the bag index (cut, or never closed)", size)
            # every record is whole: what was wrong is the index itself
            raise BagDamage(f"the bag index cannot be used ({self.why})", index_at)

    def _chunk(
        self, record: _Record, dlen: int, data_at: int
    ) -> Iterator[tuple[int, int, int, bytes | memoryview]]:
        """Connection and message records of one chunk; BagDamage where it is cut."""
        compression = record.fields.get("compression", b"none").decode("latin-1")
        cut = len(record.data) < dlen
        if compression == "none":
            inner = _records_in(memoryview(record.data), data_at, "the chunk")
        else:
            if cut:
                raise BagDamage(f"the file ends inside a {compression} chunk", record.offset)
            try:
                body = _decompress(compression, bytes(record.data))
            except (OSError, ValueError, RuntimeError) as exc:
                raise BagDamage(f"chunk cannot be decompressed ({exc})", record.offset) from None
            inner = _records_in(memoryview(body), -record.offset, "the decompressed chunk")
        for rec in inner:
            yield self._inner(rec)
        if cut:
            raise BagDamage("the file ends inside a chunk", data_at + len(record.data))

    def _inner(self, rec: _Record) -> tuple[int, int, int, bytes | memoryview]:
        op = _op(rec.fields)
        if op == OP_CONNECTION:
            return self._connection(rec)
        if op != OP_MESSAGE:
            return op, -1, 0, b""  # nothing else belongs in a chunk; skipped like rosbags does
        try:
            cid = _u32(rec.fields, "conn")
            stamp = rec.fields.get("time", b"")
            sec, nsec = struct.unpack("<II", stamp)
        except (ValueError, struct.error) as exc:
            raise BagDamage(f"message record header is malformed ({exc})", rec.offset) from None
        return OP_MESSAGE, cid, sec * 1_000_000_000 + nsec, rec.data

    def _connection(self, rec: _Record) -> tuple[int, int, int, bytes | memoryview]:
        from rosbags.typesys.msg import normalize_msgtype

        try:
            cid = _u32(rec.fields, "conn")
            topic = rec.fields["topic"].decode()
            msgtype = normalize_msgtype(header_fields(rec.data)["type"].decode())
        except Exception as exc:  # rosbags' TypesysError, KeyError, ValueError, Unicode...
            raise BagDamage(f"connection record is malformed ({exc!r})", rec.offset) from None
        self._topics[cid] = (topic, msgtype)
        return OP_CONNECTION, cid, 0, b""
