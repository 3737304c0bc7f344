"""Same-host headers by a direct connection (`respike.stream.direct`): joining keeps the order
and decodes each message once, live never waits, the switch names one reader, bad datagrams
are counted. The crash tests and the 100k lossless test run on both paths in
test_stream_shm.py and test_stream_sockets.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from respike.stream import direct
from respike.stream.messages import SHM_TOPIC_PREFIX, Message, MessageError
from respike.stream.sockets import Delivery, Publisher, Subscriber

from helpers import receive_count

TOPIC = "cam/frames"


def message(i: int, nbytes: int) -> Message:
    """Message ``i`` with ``nbytes`` of arrays holding ``i``: small ones go inline, the rest
    through slots."""
    return Message(TOPIC, "frame", t=i, arrays={"data": np.full(nbytes, i % 256, np.uint8)})


def check_a_reader_stays_on_zeromq_with_slots(publisher: Publisher) -> None:
    """A new reader of ``publisher``: send until its table, announced on ZeroMQ, reaches the
    publisher (ZeroMQ takes its time with subscriptions on a busy machine), then 10 more;
    every message came, in order, not by a direct connection, and the 10 through slots."""
    reader = Subscriber(publisher.endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 1, 5.0)
        assert publisher.shared is not None and reader.shared is not None
        seqs: list[int] = []  # a node that lets each message go: its slots are free again
        deadline = time.monotonic() + 10
        while publisher.shared.readers(TOPIC.encode()) == 0 and time.monotonic() < deadline:
            publisher.send(message(len(seqs), 100_000))
            seqs += [m.seq for m in receive_count(reader, 1)]
        slotted = reader.shared.from_slots
        for _ in range(10):
            publisher.send(message(len(seqs), 100_000))
            seqs += [m.seq for m in receive_count(reader, 1)]
        assert reader.direct is not None and not reader.direct.active
        assert seqs == list(range(len(seqs))) and reader.shared.from_slots - slotted == 10
    finally:
        reader.close()


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/pub.sock"


@pytest.fixture
def lossless(endpoint: str) -> Iterator[Publisher]:
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LOSSLESS)
    yield publisher
    publisher.close()


def test_joining_keeps_the_order_and_delivers_each_message_once(lossless: Publisher) -> None:
    """Messages sent while two readers join (both paths carry copies for a while) arrive
    once each, in order, small and large alike; afterwards ZeroMQ carries none of them."""
    readers = [Subscriber(lossless.endpoint, TOPIC, delivery=Delivery.LOSSLESS) for _ in range(2)]
    try:
        assert lossless.wait_for_subscribers(TOPIC, 2, 5.0)
        got: list[list[Message]] = [[], []]
        for i in range(300):
            lossless.send(message(i, 64 if i % 3 else 200_000))
            for reader, into in zip(readers, got, strict=True):
                into += reader.receive()
        for reader, into in zip(readers, got, strict=True):
            into += receive_count(reader, 300 - len(into))
            assert [m.seq for m in into] == list(range(300)), "once each, in order"
            assert [int(m.arrays["data"][-1]) for m in into] == [i % 256 for i in range(300)]
            assert not reader.health.invalid, "the other reader's switch is not a bad message"
            assert reader.direct is not None and reader.direct.switched
        assert lossless.direct is not None and lossless.shared is not None
        assert len(lossless.direct.readers(TOPIC.encode())) == 2
        assert lossless.shared.readers(TOPIC.encode()) == 2, "their tables, from their hellos"
        assert lossless.subscribers(TOPIC) == 2
        assert lossless._matching(SHM_TOPIC_PREFIX + TOPIC.encode()) == 0, "off ZeroMQ"
    finally:
        for reader in readers:
            reader.close()


def test_a_plain_subscriber_beside_a_direct_one_gets_everything(lossless: Publisher) -> None:
    plain = Subscriber(lossless.endpoint, TOPIC, delivery=Delivery.LOSSLESS, shared_memory=False)
    fast = Subscriber(lossless.endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert lossless.wait_for_subscribers(TOPIC, 2, 5.0)
        seqs = []
        for i in range(40):
            lossless.send(message(i, 100_000))
            seqs += [m.seq for m in fast.receive()]
        assert [m.seq for m in receive_count(plain, 40)] == list(range(40))
        assert seqs + [m.seq for m in receive_count(fast, 40 - len(seqs))] == list(range(40))
        assert fast.direct is not None and fast.direct.switched
    finally:
        plain.close()
        fast.close()


def test_a_live_publisher_never_waits_for_a_direct_reader_that_stopped_reading(
    endpoint: str,
) -> None:
    """Its connection fills up: the publisher skips it (counted), and the reader, reading
    again, sees the gap and the newest messages."""
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LIVE)
    reader = Subscriber(endpoint, TOPIC, delivery=Delivery.LIVE, queue=4)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 1, 5.0)
        for i in range(3):  # joins
            publisher.send(message(i, 64))
            receive_count(reader, 1, timeout=1.0)
        assert reader.direct is not None and reader.direct.switched
        for i in range(3, 20_003):  # never read: a header-only datagram fills a connection
            publisher.send(message(i, 64))
        assert publisher.direct is not None and publisher.direct.missed > 0
        assert len(receive_count(reader, 4, timeout=2.0)) == 4, "the newest that fitted"
        publisher.send(message(20_003, 64))
        assert [m.seq for m in receive_count(reader, 1)] == [20_003]
        assert reader.health.gaps == publisher.direct.missed, "what it missed, as a gap"
    finally:
        reader.close()
        publisher.close()


def test_bad_datagrams_are_named_and_counted() -> None:
    header = b"\x81\xa1v\x01"
    for data, says in [
        (b"\x01\x00", "expected a preamble"),
        (direct._PREAMBLE.pack(4, 9, 0), "9 buffer lengths overrun"),
        (direct._PREAMBLE.pack(400, 0, 0) + header, "header overruns"),
        (direct._PREAMBLE.pack(4, 1, 0) + direct._SIZE.pack(1 << 40) + header, "buffers overrun"),
    ]:
        with pytest.raises(MessageError, match=says):
            direct.split(data)
    parts = direct.datagram(header, [memoryview(b"abc"), memoryview(bytes(100))])
    got_header, buffers = direct.split(b"".join(bytes(p) for p in parts))
    assert bytes(got_header) == header and [bytes(b) for b in buffers] == [b"abc", bytes(100)]


def test_garbage_on_a_direct_connection_is_counted_and_the_reader_goes_on(
    lossless: Publisher,
) -> None:
    reader = Subscriber(lossless.endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert lossless.wait_for_subscribers(TOPIC, 1, 5.0)
        lossless.send(message(0, 64))
        receive_count(reader, 1)
        lossless.send(message(1, 64))
        receive_count(reader, 1)
        assert lossless.direct is not None
        (connection,) = [r.connection for r in lossless.direct.readers(TOPIC.encode())]
        connection.send(b"\x07garbage")
        lossless.send(message(2, 64))
        assert [m.seq for m in receive_count(reader, 1)] == [2]
        assert reader.health.invalid == {"direct-datagram": 1}
    finally:
        reader.close()


def test_a_reader_that_cannot_connect_stays_on_zeromq(
    lossless: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another network namespace (no abstract socket in common) looks like this."""
    monkeypatch.setattr(direct, "address", lambda nonce: b"\0respike/nobody-listens")
    check_a_reader_stays_on_zeromq_with_slots(lossless)


def test_the_listening_socket_is_abstract_and_goes_with_the_publisher(endpoint: str) -> None:
    publisher = Publisher(endpoint, source="cam")
    assert publisher.shared is not None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.connect(direct.address(publisher.shared.nonce))
    probe.close()
    publisher.close()
    with pytest.raises(ConnectionRefusedError):
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect(
            direct.address(publisher.shared.nonce)
        )


def test_a_hello_naming_another_process_is_refused(lossless: Publisher) -> None:
    """The kernel names the peer: a table of another process is never mapped for it."""
    assert lossless.shared is not None and lossless.direct is not None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.connect(direct.address(lossless.shared.nonce))
    nonce = f"{lossless.shared.nonce:x}".encode()
    probe.send(direct.HELLO + b"\0reader/" + nonce + b"/1/3/" + TOPIC.encode())
    probe.settimeout(5.0)
    lossless.subscribers(TOPIC)  # reads the hello
    assert probe.recv(16) == b"", "closed on"
    assert lossless.direct.readers(TOPIC.encode()) == []
    assert lossless.shared.readers(TOPIC.encode()) == 0
    probe.close()


def test_a_refused_reader_announces_its_table_on_zeromq(
    lossless: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lossless.direct is not None and lossless.shared is not None
    take = lossless.shared.notice
    monkeypatch.setattr(
        lossless.direct, "on_table", lambda add, table: not add and take(add, table)
    )
    check_a_reader_stays_on_zeromq_with_slots(lossless)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_a_reader_of_another_user_is_refused(lossless: Publisher) -> None:
    """An abstract socket has no file permissions: the publisher checks the peer's user."""
    assert lossless.shared is not None
    other_user = (
        "import os, socket, sys; os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        f"s.connect({direct.address(lossless.shared.nonce)!r}); s.settimeout(10)\n"
        "print(repr(s.recv(16)), flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", other_user], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while child.poll() is None and time.monotonic() < deadline:
        lossless.subscribers(TOPIC)  # accepts, and refuses
        time.sleep(0.01)
    assert child.wait(10) == 0 and child.stdout is not None
    assert child.stdout.read().strip() == "b''", "closed on at once"


def test_a_lossless_reader_of_a_live_publisher_does_not_wait_for_a_lost_marker(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live publisher's marker may be dropped on ZeroMQ (a full live queue): its datagrams
    say it is live, and the reader switches at the first."""
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LIVE)
    assert publisher.direct is not None
    monkeypatch.setattr(publisher, "_poll_direct", lambda stop: publisher.direct.poll())
    reader = Subscriber(endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 1, 5.0)
        seqs = []
        for i in range(20):
            publisher.send(message(i, 100_000))
            seqs += [m.seq for m in reader.receive(timeout=1.0)]
        assert reader.direct is not None and reader.direct.switched
        assert seqs == list(range(20))
    finally:
        reader.close()
        publisher.close()


def test_a_reader_keeping_a_window_of_frames_reuses_the_rings_it_made(
    lossless: Publisher,
) -> None:
    """Slots held make a ring rather than stall or go inline; once made, rings are used
    again, not made afresh every ring-full (a new memfd faults every page in again)."""
    reader = Subscriber(lossless.endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert lossless.wait_for_subscribers(TOPIC, 1, 5.0)
        window: list[Message] = []  # 20 frames: more than a ring of 16 1 MiB slots holds
        for i in range(100):
            lossless.send(message(i, 900_000))
            window = (window + reader.receive(timeout=1.0))[-20:]
        assert [m.seq for m in window] == list(range(80, 100))
        assert lossless.shared is not None and lossless.shared.rings_made == 2
    finally:
        reader.close()
