"""`respike run`: one process per node, wired endpoints, restarts with backoff, a live status table.

The launcher owns the processes of the nodes that run on this host. Each is started as
``respike node KIND ...`` with flags that the launcher derives from the pipeline (the same
command a person would type on another host), so a node behaves the same under the launcher
and alone. Endpoints are ipc sockets in a private runtime folder when the whole pipeline is on
this host, and tcp on each node's host otherwise. Sources wait until the nodes downstream of
them have started, so a short file is played whole.

A node that dies by a signal or an error that can pass is restarted after a backoff that
doubles up to 10 s; one that exits 0 has finished. A node that cannot start, or a source that
failed for good (a missing or damaged file), is not restarted: the pipeline stops (after
draining what the source had sent) and the launcher exits 1 with one line per such node naming
it and the cause. The launcher ends when every node has finished, when ``--for`` elapses, on
Ctrl-C/SIGTERM, or when a node asks for the pipeline to stop (a sink whose reader went away),
and always stops its children (SIGTERM, then SIGKILL after a grace period) and removes the
folder.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import zmq

from respike.nodes.pipeline import NodeSpec, PipelineSpec
from respike.nodes.runtime import (
    EXIT_CANNOT_START,
    EXIT_FAILED,
    EXIT_STOP_PIPELINE,
    STATS_PORT,
)
from respike.stream import kinds
from respike.stream.messages import MessageError
from respike.stream.security import LOOPBACK_NAMES, Security
from respike.stream.sockets import LIVE_HWM, Delivery, Subscriber

log = logging.getLogger(__name__)

GRACE_S = 5.0
MAX_BACKOFF_S = 10.0
STABLE_AFTER_S = 30.0


@dataclass(frozen=True)
class Endpoints:
    """Where each node binds its publisher and where others connect to it."""

    bind: dict[str, str]
    connect: dict[str, str]

    @classmethod
    def plan(cls, pipeline: PipelineSpec, runtime_dir: Path) -> Endpoints:
        """ipc in ``runtime_dir`` on one host; tcp on each node's host when hosts are named.

        A host given as an IP address is bound as is; a host name is bound on all interfaces
        (``tcp://*``), which needs CURVE keys or ``--insecure``.
        """
        if not pipeline.multi_host:
            ipc = {spec.name: f"ipc://{runtime_dir}/{spec.name}.sock" for spec in pipeline.nodes}
            return cls(ipc, ipc)
        bind, connect = {}, {}
        for spec in pipeline.nodes:
            host = spec.host or "127.0.0.1"
            connect[spec.name] = f"tcp://{_bracketed(host)}:{spec.port}"
            bind[spec.name] = f"tcp://{_bracketed(host) if _is_ip(host) else '*'}:{spec.port}"
        return cls(bind, connect)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def runs_here(host: str | None, extra: tuple[str, ...] = ()) -> bool:
    """Whether a node placed on ``host`` runs on this machine: unnamed, loopback, this
    machine's hostname, or one of the ``--host`` names."""
    if host is None or host in LOOPBACK_NAMES or host == socket.gethostname() or host in extra:
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


def node_command(
    spec: NodeSpec,
    pipeline: PipelineSpec,
    endpoints: Endpoints,
    *,
    keys: Path | None = None,
    insecure: bool = False,
) -> list[str]:
    """The ``respike node`` arguments that run ``spec`` wired into ``pipeline``."""
    argv = ["node", spec.kind, "--name", spec.name, "--output", endpoints.bind[spec.name]]
    for wire in spec.inputs:
        argv += ["--input", f"{wire.port}={wire.full_topic}@{endpoints.connect[wire.source]}"]
        if wire.delivery is not Delivery.LIVE:
            argv += ["--delivery", f"{wire.port}={wire.delivery}"]
        if wire.queue != 1:
            argv += ["--queue", f"{wire.port}={wire.queue}"]
    consumers = pipeline.consumers(spec.name)
    deepest = max((wire.queue for _, wire in consumers), default=1)
    if any(wire.delivery is Delivery.LOSSLESS for _, wire in consumers):
        argv.append("--lossless-outputs")
    elif deepest > LIVE_HWM:  # a burst (a model catching up in one batch) must reach them all
        argv += ["--hwm", str(deepest)]
    for port in spec.node_cls.outputs:
        count = sum(1 for _, wire in consumers if wire.topic == port)
        if count:
            argv += ["--expect", f"{port}={count}"]
    if spec.node_cls.is_source():
        for name in pipeline.downstream(spec.name):
            argv += ["--ready", f"{name}@{endpoints.connect[name]}"]
    if keys is not None:
        argv += ["--keys", str(keys)]
    if insecure:
        argv.append("--insecure")
    if spec.raw_params:  # the checked, typed values: no round trip through strings
        typed = {name: getattr(spec.params, name) for name in spec.raw_params}
        argv += ["--params", json.dumps(typed, default=str)]
    return argv


@dataclass
class NodeProcess:
    """A node this launcher runs, its process and what its stats last said."""

    spec: NodeSpec
    argv: list[str]
    local: bool = True
    process: subprocess.Popen[bytes] | None = None
    state: str = "starting"
    restarts: int = 0
    failures: int = 0
    started: float = 0.0
    restart_at: float = 0.0
    cause: str = ""
    """Why the node failed for good: the line it reported, or what the launcher saw."""
    stats: kinds.Stats | None = None
    rates: tuple[float, float] = (0.0, 0.0)

    def update_stats(self, stats: kinds.Stats) -> None:
        previous, self.stats = self.stats, stats
        if previous is not None and stats.uptime_s > previous.uptime_s:
            span = stats.uptime_s - previous.uptime_s
            self.rates = (
                (_received(stats) - _received(previous)) / span,
                (_sent(stats) - _sent(previous)) / span,
            )


def _received(stats: kinds.Stats) -> int:
    return sum(port["received"] for port in stats.inputs.values())


def _sent(stats: kinds.Stats) -> int:
    return sum(n for topic, n in stats.outputs.items() if not topic.endswith(f"/{STATS_PORT}"))


class Launcher:
    """Runs the local nodes of a :class:`PipelineSpec` until done, ``duration`` or a signal."""

    def __init__(
        self,
        pipeline: PipelineSpec,
        *,
        duration: float | None = None,
        status: str = "auto",
        keys: Path | None = None,
        insecure: bool = False,
        max_failures: int = 20,
        hosts: tuple[str, ...] = (),
        out: TextIO = sys.stderr,
    ) -> None:
        self.pipeline = pipeline
        self.duration = duration
        self.max_failures = max_failures
        self.out = out
        self.security = Security(keys_dir=keys, insecure=insecure)
        if status not in ("auto", "table", "plain", "off"):
            raise ValueError(f"status is {status!r}; expected auto, table, plain or off")
        self.status = ("table" if out.isatty() else "plain") if status == "auto" else status
        self.stopping = False
        self.stop_now = False
        """Set when the pipeline cannot go on (a node failed for good) or a node asked to stop."""
        self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"respike-{pipeline.name}-"))
        self.endpoints = Endpoints.plan(pipeline, self.runtime_dir)
        self.nodes = [
            NodeProcess(
                spec,
                node_command(spec, pipeline, self.endpoints, keys=keys, insecure=insecure),
                local=runs_here(spec.host, hosts),
            )
            for spec in pipeline.nodes
        ]
        for node in self.nodes:
            if not node.local:
                log.warning(
                    "node %s runs on %s: start it there with\n  respike %s",
                    node.spec.name,
                    node.spec.host,
                    shlex.join(node.argv),
                )
        self.local = [node for node in self.nodes if node.local]

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stopping = True

    def run(self) -> int:
        """Start everything, supervise, and stop; 0 unless a node failed for good."""
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        context = zmq.Context()
        monitors = {
            node.spec.name: Subscriber(
                self.endpoints.connect[node.spec.name],
                f"{node.spec.name}/{STATS_PORT}",
                security=self.security,
                context=context,
            )
            for node in self.nodes
        }
        deadline = None if self.duration is None else time.monotonic() + self.duration
        display = StatusDisplay(self, self.status, self.out)
        try:
            for node in reversed(self.local):  # consumers first: sources wait for them anyway
                self._start(node)
            while not (self.stopping or self.stop_now):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                for name, monitor in monitors.items():
                    for message in monitor.receive():
                        if message.kind == kinds.Stats.KIND:
                            with contextlib.suppress(MessageError):  # not one of our nodes'
                                self._by_name(name).update_stats(kinds.Stats.read(message))
                self._supervise()
                display.update()
                if all(node.state in ("done", "failed") for node in self.local):
                    break
                time.sleep(0.05)
        finally:
            self._stop_all()
            display.close()
            for monitor in monitors.values():
                monitor.close()
            context.term()
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        failed = [node for node in self.local if node.state == "failed"]
        for node in failed:
            print(f"respike: error: {node.cause}", file=self.out, flush=True)
        return 1 if failed else 0

    def _by_name(self, name: str) -> NodeProcess:
        return next(node for node in self.nodes if node.spec.name == name)

    def _start(self, node: NodeProcess) -> None:
        argv = [
            sys.executable,
            "-m",
            "respike.nodes.cli",
            *node.argv,
            "--parent-pid",
            str(os.getpid()),
            "--report-file",
            str(self._report_file(node)),
        ]
        node.process = subprocess.Popen(argv, start_new_session=True)
        node.state = "running"
        node.started = time.monotonic()

    def _report_file(self, node: NodeProcess) -> Path:
        return self.runtime_dir / f"{node.spec.name}.error"

    def _supervise(self) -> None:
        now = time.monotonic()
        for node in self.local:
            if node.state == "restarting" and now >= node.restart_at:
                node.restarts += 1
                self._start(node)
            if node.state != "running" or node.process is None:
                continue
            code = node.process.poll()
            if code is None:
                continue
            if code == 0:
                node.state = "done"
            elif code == EXIT_STOP_PIPELINE:
                node.state = "done"
                self.stop_now = True
            elif code in (EXIT_CANNOT_START, EXIT_FAILED):
                self._fail(node, f"node {node.spec.name} ({node.spec.kind}) exited with {code}")
                # a source that failed after starting sent `end`: let the others drain
                self.stop_now = self.stop_now or code == EXIT_CANNOT_START
            else:
                self._restart_later(node, code, now)

    def _restart_later(self, node: NodeProcess, code: int, now: float) -> None:
        node.failures = 1 if now - node.started > STABLE_AFTER_S else node.failures + 1
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if node.failures > self.max_failures:
            self._fail(
                node,
                f"node {node.spec.name} ({node.spec.kind}) died {node.failures} times in a row "
                f"(last: {how}); gave up",
            )
            self.stop_now = True
            return
        backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** (node.failures - 1))
        log.warning("node %s died (%s); restarting in %.1f s", node.spec.name, how, backoff)
        node.state = "restarting"
        node.restart_at = now + backoff

    def _fail(self, node: NodeProcess, fallback: str) -> None:
        """Mark ``node`` failed for good, with the cause it reported (or ``fallback``)."""
        node.state = "failed"
        try:
            node.cause = self._report_file(node).read_text().strip() or fallback
        except OSError:
            node.cause = fallback

    def _stop_all(self) -> None:
        running = [n for n in self.local if n.process is not None and n.process.poll() is None]
        for node in running:
            assert node.process is not None
            node.process.terminate()
        deadline = time.monotonic() + GRACE_S
        for node in running:
            assert node.process is not None
            try:
                node.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "node %s ignored SIGTERM for %.0f s; killing it", node.spec.name, GRACE_S
                )
                node.process.kill()
                node.process.wait()
            if node.state == "running":
                node.state = "stopped"


class StatusDisplay:
    """The per-node status: a live table on a terminal, plain log lines otherwise."""

    COLUMNS = (
        "node",
        "kind",
        "state",
        "restarts",
        "in/s",
        "out/s",
        "hop p50/p99 ms",
        "dropped",
        "gaps",
        "invalid",
        "errors",
    )

    def __init__(self, launcher: Launcher, mode: str, out: TextIO, interval: float = 5.0) -> None:
        self.launcher = launcher
        self.mode = mode
        self.out = out
        self.interval = interval
        self._next = time.monotonic() + interval
        self._live: Any = None
        if mode == "table":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(file=out), refresh_per_second=2)
            self._live.start()

    def rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for node in self.launcher.nodes:
            stats = node.stats or kinds.Stats(node.spec.name, node.spec.kind, 0.0, 0.0)
            inputs = stats.inputs.values()
            hop = stats.hop_ms
            rows.append(
                (
                    node.spec.name,
                    node.spec.kind,
                    node.state if node.local else f"on {node.spec.host}",
                    str(node.restarts),
                    f"{node.rates[0]:.1f}",
                    f"{node.rates[1]:.1f}",
                    f"{hop['p50']:.2f}/{hop['p99']:.2f}" if hop else "-",
                    str(sum(i["dropped"] for i in inputs)),
                    str(sum(i["gaps"] for i in inputs)),
                    str(sum(sum(i["invalid"].values()) for i in inputs)),
                    str(sum(stats.errors.values())),
                )
            )
        return rows

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"respike: {self.launcher.pipeline.name}")
        for column in self.COLUMNS:
            table.add_column(
                column, justify="left" if column in ("node", "kind", "state") else "right"
            )
        for row in self.rows():
            table.add_row(*row)
        return table

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
        elif self.mode == "plain" and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.interval
            self._print_lines()

    def _print_lines(self) -> None:
        for row in self.rows():
            fields = " ".join(f"{k}={v}" for k, v in zip(self.COLUMNS, row, strict=True))
            print(f"[status] {fields}", file=self.out, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
        elif self.mode == "plain":
            self._print_lines()
