"""Same-host shared memory behind :class:`~respike.stream.sockets.Publisher` and ``Subscriber``.

On an ``ipc://`` endpoint (one host) a publisher copies a message's arrays into a slot of a ring
in shared memory, and only the header and the slot travel (by ZeroMQ, or by a subscriber's
direct connection); across hosts (``tcp://``) nothing changes. The pieces, all in anonymous memory (``memfd``) so that no file is ever left
behind, whoever dies:

- a **ring** per publisher and topic: :func:`ring_slots` slots, each a 64-byte stamp (the write
  index it holds) and the payload. It grows (a new, larger ring) when a message does not fit.
  Subscribers map it through ``/proc/<pid>/fd/<fd>``, named in every header.
- a **reader table** per subscriber: ``seen`` (the newest write index it received) and up to
  ``MAX_HELD`` write indexes it still holds (arrays of a message alive in the node). Only the
  subscriber writes it; the publisher maps it read-only in effect. A subscriber announces its
  table with a ZeroMQ subscription that matches no topic, ``\\0reader/<nonce>/<pid>/<fd>/TOPIC``,
  so the publisher learns of it in order with the data subscription, and of its end (even a
  SIGKILL: the socket closes) by the matching unsubscription. A subscriber connected directly
  (:mod:`respike.stream.direct`) gives the same announcement in its hello instead, and its
  connection's end is the table's.

A slot is reused only when every registered reader has received its message (``seen``) and
does not hold it. Nothing is locked, so a dead peer cannot leave anything locked: a dead
subscriber's table is dropped with its unsubscription, and a dead publisher's rings stay
mapped by subscribers until their arrays are freed. When no slot is free a ``live`` publisher
sends the payload inline instead (never waiting); a ``lossless`` one waits for a slot whose
message is still in flight, and sends inline when slots are only held (a node keeping many
messages must not stall its source); for direct readers, which take no large message inline,
slots only held make another ring of the same size, used again afterwards. The tables are
written with plain stores: x86-64 keeps stores in order (``held`` before ``seen``), which this
relies on.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import secrets
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from respike.stream.messages import MessageError, slot_layout

log = logging.getLogger(__name__)

READER_PREFIX: Final = b"\x00reader/"
"""Prefix of the subscription that announces a reader table; it matches no message."""

RING_BYTES: Final = 16 * 1024 * 1024
"""Memory a ring may take; small messages get more slots (up to ``MAX_RING_SLOTS``)."""

MIN_RING_SLOTS: Final = 8
MAX_RING_SLOTS: Final = 64
"""A lossless reader's pipeline depth is the ring's slots: a model node that batches what
waited (DVS replay) needs about as many as ZeroMQ's queues held (2 x 32); 8 halved its batches
and its rate."""


def ring_slots(slot_bytes: int) -> int:
    """Slots of a ring whose slots hold ``slot_bytes``: as many as ``RING_BYTES`` allow,
    within ``MIN_RING_SLOTS``-``MAX_RING_SLOTS`` (16 for 640x480 frames, 64 for packets)."""
    return max(MIN_RING_SLOTS, min(MAX_RING_SLOTS, RING_BYTES // slot_bytes))


MAX_HELD: Final = 64
"""Messages a subscriber may hold at once per topic; beyond this it copies a message out."""

MIN_SHARED_BYTES: Final = 16 * 1024
"""Messages with fewer array bytes go inline: a slot costs more than copying them."""

MIN_SLOT_BYTES: Final = 64 * 1024
MAX_SHARED_BYTES: Final = 64 * 1024 * 1024
"""Messages with more array bytes go inline: a ring of such slots would be gigabytes."""
STAMP_BYTES: Final = 64
"""Each slot starts with its write index (int64) in a cache line of its own."""

_SEEN: Final = 0
_HELD: Final = 1
_TABLE_WORDS: Final = _HELD + MAX_HELD
_WAIT_S: Final = (0.0, 0.00005, 0.0002, 0.001)
"""Sleeps of a lossless publisher waiting for a slot: a yield first, then longer."""

HELD_WAIT_S: Final = 0.005
"""How long a lossless publisher waits when every slot is held, not in flight: a subscriber
works through a batch of messages in this time; a node that keeps them longer gets the next
ones inline rather than stalling its source."""


def enabled(endpoint: str) -> bool:
    """Whether messages on ``endpoint`` use shared memory: ``ipc://`` only, unless
    ``RESPIKE_SHM=0`` turns it off (to compare, or to rule it out)."""
    return endpoint.startswith("ipc://") and os.environ.get("RESPIKE_SHM", "1") != "0"


def _memfd(name: str, size: int) -> tuple[int, mmap.mmap]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class Ring:
    """One publisher's slots for one topic in a ``memfd``."""

    def __init__(self, index: int, slot_bytes: int) -> None:
        slots = ring_slots(slot_bytes)
        self.index = index
        self.slot_bytes = slot_bytes
        self.stride = STAMP_BYTES + slot_bytes
        self.size = slots * self.stride
        self.fd, self._map = _memfd(f"respike-ring-{index}", self.size)
        self.bytes = memoryview(self._map)
        self._words = self.bytes.cast("q")
        self.written = [-1] * slots
        """The write index each slot holds; -1: never written."""
        self.order = list(range(slots))
        """Slots oldest first: the next to reuse leads."""

    def payload_offset(self, slot: int) -> int:
        return slot * self.stride + STAMP_BYTES

    def stamp(self, slot: int, write: int) -> None:
        self._words[slot * self.stride // 8] = write

    def close(self) -> None:
        """Close the descriptor; subscribers that mapped the ring keep its memory while their
        arrays live."""
        os.close(self.fd)


@dataclass
class _Reader:
    """A subscriber's table as the publisher sees it."""

    topic: bytes
    table: np.ndarray
    floor: int
    """The write index from which this reader may have received messages (registration
    takes effect inside a send, so the send before it counts)."""

    def blocks(self, write: int) -> str:
        """``"flight"`` when the reader has not yet received ``write``, ``"held"`` while it
        holds it, ``""`` when the slot is free as far as this reader goes."""
        if write >= self.floor and self.table[_SEEN] < write:
            return "flight"
        if (self.table[_HELD:] == write).any():
            return "held"
        return ""


class SharedOut:
    """The publisher's side: rings per topic and the readers announced to it."""

    def __init__(self) -> None:
        self.nonce = secrets.randbits(63)
        self.pid = os.getpid()
        self._rings: dict[bytes, list[Ring]] = {}
        self._writes: dict[bytes, int] = {}
        self._readers: dict[bytes, _Reader] = {}
        self._reader_counts: Counter[bytes] = Counter()
        self._ring_count = 0
        self.inline_fallbacks = 0
        self.rings_made = 0

    def notice(self, subscribe: bool, prefix: bytes) -> bool:
        """Take a reader announcement (``READER_PREFIX...``) or its end; whether a table was
        taken (or dropped)."""
        if not subscribe:
            gone = self._readers.pop(prefix, None)  # its mapping goes with its last reference
            if gone is not None:
                self._reader_counts[gone.topic] -= 1
            return gone is not None
        try:
            nonce, pid, fd, topic = prefix[len(READER_PREFIX) :].split(b"/", 3)
            if int(nonce, 16) != self.nonce:
                return False  # a table made for an earlier publisher on this endpoint
            path = f"/proc/{int(pid)}/fd/{int(fd)}"
            with open(path, "r+b") as file:
                table_map = mmap.mmap(file.fileno(), _TABLE_WORDS * 8)
        except FileNotFoundError:
            return False  # the subscriber has gone since; its unsubscription follows
        except (ValueError, OSError) as error:
            if getattr(error, "errno", None) == errno.ENXIO:
                return False  # the number names a socket now: it closed at once; its end follows
            log.warning(
                "a subscriber's shared-memory table is unusable (%s): sending inline", error
            )
            return False
        table = np.frombuffer(table_map, np.int64)
        if prefix not in self._readers:
            self._reader_counts[topic] += 1
        self._readers[prefix] = _Reader(topic, table, self._writes.get(topic, 0) - 1)
        return True

    def readers(self, topic: bytes) -> int:
        """How many subscribers of ``topic`` have announced a table this side could map."""
        return self._reader_counts[topic]

    def place(
        self,
        topic: bytes,
        buffers: Sequence[memoryview],
        *,
        wait: bool,
        stop: Callable[[], bool],
        refresh: Callable[[], object],
        add_ring_when_held: bool = False,
    ) -> list[int] | None:
        """Copy ``buffers`` into a free slot of ``topic``'s ring; returns the header's
        ``slot`` field, or None when the message should go inline. With
        ``add_ring_when_held``, slots that readers only hold (none in flight) make a new ring
        rather than an inline message (direct readers take no large message inline)."""
        offsets, total = slot_layout([len(b) for b in buffers])
        rings = self._rings.setdefault(topic, [])
        if not rings or rings[-1].slot_bytes < total:
            self._grow(rings, total)
        fitting = [ring for ring in rings if ring.slot_bytes >= total]
        found, in_flight = self._free_slot(topic, fitting, wait, stop, refresh)
        if found is None and add_ring_when_held and not in_flight and not stop():
            self._grow(rings, rings[-1].slot_bytes)
            found = rings[-1], rings[-1].order[0]
        if found is None:
            self.inline_fallbacks += 1
            return None
        ring, slot = found
        write = self._writes.get(topic, 0)
        self._writes[topic] = write + 1
        start = ring.payload_offset(slot)
        ring.stamp(slot, -1)
        for offset, buffer in zip(offsets, buffers, strict=True):
            ring.bytes[start + offset : start + offset + len(buffer)] = buffer
        ring.stamp(slot, write)
        ring.written[slot] = write
        ring.order.remove(slot)
        ring.order.append(slot)
        self._retire(rings, [r for r in self._readers.values() if r.topic == topic])
        return [ring.index, self.pid, ring.fd, ring.size, start, write]

    def _grow(self, rings: list[Ring], total: int) -> None:
        slot_bytes = max(MIN_SLOT_BYTES, 1 << (total - 1).bit_length())
        rings.append(Ring(self._ring_count, slot_bytes))
        self._ring_count += 1
        self.rings_made += 1

    def _free_slot(
        self,
        topic: bytes,
        rings: list[Ring],
        wait: bool,
        stop: Callable[[], bool],
        refresh: Callable[[], object],
    ) -> tuple[tuple[Ring, int] | None, bool]:
        """The oldest slot of ``rings`` no reader needs (rings added because slots were held
        stay and are used again: a reader that keeps a window of messages would otherwise
        make a ring every ring-full); a lossless publisher waits while messages are in flight
        (re-reading who is still there) and ``HELD_WAIT_S`` while they are only held; None
        when it gives up or need not wait, and whether a message was in flight then."""
        attempt = 0
        held_until = time.monotonic() + HELD_WAIT_S
        while True:
            readers = [r for r in self._readers.values() if r.topic == topic]
            in_flight = False
            for ring in rings:
                for slot in ring.order:
                    written = ring.written[slot]
                    states = {r.blocks(written) for r in readers} if written >= 0 else set()
                    if not states - {""}:
                        return (ring, slot), False
                    in_flight |= "flight" in states
            if not wait or stop() or not (in_flight or time.monotonic() < held_until):
                return None, in_flight
            time.sleep(_WAIT_S[min(attempt, len(_WAIT_S) - 1)])
            attempt += 1
            refresh()

    def _retire(self, rings: list[Ring], readers: list[_Reader]) -> None:
        """Close outgrown rings (slots too small for the latest messages) once no reader may
        still need them."""
        while rings[0].slot_bytes < rings[-1].slot_bytes and all(
            not r.blocks(int(w)) for w in rings[0].written if w >= 0 for r in readers
        ):
            rings.pop(0).close()

    def close(self) -> None:
        for rings in self._rings.values():
            for ring in rings:
                ring.close()
        self._rings.clear()
        self._readers.clear()
        self._reader_counts.clear()


class _Table:
    """A subscriber's table for one publisher: ``seen`` and the write indexes it holds."""

    def __init__(self, nonce: int, topic: bytes) -> None:
        self.fd, table_map = _memfd("respike-reader", _TABLE_WORDS * 8)
        self.words = np.frombuffer(table_map, np.int64)
        self.words[:] = -1
        self.free = list(range(MAX_HELD))
        self.announcement = READER_PREFIX + f"{nonce:x}/{os.getpid()}/{self.fd}/".encode() + topic

    def hold(self, write: int) -> int | None:
        entry = self.free.pop() if self.free else None
        if entry is not None:
            self.words[_HELD + entry] = write
        return entry

    def release(self, entry: int) -> None:
        self.words[_HELD + entry] = -1
        self.free.append(entry)

    def saw(self, write: int) -> None:
        if write > self.words[_SEEN]:
            self.words[_SEEN] = write

    def close(self) -> None:
        """Close the descriptor; the memory goes when the publisher and this side let go."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SharedIn:
    """The subscriber's side: its table for the current publisher, the rings it mapped, and
    a hold on every message whose arrays are alive."""

    def __init__(self, topic: str) -> None:
        self.topic = topic.encode()
        self.nonce: int | None = None
        self._table: _Table | None = None
        self._rings: dict[int, mmap.mmap] = {}
        self.announce: list[bytes] = []
        """Subscriptions to add (this side's table) since last asked."""
        self.withdraw: list[bytes] = []
        """Subscriptions to drop (the table of a publisher gone) since last asked."""
        self.from_slots = 0
        """Messages whose buffers came from a slot."""
        self.copied = 0
        """Of those, the ones copied out because ``MAX_HELD`` were held already."""

    def publisher_seen(self, nonce: int) -> None:
        """A message named its publisher: make a table for a publisher not seen before."""
        if nonce == self.nonce:
            return
        if self._table is not None:
            self.withdraw.append(self._table.announcement)
            self._table.close()
        self._table = _Table(nonce, self.topic)
        self._rings = {}
        self.nonce = nonce
        self.announce.append(self._table.announcement)

    def buffer(self, slot: Sequence[int], nbytes: int) -> Any:
        """The ``nbytes`` of a ``slot`` (``[publisher, ring, pid, fd, ring bytes, offset,
        write]``), held until every array made from them is freed (or copied when too many
        are held); raises :class:`MessageError`."""
        nonce, index, pid, fd, size, offset, write = slot
        table = self._table
        if table is None or nonce != self.nonce:
            raise MessageError("shm-unknown", f"ring of publisher {nonce:x} was not announced")
        if not STAMP_BYTES <= offset <= size - nbytes:
            raise MessageError(
                "shm-range", f"{nbytes} bytes at {offset} overrun a {size}-byte ring"
            )
        shared = self._rings.get(index)
        if shared is None:
            try:
                with open(f"/proc/{pid}/fd/{fd}", "r+b") as file:
                    shared = mmap.mmap(file.fileno(), size)
            except (OSError, ValueError) as error:
                raise MessageError("shm-open", f"ring {index} of pid {pid}: {error}") from error
            self._rings[index] = shared
        entry = table.hold(write)
        stamp = int.from_bytes(
            shared[offset - STAMP_BYTES : offset - STAMP_BYTES + 8], "little", signed=True
        )
        if stamp != write:
            if entry is not None:
                table.release(entry)
            raise MessageError("shm-stamp", f"slot holds write {stamp}, header says {write}")
        table.saw(write)
        self.from_slots += 1
        if entry is None:
            self.copied += 1
            return bytearray(shared[offset : offset + nbytes])
        held = (ctypes.c_char * nbytes).from_buffer(shared, offset)
        weakref.finalize(held, table.release, entry)
        return held

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
        self._rings = {}
