"""Same-host shared memory behind Publisher and Subscriber (`respike.stream.shm`).

The publisher and its subscribers run in separate processes where the property is about
processes (a SIGKILL, memory crossing); in one process where only the protocol is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from respike.stream import shm
from respike.stream.messages import SHM_TOPIC_PREFIX, Message, MessageError, decode, encode
from respike.stream.sockets import Delivery, Publisher, Subscriber

from helpers import receive_count

TOPIC = "cam/frames"
SLOTS = shm.ring_slots(1 << 20)
"""Slots of a ring of 640x480 frames (1 MiB slots)."""


def frame(value: int) -> Message:
    array = np.full((480, 640, 3), value % 256, np.uint8)
    return Message(TOPIC, "frame", t=value, arrays={"frame": array}, meta={"i": value})


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/pub.sock"


@pytest.fixture(params=["direct", "zeromq"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Headers by the direct connection, or by ZeroMQ (``RESPIKE_DIRECT=0``, as a reader that
    cannot connect has them)."""
    if request.param == "zeromq":
        monkeypatch.setenv("RESPIKE_DIRECT", "0")
    return str(request.param)


@pytest.fixture
def pair(endpoint: str) -> Iterator[tuple[Publisher, Subscriber]]:
    """A lossless publisher and one subscriber of ``TOPIC`` on it, connected."""
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LOSSLESS)
    subscriber = Subscriber(endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 1, 5.0)
        yield publisher, subscriber
    finally:
        subscriber.close()
        publisher.close()


def shm_files() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_frames_go_through_slots_once_the_reader_is_announced(
    path: str, pair: tuple[Publisher, Subscriber]
) -> None:
    publisher, subscriber = pair
    values = []
    for i in range(40):
        publisher.send(frame(i))
        # a receiver that lets each message go, as a node does after on_message
        values += [int(m.arrays["frame"][0, 0, 0]) for m in subscriber.receive(0.5)]
    values += [
        int(m.arrays["frame"][-1, -1, -1]) for m in receive_count(subscriber, 40 - len(values))
    ]
    assert values == list(range(40))
    assert publisher.shared is not None and subscriber.shared is not None
    assert publisher.shared.readers(TOPIC.encode()) == 1
    assert publisher.shared.inline_fallbacks == 0, "after the first, every frame in a slot"
    assert subscriber.health.gaps == 0 and not subscriber.health.invalid
    assert publisher.direct is not None
    assert len(publisher.direct.readers(TOPIC.encode())) == (path == "direct")


def test_held_messages_are_never_overwritten_and_the_rest_go_around(
    path: str, pair: tuple[Publisher, Subscriber]
) -> None:
    """Slots a node holds are never reused: the next messages go inline by ZeroMQ, or through
    a new ring to a direct reader (which takes no large message inline)."""
    publisher, subscriber = pair
    publisher.send(frame(0))
    receive_count(subscriber, 1)  # announces the table
    time.sleep(0.05)
    held = []
    for i in range(1, 3 * SLOTS):
        publisher.send(frame(i))
        held += subscriber.receive(timeout=0.5)
    held += receive_count(subscriber, 3 * SLOTS - 1 - len(held))
    assert [int(m.arrays["frame"].max()) for m in held] == list(range(1, 3 * SLOTS))
    assert [int(m.arrays["frame"].min()) for m in held] == list(range(1, 3 * SLOTS))
    assert publisher.shared is not None
    if path == "zeromq":
        assert publisher.shared.inline_fallbacks >= 2 * SLOTS - 1
    else:
        assert publisher.shared.inline_fallbacks == 0
        assert publisher.shared.rings_made == 3, "a ring per ring-full held"
    held.clear()  # the node lets go: the slots are free again
    fallbacks, rings = publisher.shared.inline_fallbacks, publisher.shared.rings_made
    for i in range(3):
        publisher.send(frame(100 + i))
        assert [int(m.arrays["frame"][0, 0, 0]) for m in receive_count(subscriber, 1)] == [100 + i]
    assert (publisher.shared.inline_fallbacks, publisher.shared.rings_made) == (fallbacks, rings)


def test_a_recorded_shared_memory_message_is_the_plain_message(
    pair: tuple[Publisher, Subscriber],
) -> None:
    publisher, subscriber = pair
    messages = []
    for i in range(3):
        publisher.send(frame(i))
        messages += receive_count(subscriber, 1)
    last = messages[-1]
    assert publisher.shared is not None and publisher.shared.inline_fallbacks == 0
    assert bytes(last.frames[0]) == TOPIC.encode()
    again = decode([bytes(f) for f in last.frames])
    assert (again.topic, again.seq, again.meta) == (TOPIC, 2, {"i": 2})
    np.testing.assert_array_equal(again.arrays["frame"], last.arrays["frame"])


def test_tcp_is_unchanged_and_shared_memory_can_be_turned_off(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = Publisher("tcp://127.0.0.1:*", source="cam")
    assert publisher.shared is None
    publisher.close()
    monkeypatch.setenv("RESPIKE_SHM", "0")
    publisher = Publisher(endpoint, source="cam")
    assert publisher.shared is None
    publisher.close()


def test_bad_slots_are_named_and_counted(endpoint: str) -> None:
    shared = shm.SharedIn(TOPIC)
    header = {"v": 1, "kind": "frame", "seq": 0, "t": 0, "pt": 0, "src": "x", "meta": {}}
    header["bufs"] = [["frame", "|u1", [4]]]
    wire = SHM_TOPIC_PREFIX + TOPIC.encode()
    import msgpack

    def slot_message(**fields: object) -> list[bytes]:
        return [wire, msgpack.packb(header | fields)]

    with pytest.raises(MessageError, match="shm-unavailable"):
        decode(slot_message(pub=7, slot=[0, 1, 2, 4096, 64, 0]))
    with pytest.raises(MessageError, match="expected 6 ints"):
        decode(slot_message(pub=7, slot=[0, 1, -2, 4096, 64, 0]), shared)
    with pytest.raises(MessageError, match="overrun a 4096-byte ring"):
        decode(slot_message(pub=7, slot=[0, os.getpid(), 0, 4096, 4090, 0]), shared)
    with pytest.raises(MessageError, match="shm-open: ring 0 of pid 4194305"):
        decode(slot_message(pub=7, slot=[0, 2**22 + 1, 3, 4096, 64, 0]), shared)
    ring = shm.Ring(1, 4096)
    ring.stamp(0, 5)
    with pytest.raises(MessageError, match="slot holds write 5, header says 3"):
        decode(slot_message(pub=7, slot=[1, os.getpid(), ring.fd, ring.size, 64, 3]), shared)
    ring.close()
    plain = encode(Message(TOPIC, "frame", t=1, arrays={"f": np.arange(3)}), seq=0, pt=0)
    assert decode([wire, *plain[1:]], shared).topic == TOPIC, "replayed frames: inline, no pub"


CHILD_SUBSCRIBER = textwrap.dedent(
    """
    import sys, time
    from respike.stream.sockets import Delivery, Subscriber
    subscriber = Subscriber(sys.argv[1], "cam/frames", delivery=Delivery.LOSSLESS)
    kept = []
    while True:
        for message in subscriber.receive(timeout=0.1):
            kept.append(message)  # holds every slot it got, then dies holding them
            print(int(message.arrays["frame"][0, 0, 0]), flush=True)
    """
)


@pytest.mark.timeout(60)
def test_a_sigkilled_subscriber_holding_slots_leaves_nothing_locked_or_behind(
    path: str, endpoint: str
) -> None:
    before = shm_files()
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LOSSLESS)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SUBSCRIBER, endpoint], stdout=subprocess.PIPE, text=True
    )
    survivor = Subscriber(endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 2, 20.0)
        assert publisher.shared is not None
        got = []
        for i in range(2 * SLOTS):
            publisher.send(frame(i))
            got += survivor.receive(timeout=1.0)
            assert child.stdout is not None
            assert int(child.stdout.readline()) == i
            got.clear()
        assert publisher.shared.readers(TOPIC.encode()) == 2
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while publisher.shared.readers(TOPIC.encode()) == 2 and time.monotonic() < deadline:
            publisher.subscribers(TOPIC)  # reads the unsubscription of the dead socket
            time.sleep(0.05)
        assert publisher.shared.readers(TOPIC.encode()) == 1, "the dead reader is dropped"
        fallbacks = publisher.shared.inline_fallbacks
        for i in range(3 * SLOTS):  # lossless: would wait forever on a locked slot
            publisher.send(frame(100 + i))
            assert [int(m.arrays["frame"][0, 0, 0]) for m in receive_count(survivor, 1)] == [
                100 + i
            ]
        assert publisher.shared.inline_fallbacks == fallbacks, "its slots are free again"
    finally:
        if child.poll() is None:
            child.kill()
        survivor.close()
        publisher.close()
    assert shm_files() == before, "memfds only: no file in /dev/shm, whoever dies"


CHILD_PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from respike.stream.messages import Message
    from respike.stream.sockets import Delivery, Publisher
    publisher = Publisher(sys.argv[1], source="cam", delivery=Delivery.LOSSLESS)
    publisher.wait_for_subscribers("cam/frames", 1, 20.0)
    base = int(sys.argv[2])
    for i in range(base, base + 12):
        array = np.full((480, 640, 3), i, np.uint8)
        publisher.send(Message("cam/frames", "frame", t=i, arrays={"frame": array}))
        time.sleep(0.05)
    print("sent", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.timeout(90)
def test_held_arrays_outlive_a_sigkilled_publisher_and_its_successor_is_read(
    path: str, endpoint: str
) -> None:
    before = shm_files()
    subscriber = Subscriber(endpoint, TOPIC, delivery=Delivery.LOSSLESS)
    try:
        first = subprocess.Popen(
            [sys.executable, "-c", CHILD_PUBLISHER, endpoint, "10"], stdout=subprocess.PIPE
        )
        held = receive_count(subscriber, 12, timeout=30)
        assert [int(m.arrays["frame"][0, 0, 0]) for m in held] == list(range(10, 22))
        first.kill()
        first.wait(10)
        os.unlink(endpoint.removeprefix("ipc://"))
        second = subprocess.Popen(
            [sys.executable, "-c", CHILD_PUBLISHER, endpoint, "50"], stdout=subprocess.PIPE
        )
        try:
            later = receive_count(subscriber, 12, timeout=30)
            assert [int(m.arrays["frame"][-1, -1, -1]) for m in later] == list(range(50, 62))
        finally:
            second.kill()
            second.wait(10)
        assert [int(m.arrays["frame"].mean()) for m in held] == list(range(10, 22))
        assert subscriber.health.restarts == 1 and not subscriber.health.invalid
    finally:
        subscriber.close()
    assert shm_files() == before


def test_a_live_publisher_never_waits_for_a_reader_that_holds_everything(
    path: str, endpoint: str
) -> None:
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LIVE, hwm=64)
    subscriber = Subscriber(endpoint, TOPIC, delivery=Delivery.LIVE, queue=64)
    try:
        assert publisher.wait_for_subscribers(TOPIC, 1, 5.0)
        publisher.send(frame(0))
        kept = receive_count(subscriber, 1)
        time.sleep(0.05)
        for i in range(1, 4 * SLOTS):
            publisher.send(frame(i))
            kept += subscriber.receive(timeout=0.2)
        assert publisher.shared is not None
        # every frame past the ring went inline or to a new ring at once: a live send never
        # waits for a slot
        if path == "zeromq":
            assert publisher.shared.inline_fallbacks >= 3 * SLOTS - 1
        else:
            assert publisher.shared.rings_made == 4
        assert [int(m.arrays["frame"][0, 0, 0]) for m in kept][-1] == 4 * SLOTS - 1
    finally:
        subscriber.close()
        publisher.close()
