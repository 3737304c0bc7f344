"""Same-host messages without ZeroMQ's hop: one unix ``SOCK_SEQPACKET`` connection per reader.

ZeroMQ wakes two I/O threads between a publisher and a subscriber on one host, which costs a
header-only message as much as the frame it names (bench/transport.py). So a same-host
subscriber that learns its publisher (the ``pub`` nonce of a same-host header) connects to the
publisher's listening socket, in Linux's abstract namespace (nothing on disk; it goes with the
process), and from then on each message reaches it as one datagram: the header and the slot of
its arrays (:mod:`respike.stream.shm`), or the header and small arrays inline. ZeroMQ keeps the
subscriptions, the plain form, tcp, and every reader that could not connect.

Joining keeps the order and decodes each message once. The reader says ``hello`` (its
shared-memory table) and stays subscribed on ZeroMQ. The publisher answers with a ``SWITCH``
marker on ZeroMQ naming the reader and sends it every later message directly. The reader takes
ZeroMQ's messages up to the marker, holds direct datagrams until then (a live reader, or any
reader of a live publisher, does not wait: it switches at the first), drops ZeroMQ's copies after it undecoded, then says ``joined``
and unsubscribes. The publisher reads ZeroMQ's notices before the readers' datagrams, so it never
sees the unsubscription of a reader it still counts as subscribed.

The publisher takes readers of its own user only (an abstract socket has no file permissions)
and only the table of the reader's own process (the kernel names the peer).

A dead peer shows as end-of-file or a reset connection: the publisher drops the reader and its
table; the reader subscribes on ZeroMQ again to find the next publisher. Nothing is locked.

Slots a reader holds never stall a direct send: the publisher adds a ring instead (bounded by
``shm.MAX_HELD`` per reader). A ``live`` publisher never waits: a reader with every slot in
flight or a full connection misses the message (a sequence gap); a ``lossless`` one waits.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from respike.stream.messages import ALIGN, MAX_HEADER_BYTES, MessageError
from respike.stream.shm import MIN_SHARED_BYTES

log = logging.getLogger(__name__)

HELLO: Final = b"H"
"""A reader's first datagram: ``HELLO`` + its shared-memory table's announcement."""
JOINED: Final = b"J"
"""A reader's second: it took the switch and unsubscribed from ZeroMQ."""
SWITCH: Final = b"\0direct/"
"""The header frame of a marker a publisher sends on ZeroMQ, followed by the table
announcement of the reader that joined: what follows it for that reader comes directly."""

SEND_BUFFER_BYTES: Final = 1024 * 1024
"""Asked of each connection (Linux caps it at ``net.core.wmem_max``): a few hundred header-only
datagrams in flight before a send would wait."""

_PREAMBLE: Final = struct.Struct("<III")
"""A data datagram starts with its header's length, its buffer count and its flags, then each
buffer's length (``<Q``); the header follows, then the buffers, each at an ``ALIGN`` boundary."""
FROM_LIVE: Final = 1
"""Flag: a live publisher sent it. Its switch marker may be dropped on ZeroMQ (a full live
queue), so even a lossless reader switches at the first such datagram."""
_SIZE: Final = struct.Struct("<Q")
_PEER: Final = struct.Struct("3i")
"""``struct ucred``: pid, uid, gid."""
_PADDING: Final = bytes(ALIGN)
MAX_DATAGRAM: Final = MAX_HEADER_BYTES + MIN_SHARED_BYTES + 64 * 1024
"""The largest datagram a reader reads: arrays too small for a slot and a header at its limit
(and room for the preamble)."""
_POLL_WAIT_MS: Final = 100
"""A lossless send waiting for room wakes this often to check its stop condition."""


def enabled() -> bool:
    """Whether publishers take direct readers: unless ``RESPIKE_DIRECT=0`` (to compare, or to
    rule it out); their readers then announce their tables on ZeroMQ as before."""
    return os.environ.get("RESPIKE_DIRECT", "1") != "0"


def address(nonce: int) -> bytes:
    """The abstract unix address of the publisher with this nonce."""
    return b"\0respike/" + f"{nonce:x}".encode()


def datagram(header: bytes, buffers: Sequence[memoryview], flags: int = 0) -> list[Any]:
    """The pieces of one data datagram (gathered by one ``sendmsg``)."""
    sizes = [len(b) for b in buffers]
    head = _PREAMBLE.pack(len(header), len(buffers), flags)
    head += b"".join(_SIZE.pack(s) for s in sizes)
    parts: list[Any] = [head, header, _PADDING[: -(len(head) + len(header)) % ALIGN]]
    for buffer in buffers:
        parts += [buffer, _PADDING[: -len(buffer) % ALIGN]]
    return parts


def split(data: bytes) -> tuple[memoryview, list[memoryview]]:
    """The header and buffers of a data datagram, as views; raises :class:`MessageError`."""
    view = memoryview(data)
    if len(view) < _PREAMBLE.size:
        raise MessageError("direct-datagram", f"{len(view)} bytes; expected a preamble")
    header_bytes, count, _ = _PREAMBLE.unpack_from(view)
    end = _PREAMBLE.size + count * _SIZE.size
    if end > len(view):
        raise MessageError("direct-datagram", f"{count} buffer lengths overrun {len(view)} bytes")
    sizes = [_SIZE.unpack_from(view, _PREAMBLE.size + i * _SIZE.size)[0] for i in range(count)]
    header = view[end : end + header_bytes]
    if len(header) != header_bytes:
        raise MessageError("direct-datagram", f"header overruns a {len(view)}-byte datagram")
    offset = end + header_bytes
    offset += -offset % ALIGN
    buffers = []
    for size in sizes:
        if offset + size > len(view):
            raise MessageError("direct-datagram", f"buffers overrun a {len(view)}-byte datagram")
        buffers.append(view[offset : offset + size])
        offset += size + -size % ALIGN
    return header, buffers


@dataclass(eq=False)
class _Reader:
    """One connected reader as the publisher sees it."""

    connection: socket.socket
    pid: int
    """The reader's process, as the kernel tells (``SO_PEERCRED``)."""
    topic: bytes = b""
    table: bytes = b""
    """Its table's announcement (the key of its table in :class:`~respike.stream.shm.SharedOut`);
    empty until its ``hello``."""
    joining: bool = True


@dataclass
class DirectOut:
    """The publisher's side: the listening socket and the readers connected to it."""

    nonce: int
    on_table: Callable[[bool, bytes], bool]
    """Told of a reader's table (``True``, its announcement; answers whether it could map it)
    and of its end (``False``)."""
    listen: bool = True
    """False: no listening socket, so readers stay on ZeroMQ (see :func:`enabled`)."""
    missed: int = 0
    """Messages a live send left out for a reader that had no room (it sees a gap)."""
    _readers: dict[int, _Reader] = field(default_factory=dict)
    _by_topic: dict[bytes, list[_Reader]] = field(default_factory=dict)
    _refused_users: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._poll = select.poll()
        self._listener: socket.socket | None = None
        if self.listen:
            self._listener = socket.socket(
                socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
            self._listener.bind(address(self.nonce))
            self._listener.listen(64)
            self._poll.register(self._listener, select.POLLIN)

    def readers(self, topic: bytes) -> list[_Reader]:
        """The readers of ``topic`` that said hello (after reading what waits)."""
        return self._by_topic.get(topic, [])

    def joining(self, topic: bytes) -> int:
        return sum(reader.joining for reader in self.readers(topic))

    def poll(self) -> list[_Reader]:
        """Accept new connections and read hellos, joins and ends (one syscall when none
        wait); the readers that said hello, whom the publisher sends their switch marker."""
        hellos: list[_Reader] = []
        for fd, _ in self._poll.poll(0):
            if self._listener is not None and fd == self._listener.fileno():
                for reader in self._accept(self._listener):
                    hellos += self._read(reader)
            elif fd in self._readers:
                hellos += self._read(self._readers[fd])
        return hellos

    def _accept(self, listener: socket.socket) -> Iterator[_Reader]:
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return
            pid, uid, _ = _PEER.unpack(
                connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER.size)
            )
            if uid != os.geteuid():  # an abstract socket has no file permissions to say so
                if uid not in self._refused_users:
                    log.warning(
                        "refused a direct reader of another user (uid %d, pid %d)", uid, pid
                    )
                    self._refused_users.add(uid)
                connection.close()
                continue
            connection.setblocking(False)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            reader = self._readers[connection.fileno()] = _Reader(connection, pid)
            self._poll.register(connection, select.POLLIN)
            yield reader

    def _read(self, reader: _Reader) -> list[_Reader]:
        hellos: list[_Reader] = []
        while True:
            try:
                data = reader.connection.recv(4096)
            except BlockingIOError:
                return hellos
            except OSError:
                data = b""
            if not data:
                self._drop(reader)
                return []
            if data[:1] == HELLO and not reader.table:
                if _pid_of(data[1:]) != reader.pid or not self.on_table(True, data[1:]):
                    self._drop(reader)  # not its own table, or gone: it stays on ZeroMQ
                    return []
                reader.table = data[1:]
                reader.topic = _topic_of(reader.table)
                self._by_topic.setdefault(reader.topic, []).append(reader)
                hellos.append(reader)
            elif data[:1] == JOINED:
                reader.joining = False

    def _drop(self, reader: _Reader) -> None:
        self._poll.unregister(reader.connection)
        del self._readers[reader.connection.fileno()]
        reader.connection.close()
        if reader.table:
            self._by_topic[reader.topic].remove(reader)
            self.on_table(False, reader.table)

    def send(self, topic: bytes, parts: list[Any], *, wait: bool, stop: Callable[[], bool]) -> None:
        """Send one datagram to every reader of ``topic``. A full connection makes a ``wait``
        send wait (checking ``stop``, raising what it raises) and a live one skip that reader."""
        for reader in list(self.readers(topic)):
            while reader.connection.fileno() >= 0:
                try:
                    reader.connection.sendmsg(parts)
                    break
                except BlockingIOError:
                    if not wait:
                        self.missed += 1
                        break
                    self._wait_writable(reader, stop)
                except OSError as error:
                    if error.errno not in (errno.EPIPE, errno.ECONNRESET):
                        raise
                    self._drop(reader)  # the reader died; its table goes with it
                    break

    def _wait_writable(self, reader: _Reader, stop: Callable[[], bool]) -> None:
        """Wait a while for room on ``reader``'s connection, noticing its end (or ours)."""
        from respike.stream.sockets import Stopped

        if stop():
            raise Stopped("stopped while a lossless send waited for a reader")
        select.select([reader.connection], [reader.connection], [], _POLL_WAIT_MS / 1000)
        self._read(reader)  # an end drops it (its descriptor becomes -1)

    def close(self) -> None:
        for reader in list(self._readers.values()):
            self._drop(reader)
        if self._listener is not None:
            self._listener.close()


def _flags(data: bytes) -> int:
    return int(_PREAMBLE.unpack_from(data)[2]) if len(data) >= _PREAMBLE.size else 0


def is_switch(header: Any) -> bool:
    """Whether a ZeroMQ message's header frame is a publisher's switch marker (for some reader):
    never a message."""
    return bytes(header[: len(SWITCH)]) == SWITCH


def _topic_of(announcement: bytes) -> bytes:
    """The topic an announcement (``READER_PREFIX nonce/pid/fd/TOPIC``) names."""
    return announcement.split(b"/", 4)[4] if announcement.count(b"/") >= 4 else b""


def _pid_of(announcement: bytes) -> int:
    """The process an announcement names; -1 when it names none."""
    fields = announcement.split(b"/", 4)
    return int(fields[2]) if len(fields) == 5 and fields[2].isdigit() else -1


class DirectIn:
    """The reader's side: its connection to the current publisher and where joining stands.

    ``fileno()`` is an epoll descriptor that lasts as long as the reader, readable when the
    connection is: a poller registers it once, whichever publisher comes and goes."""

    def __init__(self, lossless: bool) -> None:
        self.lossless = lossless
        self._epoll = select.epoll()
        self.connection: socket.socket | None = None
        self.nonce: int | None = None
        """The publisher this reader connected to last (or tried to)."""
        self.announcement = b""
        self.refused = b""
        """The announcement of a hello the publisher closed on before any switch: the reader
        announces it on ZeroMQ instead (once)."""
        self.switched = False
        """Everything from here on comes by the connection; ZeroMQ's copies are duplicates."""
        self.zeromq_seq: int | None = None
        """The last sequence number taken from ZeroMQ while connected: a reader that switches
        without the marker drops direct copies of what ZeroMQ already gave it."""
        self._held: list[bytes] = []

    def fileno(self) -> int:
        return self._epoll.fileno()

    @property
    def active(self) -> bool:
        return self.connection is not None

    def connect(self, nonce: int, announcement: bytes) -> bool:
        """Connect to the publisher of ``nonce`` and say hello with this reader's table; False
        when it cannot be reached so (another network namespace, an older publisher)."""
        self.disconnect()
        self.nonce = nonce
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            connection.connect(address(nonce))
            connection.send(HELLO + announcement)
        except OSError:
            connection.close()
            return False
        connection.setblocking(False)
        self.connection = connection
        self.announcement = announcement
        self._epoll.register(connection, select.EPOLLIN)
        return True

    def disconnect(self) -> None:
        if self.connection is not None:
            self._epoll.unregister(self.connection)
            self.connection.close()
        self.connection = None
        self.switched = False
        self.zeromq_seq = None
        self._held = []

    def switch(self, header: Any) -> None:
        """Take a switch marker: when it names this reader, ZeroMQ's stream ends here."""
        if self.connection is not None and bytes(header[len(SWITCH) :]) == self.announcement:
            self.switched = True
            self.zeromq_seq = None

    def took_from_zeromq(self, seq: int) -> None:
        if self.connection is not None:
            self.zeromq_seq = seq

    def is_copy(self, seq: int) -> bool:
        """Whether a direct message repeats one ZeroMQ gave (only around a switch without the
        marker: the marker's own order rules them out otherwise)."""
        if self.zeromq_seq is None:
            return False
        if seq > self.zeromq_seq:
            self.zeromq_seq = None  # past the overlap
            return False
        return True

    def datagrams(self, limit: int) -> Iterator[bytes]:
        """The datagrams to decode now, oldest first: those held until the switch, then up to
        ``limit`` waiting. A lossless reader holds them until ZeroMQ's marker; a live one
        switches at the first (ZeroMQ's older copies are not worth the wait). Stops at the
        connection's end (then :attr:`active` is False: the publisher is gone)."""
        if self.switched and self._held:
            held, self._held = self._held, []
            yield from held
        for _ in range(limit):
            if self.connection is None:
                return
            try:
                data = self.connection.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if not self.switched:
                    self.refused = self.announcement
                self.disconnect()
                return
            self.switched |= not self.lossless or _flags(data) & FROM_LIVE != 0
            if self.switched:
                yield data
            else:
                self._held.append(data)

    def say_joined(self) -> None:
        """Tell the publisher ZeroMQ's copies are no longer needed (the reader unsubscribes)."""
        if self.connection is not None:
            try:
                self.connection.send(JOINED)
            except OSError:
                self.disconnect()

    def close(self) -> None:
        self.disconnect()
        self._epoll.close()
