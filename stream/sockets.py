"""Publisher and subscriber: typed messages over ZeroMQ with `live` or `lossless` delivery.

Delivery modes:

- ``live`` (camera, viewer): the subscriber drains everything that has arrived and keeps only
  the newest ``queue`` messages, so a slow consumer always works on fresh data; what it skips is
  counted as ``dropped``. The publisher never waits for anyone.
- ``lossless`` (replay, recording, benchmarks): the publisher socket is an XPUB with
  ``XPUB_NODROP``, so when a subscriber's queue is full ``send`` waits (backpressure) instead of
  discarding; nothing is dropped and sequence numbers stay contiguous.

Publishers bind, subscribers connect. On ``ipc://`` endpoints (one host) arrays go through
shared memory (:mod:`respike.stream.shm`), and the header and the slot reach each subscriber
that could connect to its publisher directly (:mod:`respike.stream.direct`), the rest by
ZeroMQ; delivery keeps its meaning. Poll all of a subscriber's :attr:`Subscriber.pollables`.
Every received message goes through
:func:`respike.stream.messages.decode`; a bad one is counted by cause in :class:`InputHealth`,
logged once per cause, and dropped, so input never raises out of :meth:`Subscriber.receive`.
Sequence gaps are counted per topic.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack
import zmq

from respike.stream import direct, shm
from respike.stream.messages import (
    SHM_TOPIC_PREFIX,
    Message,
    MessageError,
    decode,
    encode_parts,
    frame_bytes,
    now_us,
    pack_header,
)
from respike.stream.security import Security, authorize_clients

log = logging.getLogger(__name__)

LOSSLESS_HWM = 32
"""Messages queued per lossless subscriber on each side. Enough to ride out bursts of small
messages; small enough that 640x480 frames in flight (~60 MB) add tens of ms, not hundreds
(bench/transport.py measured 50-270 ms of queueing at 256)."""


LIVE_HWM = 2
"""Messages queued per live subscriber on the publisher's side by default. ZeroMQ drops the
newest message when a queue is full, so a long queue would hold stale frames for a slow
consumer; a publisher whose consumers keep more (``queue``) is given a larger one."""


ZERO_COPY_BYTES = 64 * 1024
"""Frames at least this large are sent without a copy; smaller ones are cheaper to copy (as
pyzmq's own ``copy_threshold``)."""


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
"""As plain ints: the enum arithmetic cost as much as the call, on every send."""


class Delivery(StrEnum):
    LIVE = "live"
    LOSSLESS = "lossless"


class Stopped(RuntimeError):
    """Raised by a blocking send or wait when the caller's stop condition became true."""


@dataclass
class InputHealth:
    """What one input received: counts, drops, sequence gaps and bad messages by cause."""

    name: str
    received: int = 0
    dropped: int = 0
    gaps: int = 0
    restarts: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    last_seq: int | None = None

    def reject(self, error: MessageError) -> None:
        """Count a bad message; log only the first of each cause so floods stay quiet."""
        if not self.invalid[error.cause]:
            log.warning(
                "input %s: dropped a bad message (%s); further ones are counted", self.name, error
            )
        self.invalid[error.cause] += 1

    def accept(self, message: Message) -> None:
        """Count a valid message and check its sequence number against the previous one."""
        self.received += 1
        if self.last_seq is not None:
            if message.seq > self.last_seq + 1:
                self.gaps += message.seq - self.last_seq - 1
            elif message.seq <= self.last_seq:
                self.restarts += 1  # the publisher restarted and counts from 0 again
        self.last_seq = message.seq

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "dropped": self.dropped,
            "gaps": self.gaps,
            "restarts": self.restarts,
            "invalid": dict(self.invalid),
        }


class Publisher:
    """Binds ``endpoint`` and publishes :class:`Message` s with per-topic sequence numbers."""

    def __init__(
        self,
        endpoint: str,
        *,
        source: str,
        delivery: Delivery = Delivery.LIVE,
        security: Security | None = None,
        context: zmq.Context | None = None,
        hwm: int | None = None,
        shared_memory: bool = True,
    ) -> None:
        security = security or Security()
        security.check(endpoint)
        self.source = source
        self.delivery = Delivery(delivery)
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.linger = 0
        # live: a short queue per subscriber so a slow one never works through stale data;
        # lossless: a deeper one so bursts flow before backpressure reaches the sender.
        self._socket.sndhwm = hwm or (
            LOSSLESS_HWM if self.delivery is Delivery.LOSSLESS else LIVE_HWM
        )
        self._socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # report every (un)subscription
        if self.delivery is Delivery.LOSSLESS:
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
            self._socket.sndtimeo = 100  # wake every 100 ms while blocked to check `stop`
        if security.curve:
            authorize_clients(self._context, security)
            security.apply_server(self._socket)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._seq: Counter[str] = Counter()
        self._subscriptions: Counter[bytes] = Counter()
        self._matches: dict[bytes, int] = {}
        self.sent: Counter[str] = Counter()
        self.shared = shm.SharedOut() if shared_memory and shm.enabled(endpoint) else None
        """Same-host shared memory for arrays (``ipc://`` endpoints), else None."""
        self.direct = (
            direct.DirectOut(self.shared.nonce, self.shared.notice, listen=direct.enabled())
            if self.shared
            else None
        )
        """Same-host readers connected directly, beside ZeroMQ; with :attr:`shared`."""

    def subscribers(self, topic: str) -> int:
        """How many subscribers currently take ``topic`` (after reading pending notices)."""
        self._read_subscriptions()
        encoded = topic.encode()
        count = self._matching(encoded) + self._matching(SHM_TOPIC_PREFIX + encoded)
        if self.direct is not None:  # joining readers are still subscribed on ZeroMQ too
            self._poll_direct(lambda: False)
            readers = self.direct.readers(encoded)
            count += len(readers) - self.direct.joining(encoded)
        return count

    def _matching(self, wire_topic: bytes) -> int:
        """Subscriptions matching ``wire_topic``; counted once per change of subscriptions."""
        count = self._matches.get(wire_topic)
        if count is None:
            count = sum(n for p, n in self._subscriptions.items() if wire_topic.startswith(p))
            self._matches[wire_topic] = count
        return count

    def wait_for_subscribers(
        self, topic: str, count: int, timeout: float, stop: Callable[[], bool] = lambda: False
    ) -> bool:
        """Wait until ``count`` subscribers match ``topic``; False on timeout.

        A lossless source calls this before its first message so the subscribers that the
        pipeline wired to it do not miss the start (ZeroMQ's slow-joiner problem).
        """
        deadline = time.monotonic() + timeout
        while self.subscribers(topic) < count:
            if stop():
                raise Stopped(f"stopped while waiting for subscribers of {topic}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._socket.poll(min(100, int(remaining * 1000) + 1), zmq.POLLIN)
        return True

    def send(self, message: Message, stop: Callable[[], bool] = lambda: False) -> None:
        """Stamp ``message`` with the next sequence number and publish time, and send it.

        In lossless mode this blocks while a subscriber is full; ``stop`` is checked every
        100 ms so shutdown still works under backpressure (raises :class:`Stopped`).
        """
        header, buffers = encode_parts(
            message, seq=self._seq[message.topic], pt=now_us(), source=self.source
        )
        self._seq[message.topic] += 1
        topic = message.topic.encode()
        if self.shared is None:
            self._send([topic, pack_header(header), *buffers], stop)
        else:
            self._send_same_host(topic, header, buffers, stop)
        self.sent[message.topic] += 1

    def _send_same_host(
        self,
        topic: bytes,
        header: dict[str, Any] | bytes,
        buffers: list[memoryview],
        stop: Callable[[], bool],
        plain_frames: list[Any] | None = None,
    ) -> None:
        """Plain frames to plain subscribers; to same-host ones the header and a slot, or the
        buffers inline while a slot is not possible (see :mod:`respike.stream.shm`), each
        direct reader by its connection (see :mod:`respike.stream.direct`). A ``bytes``
        header goes as it is, inline (replayed bytes that are not a header: readers judge)."""
        assert self.shared is not None and self.direct is not None
        plain, same_host = self._audiences(topic)
        self._poll_direct(stop)  # after ZeroMQ's notices: see stream.direct on joining
        readers = self.direct.readers(topic)
        if plain and (self._matching(topic) or not readers):
            if plain_frames is None:
                assert isinstance(header, dict)
                plain_frames = [topic, pack_header(header), *buffers]
            self._send(plain_frames, stop)
        if not same_host and not readers:
            return
        joining = self.direct.joining(topic)
        announced = same_host == self.shared.readers(topic) - len(readers) + joining
        nbytes = sum(map(len, buffers))
        slot = None
        if (
            isinstance(header, dict)
            and nbytes >= shm.MIN_SHARED_BYTES
            and (readers or (same_host and announced and nbytes <= shm.MAX_SHARED_BYTES))
        ):
            slot = self.shared.place(
                topic,
                buffers,
                wait=self.delivery is Delivery.LOSSLESS,
                stop=stop,
                refresh=self._refresh,
                add_ring_when_held=bool(readers),
            )
        if isinstance(header, bytes):
            inline, slotted = header, b""
        else:
            if not announced:  # tells the newcomers which publisher this is
                header["pub"] = self.shared.nonce
            inline = pack_header(header)
            slotted = b"" if slot is None else pack_header(header | self._slot_fields(slot))
        if readers:
            flags = direct.FROM_LIVE if self.delivery is Delivery.LIVE else 0
            if slotted:
                parts = direct.datagram(slotted, [], flags)
            elif nbytes < shm.MIN_SHARED_BYTES or not isinstance(header, dict):
                parts = direct.datagram(inline, buffers, flags)
            else:  # live, with every slot in flight: these readers see a gap
                self.direct.missed += len(readers)
                parts = []
            if parts:
                self.direct.send(topic, parts, wait=self.delivery is Delivery.LOSSLESS, stop=stop)
        if same_host and slotted and announced:
            self._send([SHM_TOPIC_PREFIX + topic, slotted], stop)
        elif same_host:
            self._send([SHM_TOPIC_PREFIX + topic, inline, *buffers], stop)

    def _slot_fields(self, slot: list[int]) -> dict[str, Any]:
        assert self.shared is not None
        return {"pub": self.shared.nonce, "slot": slot}

    def _poll_direct(self, stop: Callable[[], bool]) -> None:
        """Take direct readers' hellos, joins and ends; send each new one its switch marker
        on ZeroMQ, before anything goes to it directly."""
        assert self.direct is not None
        for reader in self.direct.poll():
            self._send([SHM_TOPIC_PREFIX + reader.topic, direct.SWITCH + reader.table], stop)

    def _refresh(self) -> None:
        """Learn of readers that went, while a lossless send waits for their slots."""
        self._read_subscriptions()
        if self.direct is not None:
            self._poll_direct(lambda: False)

    def _audiences(self, topic: bytes) -> tuple[bool, int]:
        """Whether ``topic`` goes out in the plain form (to plain subscribers, or to nobody:
        ZeroMQ drops it) and how many subscribers take the same-host form. Reads notices
        first, so a reader announced since the last send counts from this one."""
        self._read_subscriptions()
        same_host = self._matching(SHM_TOPIC_PREFIX + topic)
        return bool(self._matching(topic)) or not same_host, same_host

    def _send(self, frames: list[Any], stop: Callable[[], bool]) -> None:
        if self.delivery is Delivery.LIVE:
            self._send_frames(frames)
            return
        while True:  # a blocking send with SNDTIMEO: XPUB always polls writable, so no poll loop
            try:
                self._send_frames(frames)
                return
            except zmq.Again:
                if stop():
                    raise Stopped("stopped while a lossless send was blocked") from None

    def _send_frames(self, frames: list[Any]) -> None:
        """``send_multipart`` without its per-frame checks (a third of a small message's cost);
        large buffers go without a copy. Only the first frame can raise ``zmq.Again``: ZeroMQ
        queues a multipart message whole or not at all."""
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            self._socket.send(
                frame, zmq.SNDMORE if index < last else 0, copy=len(frame) < ZERO_COPY_BYTES
            )

    def send_raw(self, frames: list[Any], stop: Callable[[], bool] = lambda: False) -> None:
        """Send already-encoded frames unchanged (replay of recorded bytes), with backpressure;
        same-host subscribers get them inline under their form of the topic."""
        if self.shared is None:
            self._send(frames, stop)
            return
        header: dict[str, Any] | bytes = bytes(frame_bytes(frames[1]))
        try:
            unpacked = msgpack.unpackb(header, raw=False)
            if isinstance(unpacked, dict) and "pub" not in unpacked and "slot" not in unpacked:
                header = unpacked
        except Exception:  # not a header: it goes as it is, and the readers count it
            pass
        buffers = [frame_bytes(frame) for frame in frames[2:]]
        topic = bytes(frame_bytes(frames[0]))
        self._send_same_host(topic, header, buffers, stop, plain_frames=frames)

    @property
    def socket(self) -> zmq.Socket[Any]:
        """The XPUB socket, readable when (un)subscription notices wait: poll it to learn of
        new subscribers as they come (see :meth:`new_subscriptions`)."""
        return self._socket

    def new_subscriptions(self) -> list[str]:
        """Read pending (un)subscription notices; the topic prefixes subscribed since last time
        (in their plain form, whichever form the subscriber took)."""
        return self._read_subscriptions()

    def _read_subscriptions(self) -> list[str]:
        added: list[str] = []
        if not self._socket.getsockopt(_EVENTS) & _POLLIN:
            return added  # half the cost of a recv that raises Again, on every send
        self._matches.clear()
        while True:
            try:
                notice = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return added
            subscribe, prefix = notice[:1] == b"\x01", notice[1:]
            if prefix.startswith(shm.READER_PREFIX):
                if self.shared is not None and notice[:1] in (b"\x00", b"\x01"):
                    self.shared.notice(subscribe, prefix)
            elif subscribe:
                self._subscriptions[prefix] += 1
                plain = prefix.removeprefix(SHM_TOPIC_PREFIX)
                added.append(plain.decode(errors="replace"))
            elif notice[:1] == b"\x00" and self._subscriptions[prefix] > 0:
                self._subscriptions[prefix] -= 1

    def close(self, linger: float = 0.0) -> None:
        """Close the socket, waiting up to ``linger`` seconds for queued messages to leave."""
        self._socket.close(linger=int(linger * 1000))
        if self.direct is not None:
            self.direct.close()
        if self.shared is not None:
            self.shared.close()


class Subscriber:
    """Connects to a publisher's ``endpoint`` and receives one ``topic``."""

    def __init__(
        self,
        endpoint: str,
        topic: str,
        *,
        delivery: Delivery = Delivery.LIVE,
        queue: int = 1,
        security: Security | None = None,
        context: zmq.Context | None = None,
        name: str | None = None,
        shared_memory: bool = True,
    ) -> None:
        if queue < 1:
            raise ValueError(f"queue must be ≥ 1, got {queue}")
        security = security or Security()
        security.check(endpoint)
        self.topic = topic
        self.delivery = Delivery(delivery)
        self.queue = queue
        self.health = InputHealth(name or topic)
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.rcvhwm = max(2, queue) if self.delivery is Delivery.LIVE else LOSSLESS_HWM
        security.apply_client(self.socket)
        self.socket.connect(endpoint)
        self.shared = shm.SharedIn(topic) if shared_memory and shm.enabled(endpoint) else None
        """Same-host shared memory for arrays (``ipc://`` endpoints), else None."""
        self.direct = direct.DirectIn(self.delivery is Delivery.LOSSLESS) if self.shared else None
        """The direct connection to the publisher, with :attr:`shared`."""
        self._wire_topic = (SHM_TOPIC_PREFIX if self.shared else b"") + topic.encode()
        self.socket.setsockopt(zmq.SUBSCRIBE, self._wire_topic)
        self._on_zeromq = True
        self._poller = zmq.Poller()
        for pollable in self.pollables:
            self._poller.register(pollable, zmq.POLLIN)

    @property
    def pollables(self) -> tuple[Any, ...]:
        """What to poll for this subscriber's input (a ``zmq.Poller`` takes each, and names each
        so when ready): the ZeroMQ socket and, on one host, the direct connection's descriptor
        (an ``int``)."""
        return (self.socket,) if self.direct is None else (self.socket, self.direct.fileno())

    def receive(self, timeout: float | None = None) -> list[Message]:
        """Messages that arrived, oldest first; waits up to ``timeout`` seconds for the first.

        ``live`` keeps only the newest ``queue`` of everything pending; ``lossless`` returns
        everything pending (at most 256 at a time from each path).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left < 0 or not self._poller.poll(max(0, math.ceil(left * 1000))):
                    return []
            kept = self._take()
            if kept or deadline is None:
                return kept

    def _take(self) -> list[Message]:
        """What arrived (a switch marker, bad messages, or datagrams held until the switch
        may make it nothing)."""
        limit = 256 if self.delivery is Delivery.LOSSLESS else None
        kept: deque[Message] = deque(maxlen=self.queue if limit is None else None)
        for message in self._arrivals(limit or 1 << 30):
            self.health.accept(message)
            if len(kept) == kept.maxlen:
                self.health.dropped += 1
            kept.append(message)
        if self.shared is not None:
            self._follow_publisher()
        return list(kept)

    def _arrivals(self, limit: int) -> Iterable[Message]:
        """Valid messages from ZeroMQ, then from the direct connection, in order (see
        :mod:`respike.stream.direct` on joining); bad ones are counted."""
        link = self.direct
        for frames in self._drain(limit):
            if frame_bytes(frames[0]) != self._wire_topic:
                continue  # a longer topic sharing our prefix
            if link is not None:
                if link.switched:
                    continue  # a copy of what comes directly
                if len(frames) == 2 and direct.is_switch(frame_bytes(frames[1])):
                    link.switch(frame_bytes(frames[1]))  # this reader's, or another's
                    continue
            message = self._decoded(frames)
            if message is not None:
                if link is not None:
                    link.took_from_zeromq(message.seq)
                yield message
        if link is None:
            return
        for data in link.datagrams(limit):
            try:
                header, buffers = direct.split(data)
            except MessageError as error:
                self.health.reject(error)
                continue
            message = self._decoded([self._wire_topic, header, *buffers])
            if message is not None and not link.is_copy(message.seq):
                yield message

    def _decoded(self, frames: list[Any]) -> Message | None:
        try:
            return decode(frames, self.shared)
        except MessageError as error:
            self.health.reject(error)
            return None

    def _follow_publisher(self) -> None:
        """Connect directly to a publisher just seen, or announce this side's table to it on
        ZeroMQ when that fails; leave ZeroMQ once joined; come back when the publisher goes."""
        assert self.shared is not None and self.direct is not None
        for prefix in self.shared.withdraw:
            self.socket.setsockopt(zmq.UNSUBSCRIBE, prefix)
        self.shared.withdraw.clear()
        nonce, announcements = self.shared.nonce, self.shared.announce
        fresh = bool(announcements) and self.direct.nonce != nonce
        if fresh and nonce is not None and self.direct.connect(nonce, announcements[-1]):
            announcements.clear()
        if self.direct.refused:
            announcements.append(self.direct.refused)
            self.direct.refused = b""
        for prefix in announcements:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix)
        announcements.clear()
        if self.direct.switched and self._on_zeromq:
            self.direct.say_joined()
            self.socket.setsockopt(zmq.UNSUBSCRIBE, self._wire_topic)
            self._on_zeromq = False
        elif not self.direct.active and not self._on_zeromq:
            self.socket.setsockopt(zmq.SUBSCRIBE, self._wire_topic)  # to hear the next one
            self._on_zeromq = True

    def _drain(self, limit: int) -> Iterable[list[zmq.Frame]]:
        """Up to ``limit`` waiting messages. Asks before each whether one waits: a
        ``recv`` that raises ``Again`` costs several times that, on every receive of a
        subscriber whose messages come by its direct connection."""
        for _ in range(limit):
            if not self.socket.getsockopt(_EVENTS) & _POLLIN:
                return
            try:
                yield self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.direct is not None:
            self.direct.close()
        if self.shared is not None:
            self.shared.close()
