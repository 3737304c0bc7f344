"""Publisher and subscriber: typed messages over ZeroMQ with `live` or `lossless` delivery.

Delivery modes:

- ``live`` (camera, viewer): the subscriber drains everything that has arrived and keeps only
  the newest ``queue`` messages, so a slow consumer always works on fresh data; what it skips is
  counted as ``dropped``. The publisher never waits for anyone.
- ``lossless`` (replay, recording, benchmarks): the publisher socket is an XPUB with
  ``XPUB_NODROP``, so when a subscriber's queue is full ``send`` waits (backpressure) instead of
  discarding; nothing is dropped and sequence numbers stay contiguous.

Publishers bind, subscribers connect. On ``ipc://`` endpoints (one host) arrays go through
shared memory (:mod:`respike.stream.shm`) and ZeroMQ carries the header and the slot; delivery
keeps its meaning. Every received message goes through
:func:`respike.stream.messages.decode`; a bad one is counted by cause in :class:`InputHealth`,
logged once per cause, and dropped, so input never raises out of :meth:`Subscriber.receive`.
Sequence gaps are counted per topic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import zmq

from respike.stream import shm
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

    def subscribers(self, topic: str) -> int:
        """How many subscriptions currently match ``topic`` (after reading pending notices)."""
        self._read_subscriptions()
        encoded = topic.encode()
        return self._matching(encoded) + self._matching(SHM_TOPIC_PREFIX + encoded)

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
        header: dict[str, Any],
        buffers: list[memoryview],
        stop: Callable[[], bool],
    ) -> None:
        """Plain frames to plain subscribers; to same-host ones the header and a slot, or the
        buffers inline while a slot is not possible (see :mod:`respike.stream.shm`)."""
        assert self.shared is not None
        plain, same_host = self._audiences(topic)
        if plain:
            self._send([topic, pack_header(header), *buffers], stop)
        if not same_host:
            return
        announced = self.shared.readers(topic) == same_host
        if not announced:  # tells the newcomers whose ring to announce a table for
            header["pub"] = self.shared.nonce
        slot = None
        if announced and shm.MIN_SHARED_BYTES <= sum(map(len, buffers)) <= shm.MAX_SHARED_BYTES:
            slot = self.shared.place(
                topic,
                buffers,
                wait=self.delivery is Delivery.LOSSLESS,
                stop=stop,
                refresh=self._read_subscriptions,
            )
        if slot is None:
            self._send([SHM_TOPIC_PREFIX + topic, pack_header(header), *buffers], stop)
        else:
            header["pub"] = self.shared.nonce
            header["slot"] = slot
            self._send([SHM_TOPIC_PREFIX + topic, pack_header(header)], stop)

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
        topic = bytes(frame_bytes(frames[0]))
        plain, same_host = self._audiences(topic)
        if plain:
            self._send(frames, stop)
        if same_host:
            self._send([SHM_TOPIC_PREFIX + topic, *frames[1:]], stop)

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
        self._wire_topic = (SHM_TOPIC_PREFIX if self.shared else b"") + topic.encode()
        self.socket.setsockopt(zmq.SUBSCRIBE, self._wire_topic)

    def receive(self, timeout: float | None = None) -> list[Message]:
        """Messages that arrived, oldest first; waits up to ``timeout`` seconds for the first.

        ``live`` keeps only the newest ``queue`` of everything pending; ``lossless`` returns
        everything pending (at most 256 at a time).
        """
        if timeout is not None and not self.socket.poll(int(timeout * 1000), zmq.POLLIN):
            return []
        limit = 256 if self.delivery is Delivery.LOSSLESS else None
        kept: deque[Message] = deque(maxlen=self.queue if limit is None else None)
        for frames in self._drain(limit):
            if frame_bytes(frames[0]) != self._wire_topic:
                continue  # a longer topic sharing our prefix
            try:
                message = decode(frames, self.shared)
            except MessageError as error:
                self.health.reject(error)
                continue
            self.health.accept(message)
            if len(kept) == kept.maxlen:
                self.health.dropped += 1
            kept.append(message)
        if self.shared is not None:
            self._announce()
        return list(kept)

    def _announce(self) -> None:
        """Subscribe this side's shared-memory table for the publisher just seen (and drop a
        previous publisher's): the publisher learns of it in order with the data."""
        assert self.shared is not None
        for prefix in self.shared.withdraw:
            self.socket.setsockopt(zmq.UNSUBSCRIBE, prefix)
        for prefix in self.shared.announce:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix)
        self.shared.withdraw.clear()
        self.shared.announce.clear()

    def _drain(self, limit: int | None) -> Iterable[list[zmq.Frame]]:
        count = 0
        while limit is None or count < limit:
            try:
                yield self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            count += 1

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.shared is not None:
            self.shared.close()
