"""Soak: the demo pipeline at 30 fps for ten minutes; resident memory of every node process.

What it measures (issue 7): ``pipelines/demo.toml`` without its viewer (the synthetic source at
320x240 and 30 fps, the residual kernel, the ``model`` node, the ``jsonl`` printer; or, with
``--source video``, the ``--input`` clip at 640x480 and 30 fps through camera → residual →
model) runs under ``respike run`` for ``--seconds`` (default 600). Every ``--interval``
seconds the resident memory (``VmRSS`` of ``/proc/PID/status``) of each node process is read;
node processes are found in ``/proc`` by their command line (``--name NODE`` and the
launcher's runtime folder ``respike-<pipeline name>-``, as ``tests/conftest.py`` does) and
must be children of this run's launcher. Growth per node = mean RSS of the last minute / mean
RSS of the first minute after ``--warmup`` seconds − 1 (target < 5 %); the slope of a
least-squares line through every sample after the warm-up is given in MB per hour. The
launcher process is sampled too. The nodes' stats (subscribed to on their ipc endpoints) give
what they received, dropped and lost to sequence gaps after the warm-up, and a changed PID
means the launcher restarted a node; the printed predictions are counted.

Until the shipped ``actions`` checkpoint exists, an untrained ``respike_r18_lite`` of the same
architecture stands in (see ``bench/e2e.py``). Run from the repository root::

    python bench/soak.py                                  # ten minutes, a table on stdout
    nohup python bench/soak.py --json > /tmp/soak.json 2> /tmp/soak.err &
    python bench/soak.py --seconds 180 --warmup 30 --source video
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import DEFAULT_INPUT, checkpoint, make_video, write_pipeline

from respike.stream import kinds
from respike.stream.sockets import Subscriber

ROOT = Path(__file__).resolve().parents[1]
NAME = "soak"


def soak_pipeline(folder: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The pipeline file to soak and the checkpoint's description."""
    ckpt, about = checkpoint(args.checkpoint, "actions", folder)
    residual = {"checkpoint": str(ckpt)}
    if args.source == "video":
        video = make_video(args.input, 640, 480, 30.0, folder)
        nodes: dict[str, dict[str, Any]] = {
            "camera": {"kind": "camera", "params": {"source": video, "fps": 30, "loop": True}},
            "residual": {
                "kind": "residual",
                "inputs": {"frames": "camera/frames"},
                "params": residual,
            },
            "model": {
                "kind": "model",
                "inputs": {
                    "steps": "residual/residual",
                    "keyframes": {"from": "residual/keyframes", "queue": 4},
                },
                "params": {"checkpoint": ckpt},
            },
        }
    else:
        document = tomllib.loads(args.pipeline.read_text())
        nodes = {
            name: table
            for name, table in document["nodes"].items()
            if table.get("kind") != "viewer"
        }
        for table in nodes.values():
            if table["kind"] == "model":
                table.setdefault("params", {})["checkpoint"] = ckpt
            if table["kind"] == "residual":
                table.setdefault("params", {}).update(residual)
    return write_pipeline(folder / f"{NAME}.toml", NAME, nodes), about


def node_pids(launcher_pid: int) -> dict[str, tuple[int, str]]:
    """Node name → (PID, output endpoint) of this run's node processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != launcher_pid or b"--name" not in argv:
            continue
        if not any(f"respike-{NAME}-".encode() in a for a in argv):
            continue
        name = argv[argv.index(b"--name") + 1].decode()
        output = argv[argv.index(b"--output") + 1].decode() if b"--output" in argv else ""
        found[name] = (int(entry.name), output)
    return found


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class StatsListener:
    """Keeps every stats message of the nodes, with the time it arrived (a thread)."""

    def __init__(self) -> None:
        self.messages: dict[str, list[tuple[float, kinds.Stats]]] = {}
        self.endpoints: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def watch(self, name: str, endpoint: str) -> None:
        with self._lock:
            self.endpoints.setdefault(name, endpoint)

    def run(self) -> None:
        context = zmq.Context()
        subscribers: dict[str, Subscriber] = {}
        poller = zmq.Poller()
        try:
            while not self.stop.is_set():
                with self._lock:
                    pending = {n: e for n, e in self.endpoints.items() if n not in subscribers}
                for name, endpoint in pending.items():
                    if not endpoint.startswith("ipc://"):
                        continue
                    subscribers[name] = Subscriber(
                        endpoint, f"{name}/stats", queue=1000, context=context
                    )
                    for pollable in subscribers[name].pollables:
                        poller.register(pollable, zmq.POLLIN)
                    self.messages[name] = []
                poller.poll(200)
                for name, subscriber in subscribers.items():
                    for message in subscriber.receive():
                        stats = kinds.Stats.read(message)
                        self.messages[name].append((time.monotonic(), stats))
        finally:
            for subscriber in subscribers.values():
                subscriber.close()
            context.term()


def totals(stats: kinds.Stats) -> dict[str, int]:
    inputs = stats.inputs.values()
    return {
        "received": sum(i["received"] for i in inputs),
        "dropped": sum(i["dropped"] for i in inputs),
        "gaps": sum(i["gaps"] for i in inputs),
        "sent": sum(n for t, n in stats.outputs.items() if not t.endswith("/stats")),
    }


def summarise(
    samples: dict[str, list[tuple[float, float]]],
    pids: dict[str, list[int]],
    stats: StatsListener,
    started: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    nodes = {}
    end = max((t for series in samples.values() for t, _ in series), default=0.0)
    for name, series in samples.items():
        after = [(t, mb) for t, mb in series if t >= args.warmup]
        first = [mb for t, mb in after if t < args.warmup + 60]
        last = [mb for t, mb in after if t >= end - 60]
        row: dict[str, Any] = {"pids": pids.get(name, []), "samples": len(series)}
        if first and last:
            row["first_min_mb"] = float(np.mean(first))
            row["last_min_mb"] = float(np.mean(last))
            row["growth_pct"] = 100 * (row["last_min_mb"] / row["first_min_mb"] - 1)
            row["max_mb"] = float(max(mb for _, mb in series))
            if len(after) >= 2:
                x = np.array([t for t, _ in after])
                y = np.array([mb for _, mb in after])
                row["slope_mb_per_h"] = float(np.polyfit(x, y, 1)[0] * 3600)
        messages = stats.messages.get(name, [])
        a = next((m for t, m in messages if t - started >= args.warmup), None)
        b = messages[-1][1] if messages else None
        if a is not None and b is not None:
            ta, tb = totals(a), totals(b)
            row.update({f"{k}_after_warmup": tb[k] - ta[k] for k in ta})
            extra = b.extra
            if "dropped_steps" in extra:
                before = a.extra.get("dropped_steps", 0)
                row["dropped_steps_after_warmup"] = int(extra["dropped_steps"] - before)
        nodes[name] = row
    return nodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out at start")
    parser.add_argument(
        "--source", choices=("demo", "video"), default="demo", help="demo.toml or a video"
    )
    parser.add_argument(
        "--pipeline", type=Path, default=ROOT / "pipelines" / "demo.toml", help="demo pipeline"
    )
    parser.add_argument(
        "--input", type=Path, default=DEFAULT_INPUT, help="video for --source video"
    )
    parser.add_argument("--checkpoint", default="actions", help="checkpoint (path or name)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    args = parser.parse_args(argv)
    if args.seconds < args.warmup + 120:
        parser.error("--seconds must leave two minutes after --warmup (first and last minute)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="rs-soak-"))
    pipeline, about = soak_pipeline(folder, args)
    predictions_file = folder / "predictions.txt"
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    stats = StatsListener()
    listener = threading.Thread(target=stats.run, daemon=True)
    listener.start()
    command = [sys.executable, "-m", "respike.nodes.cli", "run", str(pipeline), "--status", "off"]
    samples: dict[str, list[tuple[float, float]]] = {}
    pids: dict[str, list[int]] = {}
    with predictions_file.open("w") as out:
        launcher = subprocess.Popen(command, stdout=out)
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < args.seconds:
                if launcher.poll() is not None:
                    raise SystemExit(f"respike run ended early with code {launcher.returncode}")
                found = node_pids(launcher.pid)
                found["(launcher)"] = (launcher.pid, "")
                for name, (pid, endpoint) in found.items():
                    if endpoint:
                        stats.watch(name, endpoint)
                    mb = rss_mb(pid)
                    if mb is None:
                        continue
                    samples.setdefault(name, []).append((elapsed, mb))
                    if pid not in pids.setdefault(name, []):
                        pids[name].append(pid)
                time.sleep(max(0.0, args.interval - (time.monotonic() - started - elapsed)))
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                launcher.kill()
            stats.stop.set()
            listener.join(timeout=5)
    nodes = summarise(samples, pids, stats, started, args)
    lines = predictions_file.read_text().splitlines()
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "interval": args.interval,
        "source": args.source,
        "pipeline": str(args.pipeline) if args.source == "demo" else f"video {args.input}",
        "checkpoint": about,
        "load_start": load_start,
        "load_end": Path("/proc/loadavg").read_text().split()[:3],
        "predictions_printed": len(lines),
        "nodes": nodes,
        "max_growth_pct": max(
            (n["growth_pct"] for k, n in nodes.items() if "growth_pct" in n and k[0] != "("),
            default=None,
        ),
    }
    summary["target_growth_below_5pct"] = (
        summary["max_growth_pct"] is not None and summary["max_growth_pct"] < 5
    )
    if args.json:
        print(json.dumps(summary))
        return
    print(f"soak: {summary['pipeline']} for {args.seconds:.0f} s, checkpoint: {about}")
    print(f"load average {' '.join(load_start)} -> {' '.join(summary['load_end'])}")
    print(
        f"{'node':>12} {'pid':>8} {'first min MB':>12} {'last min MB':>11} {'growth':>7} "
        f"{'max MB':>7} {'MB/h':>6} {'recv':>7} {'dropped':>7} {'gaps':>5}"
    )
    for name, n in nodes.items():
        if "growth_pct" not in n:
            print(f"{name:>12} (too few samples)")
            continue
        print(
            f"{name:>12} {','.join(map(str, n['pids'])):>8} {n['first_min_mb']:>12.1f} "
            f"{n['last_min_mb']:>11.1f} {n['growth_pct']:>6.2f}% {n['max_mb']:>7.1f} "
            f"{n.get('slope_mb_per_h', 0):>6.1f} {n.get('received_after_warmup', '-'):>7} "
            f"{n.get('dropped_after_warmup', '-'):>7} {n.get('gaps_after_warmup', '-'):>5}"
        )
    print(f"predictions printed: {len(lines)}")
    print(
        f"target: growth < 5 % per node: {summary['target_growth_below_5pct']} "
        f"(max {summary['max_growth_pct']:.2f} %)"
    )


if __name__ == "__main__":
    main()
