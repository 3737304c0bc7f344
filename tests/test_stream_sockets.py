"""Publisher/subscriber between processes: lossless delivery, live delivery, bad-input floods."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from respike.stream.messages import Message, MessageError, decode, encode, now_us
from respike.stream.security import InsecureEndpointError
from respike.stream.sockets import Delivery, Publisher, Subscriber


def receive_until_end(subscriber: Subscriber, timeout: float = 60.0) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in subscriber.receive(timeout=1.0):
            if message.end:
                return messages
            messages.append(message)
    raise AssertionError(f"no `end` after {timeout} s; got {len(messages)} messages")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "zeromq"])
@pytest.mark.parametrize("shape", ["16", "32768"], ids=["inline", "shared-memory"])
def test_lossless_delivers_100k_messages_between_processes_without_gaps(
    ipc_dir: Path, spawn, shape: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 bytes go inline; 32 KiB go through shared-memory slots (after the first); the
    headers by the direct connection, or by ZeroMQ (``RESPIKE_DIRECT=0``, as a reader that
    cannot connect has them)."""
    if path == "zeromq":
        monkeypatch.setenv("RESPIKE_DIRECT", "0")
    endpoint = f"ipc://{ipc_dir}/counter.sock"
    count = 100_000
    subscriber = Subscriber(endpoint, "counter/ticks", delivery=Delivery.LOSSLESS)
    source = spawn(
        "node",
        "counter",
        "--name",
        "counter",
        "--output",
        endpoint,
        "--lossless-outputs",
        "--expect",
        "ticks=1",
        "--rate",
        "0",
        "--count",
        str(count),
        "--shape",
        shape,
    )
    seqs: list[int] = []
    wrong: list[int] = []
    deadline = time.monotonic() + 120
    ended = False
    try:
        while not ended and time.monotonic() < deadline:
            for message in subscriber.receive(timeout=1.0):
                if message.end:
                    ended = True
                    break
                seqs.append(message.seq)
                data = message.arrays["data"]
                if not data[0] == data[-1] == message.meta["i"] % 256:
                    wrong.append(message.seq)
        switched = subscriber.direct is not None and subscriber.direct.switched
    finally:
        subscriber.close()
    assert ended, f"no `end` after 120 s; got {len(seqs)} messages"
    assert source.wait(30) == 0, source.stderr.read().decode() if source.stderr else ""
    assert len(seqs) == count, f"lossless delivery lost {count - len(seqs)} messages"
    assert seqs == list(range(count)), "sequence numbers must be contiguous"
    assert subscriber.health.gaps == 0 and subscriber.health.dropped == 0
    assert not wrong, f"{len(wrong)} messages carried another message's data, first {wrong[:5]}"
    shared = subscriber.shared
    assert shared is not None and shared.nonce is not None, "the publisher was seen"
    slotted = shared.from_slots
    assert slotted == 0 if shape == "16" else slotted > 0.99 * count, f"{slotted} from slots"
    assert switched == (path == "direct"), "the path the test is about"


@pytest.mark.slow
def test_live_delivery_keeps_latency_bounded_for_a_slow_subscriber(ipc_dir: Path, spawn) -> None:
    endpoint = f"ipc://{ipc_dir}/fast.sock"
    subscriber = Subscriber(endpoint, "fast/ticks", delivery=Delivery.LIVE, queue=1)
    spawn(
        "node",
        "counter",
        "--name",
        "fast",
        "--output",
        endpoint,
        "--expect",
        "ticks=1",
        "--rate",
        "2000",
        "--shape",
        "120x160x3",
    )
    ages_ms = []
    try:
        assert subscriber.receive(timeout=10.0), "the source never started"
        for _ in range(40):
            time.sleep(0.025)  # the work of a slow consumer: 40 Hz against a 2 kHz source
            for message in subscriber.receive(timeout=1.0):
                ages_ms.append((now_us() - message.pt) / 1000)
    finally:
        subscriber.close()
    health = subscriber.health
    assert len(ages_ms) >= 40, "a live subscriber still gets a message per receive"
    assert health.dropped + health.gaps > 1000, (
        f"a slow subscriber must skip data, skipped {health.dropped}+{health.gaps}"
    )
    # Live delivery hands over the newest message: 25-51 ms old here, idle or busy (one 25 ms
    # step plus the drain). Reading a 1000-message queue in order instead gives a median of
    # ~500 ms (max ~1 s), so 200 ms parts the two whatever the load.
    assert float(np.median(ages_ms)) < 200.0, (
        f"median age {np.median(ages_ms):.1f} ms: stale data is queued"
    )


def mutate(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    """One random corruption of a valid message, keeping its topic so the filter passes it."""
    frames = list(frames)
    choice = rng.integers(8)
    if choice == 0:  # flip bytes in the header
        header = bytearray(frames[1])
        for index in rng.integers(0, len(header), rng.integers(1, 4)):
            header[index] ^= 1 << int(rng.integers(8))
        frames[1] = bytes(header)
    elif choice == 1:  # truncate a buffer
        frames[2] = frames[2][: rng.integers(0, len(frames[2]))]
    elif choice == 2:  # drop the buffer frame
        frames = frames[:2]
    elif choice == 3:  # an extra frame
        frames.append(b"extra")
    elif choice == 4:  # random bytes as header
        frames[1] = rng.bytes(int(rng.integers(0, 64)))
    else:  # valid msgpack, wrong contents
        header = msgpack.unpackb(frames[1])
        key = ["v", "kind", "bufs", "seq", "t"][choice - 5 if choice < 8 else 0]
        header[key] = {"v": 7, "kind": "pickle", "bufs": [["x", "O", [1]]]}.get(key, "x")
        frames[1] = msgpack.packb(header)
    return frames


@pytest.mark.slow
def test_a_node_survives_10k_malformed_messages_and_counts_them(
    ipc_dir: Path, spawn, rng: np.random.Generator
) -> None:
    feed = f"ipc://{ipc_dir}/feed.sock"
    node_out = f"ipc://{ipc_dir}/sink.sock"
    publisher = Publisher(feed, source="fuzz", delivery=Delivery.LOSSLESS)
    stats = Subscriber(node_out, "sink/stats")
    sink = spawn(
        "node",
        "jsonl",
        "--name",
        "sink",
        "--output",
        node_out,
        "--input",
        f"in=fuzz/x@{feed}",
        "--delivery",
        "in=lossless",
    )
    try:
        assert publisher.wait_for_subscribers("fuzz/x", 1, timeout=20), "the node never subscribed"
        valid = encode(
            Message("fuzz/x", "frame", 1, {"a": np.arange(6, dtype=np.float32)}), seq=0, pt=now_us()
        )
        valid = [bytes(f) for f in valid]
        bad = good = 0
        while bad < 10_000:
            frames = mutate(valid, rng)
            try:
                decode(frames)
                good += 1
            except MessageError:
                bad += 1
            publisher.send_raw(frames)
        publisher.send(Message("fuzz/x", "frame", now_us(), {"a": np.ones(3, np.float32)}))
        good += 1
        deadline = time.monotonic() + 30
        last: dict = {}
        while time.monotonic() < deadline:
            for message in stats.receive(timeout=1.0):
                last = dict(message.meta["inputs"]["in"])
            if last and sum(last["invalid"].values()) + last["received"] >= bad + good:
                break
        assert sink.poll() is None, "the node died from its input"
        assert sum(last["invalid"].values()) == bad, (
            f"counted {last.get('invalid')} of {bad} bad messages"
        )
        assert last["received"] == good
        publisher.send(Message("fuzz/x", "end", now_us()))
        assert sink.wait(20) == 0, "the node must finish cleanly on `end`"
    finally:
        publisher.close()
        stats.close()


def test_binding_off_host_without_keys_is_refused() -> None:
    with pytest.raises(InsecureEndpointError, match="CURVE"):
        Publisher("tcp://0.0.0.0:0", source="x")
    with pytest.raises(InsecureEndpointError, match="--insecure"):
        Subscriber("tcp://192.0.2.1:5555", "a/b")


def test_subscriber_ignores_longer_topics_that_share_its_prefix(ipc_dir: Path) -> None:
    endpoint = f"ipc://{ipc_dir}/p.sock"
    context = zmq.Context()
    publisher = Publisher(endpoint, source="cam", delivery=Delivery.LOSSLESS, context=context)
    subscriber = Subscriber(endpoint, "cam/frames", delivery=Delivery.LOSSLESS, context=context)
    try:
        assert publisher.wait_for_subscribers("cam/frames", 1, timeout=5)
        publisher.send(Message("cam/frames2", "frame", 1))
        publisher.send(Message("cam/frames", "frame", 2))
        got = subscriber.receive(timeout=2.0)
        assert [m.t for m in got] == [2]
    finally:
        subscriber.close()
        publisher.close()
        context.term()
