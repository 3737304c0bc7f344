"""The node runtime: wires a node to sockets, runs its loop, publishes stats, stops cleanly.

One loop per process: wait on the input sockets (or until a source is due), hand each valid
message to the node, then call its :meth:`~respike.nodes.base.Node.flush` once nothing more is
waiting (so a node that fell behind can batch), call a source's
:meth:`~respike.nodes.base.Node.produce` on its schedule, publish ``<name>/stats`` every second
and whenever someone new subscribes to it. SIGINT/SIGTERM set a stop flag that the loop (and a
send blocked by backpressure) checks; the node's :meth:`finish` always runs and every socket is
closed. An exception while handling one input message is counted and logged once per type:
input never kills a node.

A source first waits until the nodes downstream of it have started (``Wiring.ready``), so a
finite file is not half played while a model is still loading. ``end`` on every data input
(stats inputs aside) finishes a node, which forwards ``end`` on its own outputs until its
consumers have left, so a finite source drains the whole pipeline and every process exits 0.
The exit code tells the launcher what happened (see the ``EXIT_`` constants).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from respike.nodes.base import Node, SourceFailed, StopPipeline
from respike.stream import kinds
from respike.stream.messages import Message, now_us
from respike.stream.security import Security, stop_authenticators
from respike.stream.sockets import Delivery, Publisher, Stopped, Subscriber

log = logging.getLogger(__name__)

STATS_PORT = "stats"
EXIT_CANNOT_START = 78
"""Exit code of a node whose ``start`` failed (bad source, missing file): restarting won't help."""
EXIT_FAILED = 79
"""Exit code of a source that failed for good after starting (:class:`SourceFailed`); it sent
``end`` after what it had published, so the rest of the pipeline drains."""
EXIT_STOP_PIPELINE = 80
"""Exit code of a node that asked for the whole pipeline to stop (:class:`StopPipeline`)."""
READY_TIMEOUT_S = 120.0
"""How long a source waits for the nodes downstream of it before it starts anyway."""
END_LINGER_S = 10.0
"""How long a node that has finished keeps re-sending ``end`` to live consumers still there."""
LOSSLESS_LINGER_S = 30.0
"""How long queued lossless output may take to reach its consumers after ``end``."""
HEAP_SERVES_BYTES = 32 << 20
"""Allocations up to this size come from the heap rather than a fresh ``mmap`` (glibc's limit)."""
HEAP_KEEPS_BYTES = 64 << 20
"""Freed memory the heap keeps for reuse before it gives any back to the system."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_buffers() -> bool:
    """Have glibc serve buffers of up to :data:`HEAP_SERVES_BYTES` from its heap and keep
    freed ones mapped, so that a node's per-message buffers (a frame, an event packet, a
    step's output: megabytes, allocated afresh every message) reuse pages already mapped.
    With glibc's defaults the heap gives freed megabytes back and faults them in again a page
    at a time: 149 faults a step of the DVS emulator on a busy 640x480 clip (31 with this),
    and faults of two threads queue on the process's memory map. Returns False where the C
    library is not glibc (nothing to tune)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, HEAP_SERVES_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, HEAP_KEEPS_BYTES)
    )


class _StopWhileStarting(BaseException):
    """Raised by the signal handler to abandon a node's ``start`` (a BaseException, so that
    ``except Exception`` in node code does not swallow it)."""


def _quiet_stop_while_starting(unraisable: Any) -> None:
    """``sys.unraisablehook`` while a node starts: a stop that lands in a C callback (numba's
    cache notification, say) cannot propagate and would be printed as an ignored exception
    with its traceback; ``stopping`` is set, so the node stops once ``start`` returns."""
    if not isinstance(unraisable.exc_value, _StopWhileStarting):
        sys.__unraisablehook__(unraisable)


@dataclass(frozen=True)
class InputWire:
    """Where one input port receives from: a publisher endpoint and a topic."""

    endpoint: str
    topic: str
    delivery: Delivery = Delivery.LIVE
    queue: int = 1


@dataclass(frozen=True)
class Wiring:
    """Everything a node process needs to know about its place in a pipeline."""

    output: str | None = None
    inputs: dict[str, InputWire] = field(default_factory=dict)
    lossless_outputs: bool = False
    hwm: int | None = None
    """Messages queued per subscriber on the publisher's side; None: the delivery's default."""
    expect_subscribers: dict[str, int] = field(default_factory=dict)
    security: Security = field(default_factory=Security)
    stats_interval: float = 1.0
    subscriber_timeout: float = 10.0
    parent_pid: int | None = None
    ready: dict[str, str] = field(default_factory=dict)
    """Nodes (name: endpoint) that a source waits for before its first output: each is ready
    once it publishes stats, which a node does only after its ``start``."""
    ready_timeout: float = READY_TIMEOUT_S
    report_file: Path | None = None
    """Where the one-line cause of a permanent failure goes (the launcher reads it); without
    one it is logged."""


class LatencyWindow:
    """The last few thousand latencies (ms) of one kind, summarised as p50/p99."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._values.append(ms)

    def summary(self) -> dict[str, float]:
        if not self._values:
            return {}
        ordered = sorted(self._values)
        last = len(ordered) - 1
        return {"p50": ordered[last // 2], "p99": ordered[round(last * 0.99)]}


class NodeRunner:
    """Runs one :class:`Node` against real sockets until it finishes or is told to stop."""

    def __init__(self, node_cls: type[Node], name: str, params: Any, wiring: Wiring) -> None:
        self.name = name
        self.wiring = wiring
        self.stopping = False
        self._starting = False
        self.errors: Counter[str] = Counter()
        self.hop_ms = LatencyWindow()
        self.age_ms = LatencyWindow()
        self._busy_s = 0.0
        self._started = time.monotonic()
        self._context = zmq.Context()
        delivery = Delivery.LOSSLESS if wiring.lossless_outputs else Delivery.LIVE
        self.publisher = (
            Publisher(
                wiring.output,
                source=name,
                delivery=delivery,
                security=wiring.security,
                context=self._context,
                hwm=wiring.hwm,
            )
            if wiring.output
            else None
        )
        self.subscribers = {
            port: Subscriber(
                wire.endpoint,
                wire.topic,
                delivery=wire.delivery,
                queue=wire.queue,
                security=wiring.security,
                context=self._context,
                name=f"{name}.{port}",
            )
            for port, wire in wiring.inputs.items()
        }
        self._ready_monitors = {
            node: Subscriber(
                endpoint,
                f"{node}/{STATS_PORT}",
                security=wiring.security,
                context=self._context,
                name=f"{name}.ready.{node}",
            )
            for node, endpoint in wiring.ready.items()
        }
        missing = set(node_cls.inputs) - set(self.subscribers) - node_cls.optional_inputs
        if missing and not node_cls.is_source():
            raise ValueError(
                f"node {name!r} ({node_cls.kind}) has unwired input(s): {sorted(missing)}"
            )
        self.node = node_cls(name, params, self)

    def publish(self, port: str, message: Message) -> None:
        """Route a node's output to the socket (the node's :class:`Output`)."""
        if self.publisher is not None:
            self.publisher.send(message, stop=lambda: self.stopping)

    def publish_frames(self, port: str, frames: list[Any]) -> None:
        if self.publisher is not None:
            self.publisher.send_raw(frames, stop=lambda: self.stopping)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stopping = True
        self.node.stop_requested.set()
        if self._starting:  # a model may take seconds to load: do not make the launcher wait
            raise _StopWhileStarting()

    def run(self) -> int:
        """Run until finished or stopped; returns the process exit code (0 = clean)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
            sys.unraisablehook = _quiet_stop_while_starting
            keep_freed_buffers()
        self._starting = True
        try:
            self.node.start()
        except _StopWhileStarting:
            self._close_sockets()
            return 0
        except Exception as exc:
            self._report(f"cannot start: {exc}")
            self._close_sockets()
            return EXIT_CANNOT_START
        finally:
            self._starting = False
        # What start() built (a model, its modules and tensors: ~200,000 objects) lives as
        # long as the node; left to the collector, every full collection walks it again
        # (milliseconds a time: a third of the model node's time on DVS replay in a profile).
        gc.freeze()
        code = 0
        try:
            self._wait_for_subscribers()
            self._wait_until_ready()
            try:
                self._loop()
            except SourceFailed as exc:
                self._report(f"failed: {exc}")
                code = EXIT_FAILED
            if not self.stopping:
                self._publish_end()
        except StopPipeline:
            self.stopping = True
            code = EXIT_STOP_PIPELINE
        except Stopped:
            pass
        finally:
            self._shutdown()
        return code

    def _report(self, cause: str) -> None:
        """Say in one line why this node stops for good: to the launcher, or in the log."""
        line = f"node {self.name} ({self.node.kind}) {cause}"
        if self.wiring.report_file is not None:
            self.wiring.report_file.write_text(line + "\n")
        else:
            log.error("%s", line)

    def _wait_for_subscribers(self) -> None:
        if self.publisher is None:
            return
        for port, count in self.wiring.expect_subscribers.items():
            topic = f"{self.name}/{port}"
            if not self.publisher.wait_for_subscribers(
                topic, count, self.wiring.subscriber_timeout, stop=lambda: self.stopping
            ):
                log.warning(
                    "%s: starting with fewer than %d subscriber(s) on %s", self.name, count, topic
                )

    def _wait_until_ready(self) -> None:
        """Wait until every node in ``Wiring.ready`` has started (published its stats).

        Live delivery drops what nobody receives yet, so a source that played while a model
        was still loading would lose the start of a file. Gives up after ``ready_timeout``.
        """
        waiting = dict(self._ready_monitors)
        deadline = time.monotonic() + self.wiring.ready_timeout
        next_note = time.monotonic() + 5.0
        poller = zmq.Poller()
        for monitor in waiting.values():
            for pollable in monitor.pollables:
                poller.register(pollable, zmq.POLLIN)
        while waiting:
            for node, monitor in list(waiting.items()):
                if monitor.receive():
                    del waiting[node]
                    for pollable in monitor.pollables:
                        poller.unregister(pollable)
            if not waiting:
                break
            if self.stopping:
                raise Stopped("stopped while waiting for the nodes downstream")
            now = time.monotonic()
            if now >= deadline:
                log.warning(
                    "%s: %s not started after %.0f s; starting anyway",
                    self.name,
                    ", ".join(waiting),
                    self.wiring.ready_timeout,
                )
                break
            if now >= next_note:
                log.info("%s: waiting for %s to start", self.name, ", ".join(waiting))
                next_note = now + 10.0
            poller.poll(100)
        for monitor in self._ready_monitors.values():
            monitor.close()
        self._ready_monitors = {}

    def _loop(self) -> None:
        poller = zmq.Poller()
        by_socket = {}
        for port, subscriber in self.subscribers.items():
            for pollable in subscriber.pollables:
                poller.register(pollable, zmq.POLLIN)
                by_socket[pollable] = port
        if self.publisher is not None:  # new subscribers to our stats get them at once
            poller.register(self.publisher.socket, zmq.POLLIN)
        data_ports = {
            port
            for port, wire in self.wiring.inputs.items()
            if not wire.topic.endswith(f"/{STATS_PORT}")
        }
        ended: set[str] = set()
        source_due: float | None = time.monotonic() if self.node.is_source() else None
        tick = self.node.tick_interval
        next_tick = time.monotonic() + tick if tick else math.inf
        next_stats = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            if now >= next_stats:
                self._publish_stats()
                next_stats = now + self.wiring.stats_interval
                if self.wiring.parent_pid is not None and os.getppid() != self.wiring.parent_pid:
                    log.warning("%s: the launcher is gone; stopping", self.name)
                    return
            if now >= next_tick:
                self._timed(self.node.tick)
                next_tick = now + (tick or math.inf)
            wake = min(next_stats, next_tick, math.inf if source_due is None else source_due)
            timeout_ms = max(0.0, (wake - time.monotonic()) * 1000)
            ready = (
                dict(poller.poll(math.ceil(timeout_ms)))
                if by_socket or self.publisher is not None
                else self._sleep(timeout_ms)
            )
            if self.publisher is not None and ready.pop(self.publisher.socket, 0):
                stats_topic = f"{self.name}/{STATS_PORT}"
                if any(stats_topic.startswith(p) for p in self.publisher.new_subscriptions()):
                    next_stats = time.monotonic()
            for port in dict.fromkeys(by_socket[pollable] for pollable in ready):
                for message in self.subscribers[port].receive():
                    if message.end:
                        ended.add(port)
                    else:
                        received = now_us()
                        self.hop_ms.add((received - message.pt) / 1000)
                        self.age_ms.add((received - message.t) / 1000)
                        self._handle(port, functools.partial(self.node.on_message, port, message))
            if ready:
                self._handle("flush", self.node.flush)
            if data_ports and ended >= data_ports:
                return
            if source_due is not None and time.monotonic() >= source_due:
                delay = self._timed(self.node.produce)
                if delay is None:
                    return
                source_due = time.monotonic() + delay

    def _sleep(self, timeout_ms: float) -> dict[Any, int]:
        if timeout_ms > 0:  # sleep(0) still yields the core: ~80 µs per message at full rate
            time.sleep(timeout_ms / 1000)
        return {}

    def _handle(self, port: str, call: Callable[[], None]) -> None:
        """Run one call into the node; an exception is counted (logged once per type), not fatal."""
        try:
            self._timed(call)
        except (Stopped, StopPipeline):
            raise
        except Exception as exc:
            cause = type(exc).__name__
            if not self.errors[cause]:
                log.error(
                    "%s: error on %s (further ones are counted):\n%s",
                    self.name,
                    port,
                    traceback.format_exc(),
                )
            self.errors[cause] += 1

    def _timed(self, call: Any) -> Any:
        begin = time.perf_counter()
        try:
            return call()
        finally:
            self._busy_s += time.perf_counter() - begin

    def _publish_stats(self) -> None:
        if self.publisher is None:
            return
        uptime = time.monotonic() - self._started
        stats = kinds.Stats(
            node=self.name,
            kind=self.node.kind,
            uptime_s=round(uptime, 3),
            busy=round(self._busy_s / uptime, 4) if uptime > 0 else 0.0,
            inputs={port: sub.health.snapshot() for port, sub in self.subscribers.items()},
            outputs=dict(self.publisher.sent),
            hop_ms=self.hop_ms.summary(),
            age_ms=self.age_ms.summary(),
            errors=dict(self.errors),
            extra=self.node.stats(),
        )
        topic = f"{self.name}/{STATS_PORT}"
        self.publisher.send(Message(topic, stats.KIND, now_us(), {}, stats.to_meta()))

    def _publish_end(self) -> None:
        """Send ``end`` on every output, then wait until the consumers have left.

        A consumer leaves once ``end`` reached all its data inputs. Live delivery may drop a
        message for a consumer that is behind, so ``end`` goes again every 100 ms to topics that
        still have subscribers. A lossless publisher keeps its socket open until they are gone,
        since closing it while a subscriber's pipe is still full can lose the tail of the stream
        (seen on a loaded machine). Both are bounded by the linger time.
        """
        for port in self.node.outputs:
            self.node.publish(port, "end", now_us())
        if self.publisher is None:
            return
        lossless = self.wiring.lossless_outputs
        linger = LOSSLESS_LINGER_S if lossless else END_LINGER_S
        deadline = time.monotonic() + linger
        waiting = list(self.node.outputs)
        while not self.stopping:
            waiting = [p for p in waiting if self.publisher.subscribers(self.node.topic(p))]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: subscribers of %s still connected %.0f s after `end`",
                    self.name,
                    ", ".join(waiting),
                    linger,
                )
                return
            time.sleep(0.1)
            if not lossless:
                for port in waiting:
                    self.node.publish(port, "end", now_us())

    def _linger_s(self) -> float:
        """How long queued output may take to leave: lossless subscribers get everything."""
        return LOSSLESS_LINGER_S if self.wiring.lossless_outputs else 1.0

    def _shutdown(self) -> None:
        try:
            self.node.finish()
        finally:
            if self.publisher is not None:
                with contextlib.suppress(Stopped):
                    self._publish_stats()
            self._close_sockets(linger=0.0 if self.stopping else self._linger_s())

    def _close_sockets(self, linger: float = 0.0) -> None:
        if self.publisher is not None:
            self.publisher.close(linger=linger)
        for subscriber in (*self.subscribers.values(), *self._ready_monitors.values()):
            subscriber.close()
        stop_authenticators()
        self._context.term()
