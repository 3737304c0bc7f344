"""Reference transports for bench/transport.py: what the same payload costs without ZeroMQ.

Three shared-memory paths between two Python processes on one host, each as a sender (run in
the benchmark's main process through a :class:`Harness`) and a receiver (run in its spawned
receiver process, or, for dora, in nodes that ``dora run`` starts):

- ``floor``: a ``memfd`` ring of :data:`SLOTS` slots that the receiver maps through
  ``/proc/<pid>/fd/<fd>``; one copy in, a 24-byte record ``(slot, seq, pt)`` and an 8-byte ack
  per message over an AF_UNIX stream socket; the sender never has more than :data:`SLOTS`
  messages unacknowledged;
- ``iceoryx2``: an iceoryx2 publish-subscribe service of ``u8`` slices (sequence number and
  publish time in a user header) with a blocking publisher, plus an event service whose
  listener the receiver sleeps on;
- ``dora``: a two-node dora-rs dataflow, ``send_output`` of a ``pyarrow`` ``uint8`` array and
  ``to_numpy(zero_copy_only=True)`` on receipt, under ``queue_policy: backpressure``.

All three carry the payload's bytes (an events packet as its raw ``EVENT_DTYPE`` bytes) and
view them in place on receipt. Run as a script, this module is one of the two dora nodes::

    python bench/transport_references.py dora-sender|dora-receiver --payload frame --folder DIR
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import mmap
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from respike.events.types import EVENT_DTYPE
from respike.stream.messages import now_us

CODECS: Final = ("floor", "iceoryx2", "dora")
TRANSPORT: Final = "shm"
"""The transport name of every reference row."""
SLOTS: Final = 8
"""Messages in flight at most: the floor's ring slots, iceoryx2's subscriber buffer."""
IDLE_TIMEOUT_S: Final = 20.0
"""A receiver that has heard nothing for this long gives up (transport.RESULT_TIMEOUT_S)."""
CONNECT_TIMEOUT_S: Final = 10.0
DORA_QUEUE: Final = 10
"""``queue_size`` of the dora receiver's input; ``backpressure`` holds the sender at 10x this."""
DORA_GRACE_S: Final = 0.5
"""The dora sender waits this long before its first output and after its last one: dora 1.1
loses outputs sent while receivers connect or still in flight at exit (see
``respike.nodes.dora.SOURCE_GRACE_S`` and ``SOURCE_LINGER_S``)."""
ZENOH_SEGMENTS: Final = "/dev/shm/*.zenoh"
"""Shared-memory segments of zenoh, dora 1.1's transport between its daemon and nodes."""
DORA_RUN_TIMEOUT_S: Final = 90.0
"""Seconds ``dora run`` may take on top of the measurement (it builds nothing, but starts a
daemon and two Python processes)."""

_RECORD: Final = struct.Struct("<qqq")
"""Per message on the floor's socket: slot, sequence number (-1: end), publish time (µs)."""
_ACK: Final = struct.Struct("<q")
_HELLO: Final = struct.Struct("<qqqq")
"""Once on connect: the sender's pid, the memfd's number there, slot size, slot count."""


class Stats(Protocol):
    """What a receiver hands each message to (transport._Stats)."""

    def add(self, seq: int, pt: int, arrival: int, array: np.ndarray) -> None: ...


class Pacer(Protocol):
    """transport._Pacer: ``next()`` waits for the next send slot, False once time is up."""

    def next(self) -> bool: ...


class CaseLike(Protocol):
    """The fields of transport.Case a reference sender reads."""

    @property
    def payload(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def rate(self) -> float | None: ...


@dataclass(frozen=True)
class Harness:
    """What transport.py lends a reference sender for one case."""

    start_receiver: Callable[..., None]
    """``(endpoint, topic, **extra)``: command the receiver process and wait until ready."""
    await_summary: Callable[[], dict[str, Any]]
    """The receiver's statistics (``transport._Stats.summary``) once it saw the end."""
    pacer: Callable[[], Pacer]
    """A fresh pacer for this case's duration and rate."""
    workdir: str
    """A path prefix for this case's files, inside the benchmark's private (0700) folder."""


def payload_dtype(payload: str) -> np.dtype:
    """The element type a receiver views the bytes as."""
    return np.dtype(np.uint8) if payload == "frame" else EVENT_DTYPE


def view(buffer: Any, payload: str, shape: list[int], nbytes: int, offset: int = 0) -> np.ndarray:
    """``nbytes`` of ``buffer`` at ``offset`` as the payload's array, without copying."""
    dtype = payload_dtype(payload)
    return np.frombuffer(buffer, dtype, nbytes // dtype.itemsize, offset).reshape(shape)


# ---------------------------------------------------------------------------------------------
# floor: memfd ring + AF_UNIX records and acks


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from a stream socket; EOFError if the peer closed first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the peer closed the socket")
        data += chunk
    return bytes(data)


def send_floor(case: CaseLike, array: np.ndarray, harness: Harness) -> tuple[int, dict[str, Any]]:
    """Sender of ``floor``: copy into the next free ring slot, send its record, keep at most
    :data:`SLOTS` unacknowledged."""
    raw = array.reshape(-1).view(np.uint8)
    slot_size = -(-raw.size // mmap.PAGESIZE) * mmap.PAGESIZE
    path = f"{harness.workdir}.floor.sock"
    fd = os.memfd_create("rs-bench-floor", os.MFD_CLOEXEC)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.ftruncate(fd, slot_size * SLOTS)
        with mmap.mmap(fd, slot_size * SLOTS) as region:
            ring = np.frombuffer(region, np.uint8).reshape(SLOTS, slot_size)
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(CONNECT_TIMEOUT_S)
            harness.start_receiver(
                path, "floor", payload=case.payload, shape=list(array.shape), nbytes=raw.size
            )
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(IDLE_TIMEOUT_S)
                peer.sendall(_HELLO.pack(os.getpid(), fd, slot_size, SLOTS))
                pacer = harness.pacer()
                sent = acked = 0
                while pacer.next():
                    pt = now_us()
                    while sent - acked >= SLOTS:
                        acked = _ACK.unpack(_recv_exact(peer, _ACK.size))[0] + 1
                    slot = sent % SLOTS
                    ring[slot, : raw.size] = raw
                    peer.sendall(_RECORD.pack(slot, sent, pt))
                    sent += 1
                peer.sendall(_RECORD.pack(0, -1, now_us()))
                summary = harness.await_summary()
            del ring
        return sent, summary | {"extra": {"slots": SLOTS, "slot_bytes": slot_size}}
    finally:
        listener.close()
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def receive_floor(command: dict[str, Any], conn: Connection, stats: Stats) -> Stats:
    """Receiver of ``floor``: map the sender's memfd, view each slot in place, ack it."""
    payload, shape, nbytes = command["payload"], command["shape"], command["nbytes"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        conn.send("ready")
        sock.connect(command["endpoint"])
        sock.settimeout(IDLE_TIMEOUT_S)
        pid, fd, slot_size, slots = _HELLO.unpack(_recv_exact(sock, _HELLO.size))
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY)
        try:
            region = mmap.mmap(handle, slot_size * slots, prot=mmap.PROT_READ)
        finally:
            os.close(handle)
        with region:
            while True:
                slot, seq, pt = _RECORD.unpack(_recv_exact(sock, _RECORD.size))
                arrival = now_us()
                if seq < 0:
                    break
                stats.add(seq, pt, arrival, view(region, payload, shape, nbytes, slot * slot_size))
                sock.sendall(_ACK.pack(seq))
    return stats


# ---------------------------------------------------------------------------------------------
# iceoryx2: publish-subscribe of u8 slices with a user header, woken by an event service


class _Header(ctypes.Structure):
    """The user header of every iceoryx2 sample: sequence number (-1: end), publish time."""

    _fields_ = [("seq", ctypes.c_int64), ("pt", ctypes.c_int64)]


def _iox_node(root: str, prefix: str) -> tuple[Any, Any]:
    """The iceoryx2 module and a node whose files all live under ``root`` with ``prefix``,
    so that a run never meets another's services and its leftovers can be found."""
    import iceoryx2 as iox

    iox.set_log_level(iox.LogLevel.Error)
    config = iox.config.default()
    settings = config.global_cfg  # a handle into ``config``: setting its fields sticks
    settings.root_path = iox.Path.new(root)
    settings.prefix = iox.FileName.new(prefix)
    return iox, iox.NodeBuilder.new().config(config).create(iox.ServiceType.Ipc)


def _iox_services(iox: Any, node: Any, name: str) -> tuple[Any, Any]:
    """The publish-subscribe service (lossless: no safe overflow) and its event service."""
    data = (
        node.service_builder(iox.ServiceName.new(name))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .user_header(_Header)
        .enable_safe_overflow(False)
        .subscriber_max_buffer_size(SLOTS)
        .history_size(0)
        .open_or_create()
    )
    event = node.service_builder(iox.ServiceName.new(f"{name}/sent")).event().open_or_create()
    return data, event


def _iox_leftovers(root: str, prefix: str) -> list[str]:
    """Files of one run's iceoryx2 config still there: its shared memory and its root."""
    return sorted(glob.glob(f"/dev/shm/{glob.escape(prefix)}*")) + (
        [root] if os.path.exists(root) else []
    )


def send_iceoryx2(
    case: CaseLike, array: np.ndarray, harness: Harness
) -> tuple[int, dict[str, Any]]:
    """Sender of ``iceoryx2``: loan a slice, copy the payload in, send, notify; the publisher
    retries (``BackpressureStrategy.RetryUntilDelivered``) while the subscriber's buffer is
    full, so nothing is dropped."""
    import iceoryx2  # noqa: F401  (ImportError before anything starts when it is missing)

    root = f"{harness.workdir}.iox2/"
    prefix = f"rsb{os.getpid()}x{Path(harness.workdir).name}_"
    name = f"respike/bench/{os.getpid()}/{Path(harness.workdir).name}"
    try:
        sent, summary = _iox_send(case, array, root, prefix, name, harness)
    finally:
        for path in _iox_leftovers(root, prefix):  # both ends are closed by now
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    return sent, summary | {"extra": {"subscriber_buffer": SLOTS, "zero_copy_view": True}}


def _iox_send(
    case: CaseLike, array: np.ndarray, root: str, prefix: str, name: str, harness: Harness
) -> tuple[int, dict[str, Any]]:
    raw = array.reshape(-1).view(np.uint8)
    iox, node = _iox_node(root, prefix)
    data, event = _iox_services(iox, node, name)
    publisher = (
        data.publisher_builder()
        .initial_max_slice_len(raw.size)
        .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    notifier = event.notifier_builder().create()
    try:
        harness.start_receiver(
            name,
            "iceoryx2",
            root=root,
            prefix=prefix,
            payload=case.payload,
            shape=list(array.shape),
            nbytes=raw.size,
        )
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while data.dynamic_config.number_of_subscribers < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the iceoryx2 subscriber did not appear")
            time.sleep(0.01)
        publisher.update_connections()
        pacer = harness.pacer()
        sent = 0
        while pacer.next():
            pt = now_us()
            sample = publisher.loan_slice_uninit(raw.size)
            header = sample.user_header().contents
            header.seq, header.pt = sent, pt
            target = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
            target[:] = raw
            del target
            sample.assume_init().send()
            notifier.notify()
            sent += 1
        sample = publisher.loan_slice_uninit(1)
        header = sample.user_header().contents
        header.seq, header.pt = -1, now_us()
        sample.assume_init().send()
        notifier.notify()
        return sent, harness.await_summary()
    finally:
        notifier.delete()
        publisher.delete()
        del data, event, node


def receive_iceoryx2(command: dict[str, Any], conn: Connection, stats: Stats) -> Stats:
    """Receiver of ``iceoryx2``: sleep on the listener, then take every sample waiting and
    view its payload in place (``Slice.as_memory_view`` + ``np.frombuffer``: no copy)."""
    payload, shape, nbytes = command["payload"], command["shape"], command["nbytes"]
    iox, node = _iox_node(command["root"], command["prefix"])
    data, event = _iox_services(iox, node, command["endpoint"])
    subscriber = data.subscriber_builder().buffer_size(SLOTS).create()
    listener = event.listener_builder().create()
    try:
        conn.send("ready")
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < IDLE_TIMEOUT_S:
            listener.timed_wait(iox.Duration.from_millis(200))
            while (sample := subscriber.receive()) is not None:
                arrival = now_us()
                idle_since = time.monotonic()
                header = sample.user_header().contents
                seq, pt = header.seq, header.pt
                if seq < 0:
                    sample.delete()
                    return stats
                buffer = sample.payload().as_memory_view()
                stats.add(seq, pt, arrival, view(buffer, payload, shape, nbytes))
                del buffer
                sample.delete()
        return stats
    finally:
        listener.delete()
        subscriber.delete()
        del data, event, node


# ---------------------------------------------------------------------------------------------
# dora: a two-node dataflow under `dora run`


def _remove_orphans(paths: set[str]) -> None:
    """Remove those of ``paths`` (files that appeared during our run) that no process has
    open or mapped: dora's zenoh sometimes leaves a shared-memory segment behind, and another
    dataflow on this host may have made one meanwhile that is still in use."""
    if not paths:
        return
    used: set[str] = set()
    for proc in glob.glob("/proc/[0-9]*"):
        with contextlib.suppress(OSError):
            used.update(os.readlink(link) for link in glob.glob(f"{proc}/fd/*"))
        with contextlib.suppress(OSError), open(f"{proc}/maps") as maps:
            used.update(line.split(maxsplit=5)[-1].strip() for line in maps if "/" in line)
    for path in paths - used:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _dora_cli() -> str:
    """The ``dora`` executable beside this Python, or on PATH; ImportError if neither."""
    import dora  # noqa: F401  (the node API: ImportError when dora-rs is missing)

    beside = Path(sys.executable).with_name("dora")
    found = str(beside) if beside.exists() else shutil.which("dora")
    if found is None:
        raise ImportError("the dora CLI (dora-rs-cli) is not installed")
    return found


def dataflow(folder: Path, payload: str, seconds: float, rate: float | None) -> str:
    """The YAML of the two-node benchmark dataflow writing its reports into ``folder``."""
    script = Path(__file__).resolve()
    common = f"{script} --payload {payload} --folder {folder}"
    pacing = f" --seconds {seconds}" + (f" --rate {rate}" if rate is not None else "")
    return (
        "nodes:\n"
        f"  - id: sender\n    path: {sys.executable}\n"
        f'    args: "{common} dora-sender{pacing}"\n'
        "    outputs: [frame]\n"
        f"  - id: receiver\n    path: {sys.executable}\n"
        f'    args: "{common} dora-receiver"\n'
        "    inputs:\n      frame:\n        source: sender/frame\n"
        f"        queue_size: {DORA_QUEUE}\n        queue_policy: backpressure\n"
    )


def send_dora(case: CaseLike, array: np.ndarray, harness: Harness) -> tuple[int, dict[str, Any]]:
    """Run the dataflow with ``dora run`` and collect both nodes' reports; the receiver
    process of transport.py is not used (dora starts its own)."""
    cli = _dora_cli()
    folder = Path(f"{harness.workdir}.dora")
    folder.mkdir()
    flow = folder / "dataflow.yml"
    flow.write_text(dataflow(folder, case.payload, case.seconds, case.rate))
    segments = set(glob.glob(ZENOH_SEGMENTS))
    try:
        done = subprocess.run(
            [cli, "run", str(flow)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=case.seconds + DORA_RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(
            f"`dora run` took over {case.seconds + DORA_RUN_TIMEOUT_S:.0f} s"
        ) from None
    finally:
        _remove_orphans(set(glob.glob(ZENOH_SEGMENTS)) - segments)
    reports = {}
    for role in ("sender", "receiver"):
        path = folder / f"{role}.json"
        if not path.exists():
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
            raise RuntimeError(f"`dora run` exited {done.returncode}, no {role} report: {tail}")
        reports[role] = json.loads(path.read_text())
    sender, summary = reports["sender"], reports["receiver"]
    if done.returncode != 0 and "error" not in summary:
        summary["error"] = f"`dora run` exited {done.returncode}"
    summary |= {"tx_cpu_us": sender["tx_cpu_us"], "tx_faults": sender["tx_faults"]}
    summary["extra"] = {"queue_size": DORA_QUEUE, "queue_policy": "backpressure"}
    return int(sender["sent"]), summary


def _dora_sender(args: argparse.Namespace) -> None:
    """The dora sender node: the payload as a flat ``uint8`` Arrow array at the bench's pace,
    ``bench_seq`` and ``pt`` in the metadata (dora reserves ``seq``), then an end marker."""
    import pyarrow as pa
    from dora import Node
    from transport import Usage, _Pacer, make_payload

    raw = make_payload(args.payload).reshape(-1).view(np.uint8)
    node = Node()
    time.sleep(DORA_GRACE_S)
    usage = Usage()
    pacer = _Pacer(args.seconds, args.rate)
    sent = 0
    while pacer.next():
        pt = now_us()
        node.send_output("frame", pa.array(raw), {"bench_seq": sent, "pt": pt})
        sent += 1
    node.send_output("frame", pa.array(np.zeros(0, np.uint8)), {"bench_seq": -1, "pt": now_us()})
    cpu_us, faults = usage.per_message(sent)
    report = {"sent": sent, "tx_cpu_us": cpu_us, "tx_faults": faults}
    (args.folder / "sender.json").write_text(json.dumps(report))
    time.sleep(DORA_GRACE_S)


def _dora_receiver(args: argparse.Namespace) -> None:
    """The dora receiver node: each input viewed as numpy without a copy, the statistics of
    ``transport._Stats.summary`` written to ``receiver.json`` at the end marker."""
    from dora import Node
    from transport import _Stats, make_payload

    like = make_payload(args.payload)
    node = Node()
    stats = _Stats()
    for event in _dora_events(node):
        arrival = now_us()
        metadata = event["metadata"] or {}
        seq = int(metadata["bench_seq"])
        if seq < 0:
            break
        values = event["value"].to_numpy(zero_copy_only=True)
        array = values.view(like.dtype).reshape(like.shape)
        stats.add(seq, int(metadata["pt"]), arrival, array)
    summary = stats.summary(like.nbytes)
    (args.folder / "receiver.json").write_text(json.dumps(summary))


def _dora_events(node: Any) -> Iterator[dict[str, Any]]:
    """The node's ``INPUT`` events until its stream ends or stays idle too long."""
    while (event := node.next(timeout=IDLE_TIMEOUT_S)) is not None:
        if event["type"] == "INPUT":
            yield event


SENDERS: Final[dict[str, Callable[[CaseLike, np.ndarray, Harness], tuple[int, dict[str, Any]]]]] = {
    "floor": send_floor,
    "iceoryx2": send_iceoryx2,
    "dora": send_dora,
}
RECEIVERS: Final[dict[str, Callable[[dict[str, Any], Connection, Stats], Stats]]] = {
    "floor": receive_floor,
    "iceoryx2": receive_iceoryx2,
}
"""Receivers run in transport.py's receiver process (dora's run in its own nodes)."""


def main(argv: list[str] | None = None) -> int:
    """Run one of the dora nodes (``dora run`` starts them with these arguments)."""
    parser = argparse.ArgumentParser(description="a node of the dora reference dataflow")
    parser.add_argument("role", choices=("dora-sender", "dora-receiver"))
    parser.add_argument("--payload", choices=("frame", "events"), required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args(argv)
    (_dora_sender if args.role == "dora-sender" else _dora_receiver)(args)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import transport` in the nodes
    sys.exit(main())
