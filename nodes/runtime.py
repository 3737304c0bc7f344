"""The node runtime: wires a node to sockets, runs its loop, publishes stats, stops cleanly.

One loop per process: wait on the input sockets (or until a source is due), hand each valid
message to the node, then call its :meth:`~respike.nodes.base.Node.flush` once nothing more is
waiting (so a node that fell behind can batch), call a source's
:meth:`~respike.nodes.base.Node.produce` on its schedule, publish ``<name>/stats`` every second. SIGINT/SIGTERM set a stop flag that the loop (and a
send blocked by backpressure) checks; the node's :meth:`finish` always runs and every socket is
closed. An exception while handling one input message is counted and logged once per type:
input never kills a node. ``end`` on every input finishes the node, which forwards ``end`` on
its own outputs, so a finite source drains the whole pipeline and every process exits 0.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import zmq

from respike.nodes.base import Node
from respike.stream.messages import Message, decode, now_us
from respike.stream.security import Security, stop_authenticators
from respike.stream.sockets import Delivery, Publisher, Stopped, Subscriber

log = logging.getLogger(__name__)

STATS_PORT = "stats"
EXIT_CANNOT_START = 78
"""Exit code of a node whose ``start`` failed (bad source, missing file): restarting won't help."""


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
    expect_subscribers: dict[str, int] = field(default_factory=dict)
    security: Security = field(default_factory=Security)
    stats_interval: float = 1.0
    subscriber_timeout: float = 10.0
    parent_pid: int | None = None


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

    def run(self) -> int:
        """Run until finished or stopped; returns the process exit code (0 = clean)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
        try:
            self.node.start()
        except Exception as exc:
            log.error("%s (%s) cannot start: %s", self.name, self.node.kind, exc)
            self._close_sockets()
            return EXIT_CANNOT_START
        try:
            self._wait_for_subscribers()
            self._loop()
            if not self.stopping:
                self._publish_end()
                self._wait_for_consumers_to_leave()
        except Stopped:
            pass
        finally:
            self._shutdown()
        return 0

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

    def _loop(self) -> None:
        poller = zmq.Poller()
        by_socket = {}
        for port, subscriber in self.subscribers.items():
            poller.register(subscriber.socket, zmq.POLLIN)
            by_socket[subscriber.socket] = port
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
                dict(poller.poll(math.ceil(timeout_ms))) if by_socket else self._sleep(timeout_ms)
            )
            for socket in ready:
                port = by_socket[socket]
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
            if self.subscribers and ended >= set(self.subscribers):
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
        except Stopped:
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
        meta = {
            "node": self.name,
            "kind": self.node.kind,
            "uptime_s": round(uptime, 3),
            "busy": round(self._busy_s / uptime, 4) if uptime > 0 else 0.0,
            "inputs": {port: sub.health.snapshot() for port, sub in self.subscribers.items()},
            "outputs": dict(self.publisher.sent),
            "hop_ms": self.hop_ms.summary(),
            "age_ms": self.age_ms.summary(),
            "errors": dict(self.errors),
            "extra": self.node.stats(),
        }
        self.publisher.send(Message(f"{self.name}/{STATS_PORT}", "stats", now_us(), {}, meta))

    def _wait_for_consumers_to_leave(self) -> None:
        """After ``end`` on lossless outputs, wait until every subscriber has disconnected.

        Closing the socket while a subscriber's pipe is still full can lose the tail of the
        stream (seen on a loaded machine), so a lossless source keeps its socket open until the
        consumers, which leave after they receive ``end``, are gone (bounded by the linger time).
        """
        if self.publisher is None or not self.wiring.lossless_outputs:
            return
        deadline = time.monotonic() + self._linger_s()
        topics = [f"{self.name}/{port}" for port in self.node.outputs]
        while any(self.publisher.subscribers(t) for t in topics) and not self.stopping:
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: subscribers still connected %.0f s after `end`",
                    self.name,
                    self._linger_s(),
                )
                return
            time.sleep(0.01)

    def _linger_s(self) -> float:
        """How long queued output may take to leave: lossless subscribers get everything."""
        return 30.0 if self.wiring.lossless_outputs else 1.0

    def _publish_end(self) -> None:
        for port in self.node.outputs:
            self.node.publish(port, "end", now_us())

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
        for subscriber in self.subscribers.values():
            subscriber.close()
        stop_authenticators()
        self._context.term()


@dataclass
class MockIO:
    """Drive a node without sockets: feed scripted messages, collect what it publishes.

    >>> io = MockIO(JsonlSink, "sink", JsonlSink.Params())  # doctest: +SKIP
    >>> io.send("in", message); io.outputs  # doctest: +SKIP
    """

    node_cls: type[Node]
    name: str
    params: Any
    outputs: list[tuple[str, Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = self.node_cls(self.name, self.params, self)
        self.node.start()

    def publish(self, port: str, message: Message) -> None:
        self.outputs.append((port, message))

    def publish_frames(self, port: str, frames: list[Any]) -> None:
        self.outputs.append((port, decode(frames)))

    def send(self, port: str, message: Message) -> None:
        if port not in self.node_cls.inputs and not self.node_cls.any_inputs:
            raise ValueError(f"{self.node_cls.kind} has no input {port!r}")
        self.node.on_message(port, message)
        self.node.flush()

    def run_source(self, max_calls: int = 1_000_000) -> None:
        """Call ``produce`` (without sleeping) until the source is done or ``max_calls``."""
        for _ in range(max_calls):
            if self.node.produce() is None:
                return

    def finish(self) -> list[tuple[str, Message]]:
        self.node.finish()
        return self.outputs
