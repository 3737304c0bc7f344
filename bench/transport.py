"""Transport benchmark: respike's zero-copy ZeroMQ messages versus pickle, between two processes.

What it measures (issue 2), for each transport (``ipc`` in a private temp folder, ``tcp`` on
127.0.0.1 with a random free port) and each payload (one 640x480 RGB uint8 frame, 921,600
bytes; one packet of 100,000 events of ``EVENT_DTYPE``, 1,600,000 bytes):

- ``full``: the sender publishes as fast as it can for ``--seconds`` with lossless delivery
  (backpressure, nothing dropped) and the receiver reports messages/s, MB/s (payload bytes,
  1 MB = 1e6 bytes) and the one-way latency p50/p99 (which at full rate is mostly queueing in
  the lossless high-water marks);
- ``30Hz``: the sender publishes 30 messages per second for ``--paced-seconds`` and the receiver
  reports the one-way latency p50/p99/max per hop, the figure the 1 ms target is about.

Latency is ``now_us()`` on the receiver, once the message is decoded, minus the publish time
``pt`` the sender stamped (both :func:`respike.stream.messages.now_us` on the same host). The
receiver touches every 4 KiB page of every payload it gets (a strided byte sum), so no codec is
measured as free.

Codecs (``--codecs``), side by side over the same socket pattern (XPUB with ``XPUB_NODROP`` and
high-water marks of 256 to SUB, as the lossless Publisher and Subscriber use):

- ``respike``: :class:`respike.stream.sockets.Publisher` and ``Subscriber`` as they are, in
  ``lossless`` mode: the wire codec with ``copy=False`` and ``np.frombuffer`` views; on
  ``ipc`` the arrays go through shared-memory slots (:mod:`respike.stream.shm`)
  and each header reaches the subscriber by its direct connection (:mod:`respike.stream.direct`);
- ``respike-shm-zmq``: the same with the headers over ZeroMQ (``RESPIKE_DIRECT=0`` at the
  publisher), as a subscriber that cannot connect directly has them (and as ``respike`` was
  before the direct path);
- ``respike-zmq``: the same with ``shared_memory=False`` at both ends: every byte over ZeroMQ
  (what ``respike`` was before issue 18, and what it still is over ``tcp``);
- ``pickle``: ``pickle.dumps`` of a dict holding the header fields and the array, sent as one
  frame with plain pyzmq ``send``/``recv`` and ``pickle.loads`` on receipt (only here, for
  comparison: product code never pickles on the wire);
- ``ros2`` (frames only, over DDS instead of ZeroMQ: transport ``dds``): what ``ros2_out``
  and ``ros2_in`` do: a ``sensor_msgs/msg/Image`` rgb8 with respike's CDR codec, written with
  Cyclone DDS on ``rt/bench/image`` in a private ``ROS_DOMAIN_ID`` under ROS's ``default`` QoS
  (reliable, keep last ``--hwm``), taken from a waitset and turned into a frame as ``ros2_in``
  does (:func:`respike.events.images.rgb_frame`). The stamp is the publish time, ``frame_id``
  the sequence number. Cyclone DDS carries it over loopback UDP (its default without iceoryx).
- ``raw`` (optional, for diagnosis): bare pyzmq ``send_multipart(copy=False)`` of
  ``[topic, msgpack header, buffer]`` and ``recv_multipart(copy=False)`` plus ``np.frombuffer``,
  without the respike codec or socket wrappers: the floor the ``respike`` path could reach.

Reference rows (optional, transport ``shm``: same-host shared memory instead of ZeroMQ, paired
with ``shm`` as ``ros2`` is with ``dds``; the payload's raw bytes, viewed in place on receipt
with ``np.frombuffer``; in ``bench/transport_references.py``):

- ``floor``: the practical floor of shared memory between two Python processes: the sender
  copies each payload (one numpy copy) into the next of 8 slots of an ``os.memfd_create``
  ring that the receiver maps once through ``/proc/<pid>/fd/<fd>``, and writes a 24-byte
  ``(slot, seq, pt)`` record to an AF_UNIX stream socket in the private folder; the receiver
  answers each with an 8-byte ack, and the sender waits for acks instead of overwriting a
  slot not yet acknowledged (at most 8 in flight, nothing dropped);
- ``iceoryx2`` (``pip install iceoryx2``, the ``bench`` extra): an iceoryx2 0.10
  publish-subscribe service of ``u8`` slices with the sequence number and publish time in a
  user header: the sender loans a slice, copies the payload in and sends it, its publisher
  retrying while the subscriber's buffer of 8 is full (no safe overflow,
  ``BackpressureStrategy.RetryUntilDelivered``: nothing dropped), and notifies an event
  service; the receiver sleeps in ``Listener.timed_wait``, then takes every waiting sample
  and views its payload in place (``Slice.as_memory_view``). The services live under a
  per-run root path and file prefix in the private folder, removed with ``/dev/shm``'s
  files afterwards;
- ``dora`` (dora-rs and dora-rs-cli, the ``bench`` extra): a two-node dataflow under
  ``dora run`` (its own daemon and node processes, so the receiver process here is idle):
  ``node.send_output`` of ``pyarrow.array`` of the payload's bytes with ``bench_seq`` (dora
  reserves ``seq``) and ``pt`` in the metadata, ``event["value"].to_numpy(zero_copy_only=True)``
  on receipt, into an input with ``queue_size: 10`` and ``queue_policy: backpressure`` (the
  sender is held while 100 wait). The nodes write their statistics to files read back here;
  the sender starts 0.5 s after the dataflow (dora 1.1 loses earlier outputs). zenoh
  segments the run leaves in ``/dev/shm`` (seen now and then) are removed once unused.

A reference codec whose package is missing reports an ``ImportError`` in its row's note.

The ``pickle`` and ``raw`` senders wait for room with a blocking send (``SNDTIMEO``); the
``respike`` path waits however ``Publisher.send`` does. Each row also reports CPU time (user +
system, all threads, idle waits included) and minor page faults per message of both processes.

The sender runs in the main process and the receiver in a child started with the ``spawn``
method; both use one ZeroMQ I/O thread and one BLAS/OpenMP thread. Sequence gaps are counted
(lossless must show 0). Run from the repository root::

    python bench/transport.py                      # everything, a table on stdout (~1.5 min)
    python bench/transport.py --json               # one JSON summary on stdout
    python bench/transport.py --transports ipc --payloads frame --codecs respike,pickle,raw \\
        --modes full --seconds 2
    python bench/transport.py --payloads frame --codecs respike,ros2 --modes 30Hz --json
    python bench/transport.py --transports ipc --payloads frame \\
        --codecs respike,floor,iceoryx2,dora --seconds 3 --paced-seconds 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import msgpack
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import transport_references as references

from respike.events.types import EVENT_DTYPE, make_events
from respike.stream.messages import Message, now_us
from respike.stream.sockets import Delivery, Publisher, Subscriber

TRANSPORTS: Final = ("ipc", "tcp")
PAYLOADS: Final = ("frame", "events")
CODECS: Final = (
    "respike",
    "respike-shm-zmq",
    "respike-zmq",
    "pickle",
    "raw",
    "ros2",
    *references.CODECS,
)
DDS_DOMAIN: Final = 231
"""ROS_DOMAIN_ID of the ``ros2`` runs (0-232), away from the default 0 of a robot's graph."""
MODES: Final = ("30Hz", "full")
HWM: Final = 256
"""Default high-water mark of every socket here: the lossless Publisher/Subscriber's."""
PAGE: Final = 4096
WARMUP_S: Final = 0.3
"""Messages received in the first this many seconds are left out of every statistic."""
RESULT_TIMEOUT_S: Final = 20.0
SEND_TIMEOUT_MS: Final = 100
"""How long one blocking send of the ``pickle`` and ``raw`` senders sleeps before it retries."""
THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


@dataclass(frozen=True)
class Case:
    """One measurement: what goes over which transport, encoded how, at which rate."""

    transport: str
    payload: str
    codec: str
    mode: str
    seconds: float
    rate: float | None
    """Messages per second, or None for as fast as backpressure allows."""
    hwm: int = HWM
    """Send and receive high-water mark (messages) of both ends."""
    sockbuf: int = -1
    """ZMQ_SNDBUF/ZMQ_RCVBUF of both ends in bytes (tcp only in libzmq 4.3); -1: OS default."""


@dataclass
class Result:
    """What one measurement gave; latencies in microseconds, throughput after the warm-up."""

    transport: str
    payload: str
    codec: str
    mode: str
    payload_bytes: int
    sent: int = 0
    received: int = 0
    measured: int = 0
    gaps: int = 0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    latency_p50_us: float = 0.0
    latency_p99_us: float = 0.0
    latency_max_us: float = 0.0
    tx_cpu_us: float = 0.0
    """Sender process CPU time (user + system, all threads) per message sent."""
    rx_cpu_us: float = 0.0
    """Receiver process CPU time (user + system, all threads) per message received."""
    tx_faults: float = 0.0
    """Sender process minor page faults per message sent."""
    rx_faults: float = 0.0
    """Receiver process minor page faults per message received."""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_payload(kind: str, seed: int = 20261127) -> np.ndarray:
    """A 640x480 RGB uint8 frame or a 100k-event packet with plausible random content."""
    rng = np.random.default_rng(seed)
    if kind == "frame":
        return rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    n = 100_000
    return make_events(
        t=np.sort(rng.integers(0, 33_000, size=n)),
        x=rng.integers(0, 640, size=n),
        y=rng.integers(0, 480, size=n),
        p=rng.integers(0, 2, size=n),
    )


def touch(array: np.ndarray) -> int:
    """Read one byte of every 4 KiB page of ``array``'s memory (and its last byte)."""
    raw = array.reshape(-1).view(np.uint8)
    if not raw.size:
        return 0
    return int(raw[::PAGE].sum(dtype=np.uint64)) + int(raw[-1])


def set_socket_buffers(context: zmq.Context, size: int) -> None:
    """Set ZMQ_SNDBUF/ZMQ_RCVBUF for sockets ``context`` creates from now on (-1: OS default)."""
    context.setsockopt(zmq.SNDBUF, size)
    context.setsockopt(zmq.RCVBUF, size)


def set_single_thread_env() -> None:
    """Ask numeric libraries for one thread, here and in every process spawned later."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


# ---------------------------------------------------------------------------------------------
# receiver (child process)


class Usage:
    """CPU time and minor page faults of this process (all its threads) since creation."""

    def __init__(self) -> None:
        self.start = resource.getrusage(resource.RUSAGE_SELF)

    def per_message(self, count: int) -> tuple[float, float]:
        """CPU microseconds and minor page faults per message over ``count`` messages."""
        end = resource.getrusage(resource.RUSAGE_SELF)
        cpu = end.ru_utime + end.ru_stime - self.start.ru_utime - self.start.ru_stime
        faults = end.ru_minflt - self.start.ru_minflt
        return cpu * 1e6 / max(count, 1), faults / max(count, 1)


class _Stats:
    """Per-message receive records, reduced to rates and percentiles at the end."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.arrival_us: list[int] = []
        self.latency_us: list[int] = []
        self.checksum = 0
        self.gaps = 0
        self.last_seq: int | None = None

    def add(self, seq: int, pt: int, arrival: int, array: np.ndarray) -> None:
        self.arrival_us.append(arrival)
        self.latency_us.append(arrival - pt)
        self.checksum += touch(array)
        if self.last_seq is not None and seq != self.last_seq + 1:
            self.gaps += abs(seq - self.last_seq - 1)
        self.last_seq = seq

    def summary(self, payload_bytes: int) -> dict[str, Any]:
        cpu_us, faults = self.usage.per_message(len(self.arrival_us))
        arrival = np.asarray(self.arrival_us, dtype=np.int64)
        latency = np.asarray(self.latency_us, dtype=np.int64)
        out: dict[str, Any] = {
            "received": int(arrival.size),
            "gaps": self.gaps,
            "rx_cpu_us": cpu_us,
            "rx_faults": faults,
        }
        if arrival.size < 3:
            return out | {"error": f"only {arrival.size} messages arrived"}
        keep = arrival >= arrival[0] + int(WARMUP_S * 1e6)
        if keep.sum() < 3:
            keep = np.ones_like(keep)
        arrival, latency = arrival[keep], latency[keep]
        span_s = (arrival[-1] - arrival[0]) / 1e6
        rate = (arrival.size - 1) / span_s if span_s > 0 else 0.0
        return out | {
            "measured": int(arrival.size),
            "msgs_per_s": rate,
            "mb_per_s": rate * payload_bytes / 1e6,
            "latency_p50_us": float(np.percentile(latency, 50)),
            "latency_p99_us": float(np.percentile(latency, 99)),
            "latency_max_us": float(latency.max()),
            "checksum": self.checksum,
        }


def _receive_respike(
    context: zmq.Context,
    endpoint: str,
    topic: str,
    hwm: int,
    conn: Connection,
    shared_memory: bool = True,
) -> _Stats:
    stats = _Stats()
    subscriber = Subscriber(
        endpoint,
        topic,
        delivery=Delivery.LOSSLESS,
        context=context,
        name="bench",
        shared_memory=shared_memory,
    )
    if hwm != HWM:
        subscriber.socket.rcvhwm = hwm  # libzmq ≥ 4.3 applies this to the connected pipe too
    conn.send("ready")
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < RESULT_TIMEOUT_S:
            messages = subscriber.receive(timeout=0.2)
            if messages:
                idle_since = time.monotonic()
            for message in messages:
                arrival = now_us()
                if message.end:
                    return stats
                stats.add(message.seq, message.pt, arrival, message.arrays["data"])
    finally:
        subscriber.close()
    return stats


def _receive_pickle(context: zmq.Context, endpoint: str, hwm: int, conn: Connection) -> _Stats:
    stats = _Stats()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.rcvhwm = hwm
    socket.connect(endpoint)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    conn.send("ready")
    try:
        while socket.poll(int(RESULT_TIMEOUT_S * 1000), zmq.POLLIN):
            message = pickle.loads(socket.recv())
            arrival = now_us()
            if message["kind"] == "end":
                return stats
            stats.add(message["seq"], message["pt"], arrival, message["data"])
    finally:
        socket.close(linger=0)
    return stats


def _receive_raw(context: zmq.Context, endpoint: str, hwm: int, conn: Connection) -> _Stats:
    stats = _Stats()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.rcvhwm = hwm
    socket.connect(endpoint)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    conn.send("ready")
    dtypes = {"u1": np.dtype(np.uint8), "events": EVENT_DTYPE}
    try:
        while socket.poll(int(RESULT_TIMEOUT_S * 1000), zmq.POLLIN):
            frames = socket.recv_multipart(copy=False)
            header = msgpack.unpackb(frames[1].buffer)
            if header["kind"] == "end":
                return stats
            array = np.frombuffer(frames[2].buffer, dtype=dtypes[header["dtype"]])
            array = array.reshape(header["shape"])
            stats.add(header["seq"], header["pt"], now_us(), array)
    finally:
        socket.close(linger=0)
    return stats


def _receive_ros2(hwm: int, conn: Connection) -> _Stats:
    from cyclonedds.core import ReadCondition, SampleState, WaitSet
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    from respike.events.images import rgb_frame
    from respike.stream.ros2 import Image, dds_topic, qos

    stats = _Stats()
    participant = DomainParticipant(DDS_DOMAIN)
    topic = Topic(participant, dds_topic("/bench/image"), Image)
    reader = DataReader(participant, topic, qos=qos("default", hwm))
    waitset = WaitSet(participant)
    waitset.attach(ReadCondition(reader, SampleState.NotRead))
    conn.send("ready")
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < RESULT_TIMEOUT_S:
        waitset.wait(duration(milliseconds=200))
        for image in reader.take(N=64):
            arrival = now_us()
            if not image.sample_info.valid_data:
                continue
            idle_since = time.monotonic()
            if image.header.frame_id == "end":
                return stats
            frame = rgb_frame(image.data, image.width, image.height, image.encoding, image.step)
            stats.add(int(image.header.frame_id), image.header.stamp.to_us(), arrival, frame)
    return stats


def receiver_main(conn: Connection) -> None:
    """Child process: for each command received on ``conn``, subscribe and report statistics."""
    context = zmq.Context(io_threads=1)
    try:
        while True:
            command = conn.recv()
            if command is None:
                return
            codec, endpoint, topic = command["codec"], command["endpoint"], command["topic"]
            hwm = command["hwm"]
            set_socket_buffers(context, command["sockbuf"])
            if codec in references.RECEIVERS:
                try:
                    stats = references.RECEIVERS[codec](command, conn, _Stats())
                except Exception as error:  # reported in the row; the next case still runs
                    conn.send({"received": 0, "error": f"receiver {type(error).__name__}: {error}"})
                    continue
            elif codec in ("respike", "respike-shm-zmq", "respike-zmq"):
                shared = codec != "respike-zmq"
                stats = _receive_respike(context, endpoint, topic, hwm, conn, shared)
            elif codec == "pickle":
                stats = _receive_pickle(context, endpoint, hwm, conn)
            elif codec == "ros2":
                stats = _receive_ros2(hwm, conn)
            else:
                stats = _receive_raw(context, endpoint, hwm, conn)
            conn.send(stats.summary(command["payload_bytes"]))
    finally:
        context.term()


# ---------------------------------------------------------------------------------------------
# sender (main process)


class _Pacer:
    """Yields send slots: at ``rate`` per second on an absolute schedule, or back to back."""

    def __init__(self, seconds: float, rate: float | None) -> None:
        self.rate = rate
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.count = 0

    def next(self) -> bool:
        """Wait for the next slot; False once the measurement time is over."""
        if self.rate is not None:
            slot = self.start + self.count / self.rate
            delay = slot - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self.count += 1
        return time.perf_counter() < self.deadline


def _send_nodrop(socket: zmq.Socket, frames: list[Any], copy: bool) -> None:
    """Send under ``XPUB_NODROP``: wait (asleep) for room instead of dropping.

    A blocking send with ``SNDTIMEO`` sleeps until the subscriber drains; ``poll(POLLOUT)``
    would not, since libzmq always reports (X)PUB sockets writable, so a NOBLOCK-and-poll loop
    spins a core while the queue is full.
    """
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while True:
        try:
            socket.send_multipart(frames, copy=copy)
            return
        except zmq.Again:
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver stopped reading") from None


def _xpub(context: zmq.Context, endpoint: str, hwm: int) -> tuple[zmq.Socket, str]:
    socket = context.socket(zmq.XPUB)
    socket.linger = 0
    socket.sndhwm = hwm
    socket.sndtimeo = SEND_TIMEOUT_MS
    socket.setsockopt(zmq.XPUB_NODROP, 1)
    socket.bind(endpoint)
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)


def _wait_subscription(socket: zmq.Socket, timeout: float) -> None:
    if not socket.poll(int(timeout * 1000), zmq.POLLIN):
        raise TimeoutError("the receiver did not subscribe")
    socket.recv()


def _send_respike(
    case: Case, context: zmq.Context, bind: str, array: np.ndarray, conn: Connection
) -> tuple[int, dict[str, Any]]:
    topic = f"bench/{case.payload}"
    kind = "frame" if case.payload == "frame" else "events"
    direct = os.environ.get("RESPIKE_DIRECT")
    os.environ["RESPIKE_DIRECT"] = "0" if case.codec == "respike-shm-zmq" else "1"
    try:
        publisher = Publisher(
            bind,
            source="bench",
            delivery=Delivery.LOSSLESS,
            context=context,
            hwm=case.hwm,
            shared_memory=case.codec != "respike-zmq",
        )
    finally:
        os.environ.pop("RESPIKE_DIRECT")
        if direct is not None:
            os.environ["RESPIKE_DIRECT"] = direct
    try:
        _start_receiver(conn, case, publisher.endpoint, topic, array)
        if not publisher.wait_for_subscribers(topic, 1, timeout=10.0):
            raise TimeoutError("the receiver did not subscribe")
        pacer = _Pacer(case.seconds, case.rate)
        while pacer.next():
            publisher.send(Message(topic=topic, kind=kind, t=now_us(), arrays={"data": array}))
        sent = publisher.sent[topic]
        publisher.send(Message(topic=topic, kind="end", t=now_us()))
        return sent, _await_summary(conn)
    finally:
        publisher.close()


def _send_pickle(
    case: Case, context: zmq.Context, bind: str, array: np.ndarray, conn: Connection
) -> tuple[int, dict[str, Any]]:
    topic = f"bench/{case.payload}"
    kind = "frame" if case.payload == "frame" else "events"
    socket, endpoint = _xpub(context, bind, case.hwm)
    try:
        _start_receiver(conn, case, endpoint, topic, array)
        _wait_subscription(socket, 10.0)
        pacer = _Pacer(case.seconds, case.rate)
        sent = 0
        while pacer.next():
            body = {
                "topic": topic,
                "kind": kind,
                "seq": sent,
                "t": now_us(),
                "pt": now_us(),
                "src": "bench",
                "data": array,
            }
            _send_nodrop(socket, [pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)], True)
            sent += 1
        end = {"topic": topic, "kind": "end", "seq": sent, "t": now_us(), "pt": now_us()}
        _send_nodrop(socket, [pickle.dumps(end)], True)
        return sent, _await_summary(conn)
    finally:
        socket.close(linger=0)


def _send_raw(
    case: Case, context: zmq.Context, bind: str, array: np.ndarray, conn: Connection
) -> tuple[int, dict[str, Any]]:
    topic = f"bench/{case.payload}".encode()
    dtype = "u1" if case.payload == "frame" else "events"
    socket, endpoint = _xpub(context, bind, case.hwm)
    try:
        _start_receiver(conn, case, endpoint, topic.decode(), array)
        _wait_subscription(socket, 10.0)
        pacer = _Pacer(case.seconds, case.rate)
        buffer = array.reshape(-1).view(np.uint8)
        sent = 0
        while pacer.next():
            header = {
                "kind": "data",
                "seq": sent,
                "pt": now_us(),
                "dtype": dtype,
                "shape": list(array.shape),
            }
            _send_nodrop(socket, [topic, msgpack.packb(header), buffer], False)
            sent += 1
        end = msgpack.packb({"kind": "end", "seq": sent, "pt": now_us()})
        _send_nodrop(socket, [topic, end], False)
        return sent, _await_summary(conn)
    finally:
        socket.close(linger=0)


def _send_ros2(
    case: Case, context: zmq.Context, bind: str, array: np.ndarray, conn: Connection
) -> tuple[int, dict[str, Any]]:
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from respike.nodes.ros2 import MATCH_SETTLE_S
    from respike.stream.ros2 import Header, Image, Time, dds_topic, qos

    participant = DomainParticipant(DDS_DOMAIN)
    topic = Topic(participant, dds_topic("/bench/image"), Image)
    writer = DataWriter(participant, topic, qos=qos("default", case.hwm))
    _start_receiver(conn, case, "rt/bench/image", "bench/image", array)
    deadline = time.monotonic() + 10.0
    while writer.get_publication_matched_status().current_count == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the DDS reader did not match")
        time.sleep(0.01)
    time.sleep(MATCH_SETTLE_S)
    height, width = array.shape[:2]
    pacer = _Pacer(case.seconds, case.rate)
    sent = 0
    while pacer.next():
        header = Header(Time.from_us(now_us()), str(sent))
        writer.write(Image(header, height, width, "rgb8", 0, width * 3, array))
        sent += 1
    writer.write(Image(Header(Time.from_us(now_us()), "end"), 0, 0, "rgb8", 0, 0, b""))
    return sent, _await_summary(conn)


def _start_receiver(
    conn: Connection, case: Case, endpoint: str, topic: str, array: np.ndarray, **extra: Any
) -> None:
    """Command the receiver process (``extra``: codec-specific fields) and wait until ready."""
    conn.send(
        {
            "codec": case.codec,
            "endpoint": endpoint,
            "topic": topic,
            "payload_bytes": array.nbytes,
            "hwm": case.hwm,
            "sockbuf": case.sockbuf,
        }
        | extra
    )
    if not conn.poll(RESULT_TIMEOUT_S):
        raise TimeoutError("the receiver process did not answer")
    reply = conn.recv()
    if isinstance(reply, dict) and reply.get("error"):
        raise RuntimeError(reply["error"])
    if reply != "ready":
        raise TimeoutError("the receiver process did not answer")


def _await_summary(conn: Connection) -> dict[str, Any]:
    """The receiver's report; the sending socket stays open until then (it has linger 0)."""
    if not conn.poll(RESULT_TIMEOUT_S + 5):
        raise TimeoutError("the receiver did not report")
    summary: dict[str, Any] = conn.recv()
    return summary


def _send_reference(
    case: Case, context: zmq.Context, bind: str, array: np.ndarray, conn: Connection
) -> tuple[int, dict[str, Any]]:
    """A reference codec's sender (transport_references), with ``bind`` its path prefix."""
    harness = references.Harness(
        start_receiver=lambda endpoint, topic, **extra: _start_receiver(
            conn, case, endpoint, topic, array, **extra
        ),
        await_summary=lambda: _await_summary(conn),
        pacer=lambda: _Pacer(case.seconds, case.rate),
        workdir=bind,
    )
    try:
        return references.SENDERS[case.codec](case, array, harness)
    except (TimeoutError, EOFError, ImportError, OSError, RuntimeError):
        raise
    except Exception as error:  # a third-party library's own error: the row's note says it
        raise RuntimeError(f"{type(error).__name__}: {error}") from error


SENDERS: Final = {
    "respike": _send_respike,
    "respike-shm-zmq": _send_respike,
    "respike-zmq": _send_respike,
    "pickle": _send_pickle,
    "raw": _send_raw,
    "ros2": _send_ros2,
    **dict.fromkeys(references.CODECS, _send_reference),
}


def run_case(
    case: Case, context: zmq.Context, conn: Connection, ipc_dir: str, index: int
) -> Result:
    """Run one measurement against the receiver process behind ``conn``."""
    array = make_payload(case.payload)
    result = Result(case.transport, case.payload, case.codec, case.mode, array.nbytes)
    bind = {
        "ipc": f"ipc://{ipc_dir}/{index}.sock",
        references.TRANSPORT: f"{ipc_dir}/{index}",  # a path prefix for the case's own files
    }.get(case.transport, "tcp://127.0.0.1:*")
    usage = Usage()
    try:
        result.sent, summary = SENDERS[case.codec](case, context, bind, array, conn)
    except (TimeoutError, EOFError, zmq.ZMQError, ImportError, OSError, RuntimeError) as error:
        result.error = f"{type(error).__name__}: {error}"
        return result
    result.tx_cpu_us, result.tx_faults = usage.per_message(result.sent)
    result.error = summary.pop("error", "")
    result.extra["checksum"] = summary.pop("checksum", 0)
    result.extra |= summary.pop("extra", {})
    for key, value in summary.items():
        setattr(result, key, value)
    if result.received != result.sent:
        result.error = result.error or f"sent {result.sent}, received {result.received}"
    return result


def plan(args: argparse.Namespace) -> list[Case]:
    """The measurements asked for, in the order they run."""
    cases = []
    transports = list(args.transports)
    if "ros2" in args.codecs:
        transports.append("dds")
    if set(args.codecs) & set(references.CODECS):
        transports.append(references.TRANSPORT)
    for transport in transports:
        for payload in args.payloads:
            for mode in args.modes:
                for codec in args.codecs:
                    if (codec == "ros2") != (transport == "dds") or (
                        codec == "ros2" and payload != "frame"
                    ):
                        continue  # ros2 goes over DDS only, with images
                    if (codec in references.CODECS) != (transport == references.TRANSPORT):
                        continue  # the references go over shared memory only
                    seconds, rate = (
                        (args.seconds, None) if mode == "full" else (args.paced_seconds, args.rate)
                    )
                    cases.append(
                        Case(transport, payload, codec, mode, seconds, rate, args.hwm, args.sockbuf)
                    )
    return cases


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions, for the record."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "cyclonedds": _version("cyclonedds"),
        "iceoryx2": _version("iceoryx2"),
        "dora-rs": _version("dora-rs"),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def format_table(results: list[Result]) -> str:
    """A markdown table of the results."""
    lines = [
        "| transport | payload | codec | mode | msgs/s | MB/s | p50 µs | p99 µs | max µs "
        "| n | gaps | tx CPU µs/msg | rx CPU µs/msg | tx faults/msg | rx faults/msg | note |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.transport} | {r.payload} | {r.codec} | {r.mode} | {r.msgs_per_s:,.0f} "
            f"| {r.mb_per_s:,.0f} | {r.latency_p50_us:,.0f} | {r.latency_p99_us:,.0f} "
            f"| {r.latency_max_us:,.0f} | {r.measured} | {r.gaps} | {r.tx_cpu_us:,.0f} "
            f"| {r.rx_cpu_us:,.0f} | {r.tx_faults:,.0f} | {r.rx_faults:,.0f} | {r.error} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; lists are comma-separated."""

    def choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
        def parse(text: str) -> list[str]:
            items = [item.strip() for item in text.split(",") if item.strip()]
            bad = [item for item in items if item not in allowed]
            if bad or not items:
                raise argparse.ArgumentTypeError(f"expected a list from {','.join(allowed)}")
            return items

        return parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per full-rate run")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0, help="seconds per paced (30 Hz) run"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="paced rate in messages/s")
    parser.add_argument("--transports", type=choices(TRANSPORTS), default=list(TRANSPORTS))
    parser.add_argument("--payloads", type=choices(PAYLOADS), default=list(PAYLOADS))
    parser.add_argument("--codecs", type=choices(CODECS), default=["respike", "pickle"])
    parser.add_argument("--modes", type=choices(MODES), default=list(MODES))
    parser.add_argument(
        "--hwm", type=int, default=HWM, help="send/receive high-water mark of both ends (messages)"
    )
    parser.add_argument(
        "--sockbuf",
        type=int,
        default=-1,
        help="ZMQ_SNDBUF/ZMQ_RCVBUF of both ends in bytes, -1 for the OS default (libzmq 4.3 "
        "applies it to tcp only; ipc keeps net.core.wmem_default)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 30 or not 0 < args.paced_seconds <= 30:
        parser.error("--seconds and --paced-seconds must be in (0, 30]")
    if "30Hz" in args.modes and not 0 < args.rate <= 1000:
        parser.error("--rate must be in (0, 1000]")
    if args.hwm < 1 or args.sockbuf < -1 or args.sockbuf == 0:
        parser.error("--hwm must be ≥ 1 and --sockbuf positive or -1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (or JSON with ``--json``); non-zero if a run failed."""
    args = parse_args(argv)
    set_single_thread_env()
    cases = plan(args)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    ipc_dir = tempfile.mkdtemp(prefix="rs-bench-", dir="/tmp")
    os.chmod(ipc_dir, 0o700)
    spawn = mp.get_context("spawn")
    parent, child = spawn.Pipe()
    receiver = spawn.Process(target=receiver_main, args=(child,), name="bench-receiver")
    receiver.start()
    context = zmq.Context(io_threads=1)
    set_socket_buffers(context, args.sockbuf)
    results: list[Result] = []
    try:
        for index, case in enumerate(cases):
            result = run_case(case, context, parent, ipc_dir, index)
            results.append(result)
            if not args.json:
                print(
                    f"{case.transport:3} {case.payload:6} {case.codec:8} {case.mode:4} "
                    f"{result.msgs_per_s:9,.0f} msg/s {result.mb_per_s:8,.0f} MB/s "
                    f"p50 {result.latency_p50_us:9,.0f} µs p99 {result.latency_p99_us:9,.0f} µs "
                    f"{result.error}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        parent.send(None)
        receiver.join(10)
        if receiver.is_alive():
            receiver.terminate()
        context.term()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    if args.json:
        summary = {
            "started": started,
            "machine": machine(),
            "settings": {
                "seconds": args.seconds,
                "paced_seconds": args.paced_seconds,
                "rate": args.rate,
                "warmup_s": WARMUP_S,
                "hwm": args.hwm,
                "sockbuf": args.sockbuf,
            },
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(results))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
