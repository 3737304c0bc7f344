"""End to end: a 640x480 video through camera → residual → model → a subscriber, and DVS replay.

What it measures (issue 7), with the pipelines run by the real :class:`Launcher` (one process
per node, ipc sockets, the default ``live`` delivery of ``pipelines/video.toml``) and this
process subscribed to ``model/predictions`` in place of the ``jsonl`` node:

- **video** (one pipeline per input rate of ``--rates``, default 30,60,90,120,150 fps): the
  ``--input`` clip (default ``kinetics_arm_wrestling.mp4``) resized to ``--size`` (640x480)
  into a temporary mp4 file once, played by the ``camera`` node in a loop at the rate (its
  ``fps`` parameter paces the file), residuals at the checkpoint's SNN size, the ``model`` node
  on the ``--checkpoint``. After the first prediction and ``--warmup`` seconds, a window of
  ``--seconds`` is measured between two of the camera's stats messages: the camera counts the
  frames it read and those it held as still before each, and each frame carries its capture
  time ``t``, so *frames in* (read, less held) is exact and *predictions out* is the number
  of predictions whose ``t`` falls in the window (collected for ``--drain`` seconds more).
  ``lost`` = frames in − predictions out; the nodes' own stats (per-input ``dropped`` by the
  live queues, sequence ``gaps``, the model's ``dropped_steps`` of key frames that never
  came) say where. Latency is each
  prediction's ``latency_ms``: ``residual`` (kernel), ``upstream`` (capture → residual
  published: camera publish, the hop, the queue, residual kernel, key-frame publish), ``hop``
  (residual published → model started the step: transfer, queue, key-frame ANN passes before
  it), ``model`` (the step's compute), ``e2e`` (capture → prediction published), plus
  ``subscriber`` (capture → arrival here). Per node: loop busy share (wall time in its handlers,
  from its stats) and CPU share of the process (``/proc/PID/stat``, all threads): busy well
  above CPU means the node was waiting for a core, not computing. A rate is
  *sustained* when nothing was lost or dropped and the camera achieved ≥ 98 % of it (its pacer
  falls back when it cannot keep up). The model node runs its compiled step where one is in
  the cache (``respike compile-step CHECKPOINT`` first; ``--model-param compiled_step=off``
  for eager steps, ``auto`` builds it in the background during the run): the node table says
  how many of the window's steps ran compiled.
- **DVS replay** (``--dvs``: every ``*.bs2`` recording of DVS Gesture in that folder, or
  ``--dvs-recordings``): ``dvs`` (``speed = 0``, looping, ``lossless`` to the model) → ``model``
  on the ``gestures-dvs`` checkpoint. After the first prediction and ``--warmup``, predictions
  are counted by sequence number for ``--dvs-seconds``: one prediction per ``--dvs-window-us``
  packet, so × real time = packets per second × window. Steady state, so the model's start-up
  (the dvs node fills the lossless queues while torch loads) is left out.

Until the shipped checkpoints exist, an untrained one of the same architecture is saved to a
temporary folder (compute cost equals a trained one's): ``actions`` → ``respike_r18_lite``, 19
classes, 64x64 grey residuals, 112 px key frames, K = 4; ``gestures-dvs`` → ``respike_r18_lite``
in ``snn`` mode, 11 classes, 2-polarity event frames at ``--dvs-size`` px (DVS Gesture's sensor
is 128x128; 64 halves it, as the 64 px default of the SNN), 33.3 ms time bins.

Targets: 0 drops at 30 fps, p50 ≤ 15 ms, p99 ≤ 30 ms, ≥ 120 fps sustained, replay ≥ 20x real
time. Run from the repository root (about 6-8 minutes with the defaults)::

    python bench/e2e.py                         # tables on stdout
    python bench/e2e.py --json                  # one JSON summary on stdout
    python bench/e2e.py --rates 30 --seconds 60 --no-dvs
    python bench/e2e.py --input clip.mp4 --checkpoint path/to/actions.pt --dvs-recordings 1,2
    python bench/e2e.py --tables e2e.json       # the tables of a saved --json summary

Variations for diagnosis (the defaults are the ready pipeline as it is): ``--model-param
NAME=VALUE`` sets a ``model`` node parameter (``energy=false``, ``compile=true``),
``--camera-param NAME=VALUE`` a ``camera`` one (its ``still_*`` settings default to
``pipelines/webcam.toml``'s, so the camera goes quiet before a still scene as the live demo's
does; ``still_below=-1`` sends every frame), ``--steps-queue
N`` the live queue of its ``steps`` input, ``--dvs-window-us`` the replay packet (one prediction
per packet; several SNN time bins per packet run as one call).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from respike.nodes.launcher import Launcher
from respike.nodes.pipeline import load_pipeline
from respike.stream import kinds
from respike.stream.messages import now_us
from respike.stream.sockets import Subscriber

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_INPUT = SHARED / "videos" / "kinetics_arm_wrestling.mp4"
DEFAULT_DVS = SHARED / "dvs_gesture10"
STAGES = ("residual", "upstream", "hop", "model", "e2e", "subscriber")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- inputs


def make_video(source: Path, width: int, height: int, fps: float, folder: Path) -> Path:
    """``source`` as it is when already ``width`` x ``height``; else resized into an mp4."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise SystemExit(f"cannot open video {source}")
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if size == (width, height):
        capture.release()
        return source
    out = folder / f"{source.stem}_{width}x{height}.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
        count += 1
    capture.release()
    writer.release()
    if not count:
        raise SystemExit(f"video {source} holds no readable frame")
    return out


def checkpoint(name: str, kind: str, folder: Path, dvs_size: int = 64) -> tuple[Path, str]:
    """The checkpoint file for ``name`` and how to describe it.

    A path or a shipped name that exists is used as is; otherwise (the shipped checkpoint is
    not there yet) an untrained ``respike_r18_lite`` of the architecture ``kind`` stands in.
    """
    import torch

    from respike.models import InputSpec, get_model
    from respike.models.checkpoint import CheckpointError, resolve_checkpoint, save_checkpoint

    try:
        path = resolve_checkpoint(name)
        return path, f"{name} ({path})"
    except CheckpointError:
        pass
    torch.manual_seed(0)
    if kind == "actions":
        spec = InputSpec(
            snn_size=(64, 64),
            snn_input="residual",
            snn_channels=1,
            keyframe_size=(112, 112),
            keyframe_interval=4,
        )
        model = get_model("respike_r18_lite", num_classes=19, input_spec=spec)
        about = (
            "untrained respike_r18_lite, hybrid, 19 classes, 64x64 grey residual, "
            "112 px key frames, K=4"
        )
    else:
        spec = InputSpec(snn_size=(dvs_size, dvs_size), snn_input="events", snn_channels=2)
        model = get_model("respike_r18_lite", num_classes=11, mode="snn", input_spec=spec)
        about = (
            f"untrained respike_r18_lite, snn mode, 11 classes, 2x{dvs_size}x{dvs_size} "
            f"event frames, {spec.time_bin_us} us bins"
        )
    classes = [f"class_{i}" for i in range(model.config.num_classes)]
    path = save_checkpoint(folder / f"{kind}-{dvs_size}-untrained.pt", model, classes)
    return path, f"{about} (`{name}` not found: stand-in of the same architecture)"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def write_pipeline(path: Path, name: str, nodes: dict[str, dict[str, Any]]) -> Path:
    """A pipeline file with ``[pipeline] name`` and one ``[nodes.NAME]`` table per node."""
    lines = ["[pipeline]", f"name = {json.dumps(name)}", ""]
    for node, table in nodes.items():
        lines.append(f"[nodes.{node}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def video_pipeline(
    folder: Path,
    video: Path,
    ckpt: Path,
    rate: float,
    model_params: dict[str, Any],
    steps_queue: int = 4,
    loop: bool = True,
    camera_params: dict[str, Any] | None = None,
) -> Path:
    """camera (``video`` at ``rate``, looping unless ``loop`` is false) → residual → model;
    played once, a ``jsonl`` sink prints the predictions (``--runtimes``)."""
    camera = {"source": video, "fps": rate, "loop": loop, **(camera_params or {})}
    sink = {
        "print": {
            "kind": "jsonl",
            "inputs": {"in": {"from": "model/predictions", "queue": 64}},
            "params": {"arrays": False},
        }
    }
    return write_pipeline(
        folder / f"e2e-{rate:g}{'' if loop else '-once'}.toml",
        f"e2e-{rate:g}",
        {
            "camera": {"kind": "camera", "params": camera},
            "residual": {
                "kind": "residual",
                "inputs": {"frames": "camera/frames"},
                "params": {"checkpoint": str(ckpt)},
            },
            "model": {
                "kind": "model",
                "inputs": {
                    "steps": {"from": "residual/residual", "queue": steps_queue},
                    "keyframes": {"from": "residual/keyframes", "queue": 4},
                },
                "params": {"checkpoint": ckpt, **model_params},
            },
            **({} if loop else sink),
        },
    )


def dvs_pipeline(
    folder: Path, recording: Path, ckpt: Path, window_us: int, model_params: dict[str, Any]
) -> Path:
    return write_pipeline(
        folder / f"e2e-dvs-{recording.stem}.toml",
        "e2e-dvs",
        {
            "dvs": {
                "kind": "dvs",
                "params": {"path": recording, "window_us": window_us, "speed": 0.0, "loop": True},
            },
            "model": {
                "kind": "model",
                "inputs": {"steps": {"from": "dvs/events", "delivery": "lossless"}},
                "params": {"checkpoint": ckpt, **model_params},
            },
        },
    )


# ------------------------------------------------------------------------------- collecting


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all threads), or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Prediction:
    t: int
    seq: int
    arrival: int
    latency: dict[str, float]


@dataclass
class Snapshot:
    """A node's stats message as received, with the process CPU time read at that moment."""

    t: int
    stats: kinds.Stats
    cpu: dict[str, float | None] = field(default_factory=dict)


class Collector:
    """Subscribes to predictions and every node's stats while a :class:`Launcher` runs.

    Runs in a thread; ``stop_when(collector)`` decides when the measurement is complete, then
    it asks the launcher to stop.
    """

    def __init__(self, launcher: Launcher, timeout: float) -> None:
        self.launcher = launcher
        self.timeout = timeout
        self.predictions: list[Prediction] = []
        self.stats: dict[str, list[Snapshot]] = {n.spec.name: [] for n in launcher.nodes}
        self.first_prediction: int | None = None
        self.prediction_gaps = 0
        self.done = threading.Event()
        self.error: str | None = None
        self.started = now_us()

    def pids(self) -> dict[str, int]:
        return {n.spec.name: n.process.pid for n in self.launcher.nodes if n.process is not None}

    def run(self, finished: Any) -> None:
        context = zmq.Context()
        connect = self.launcher.endpoints.connect
        predictions = Subscriber(
            connect["model"], "model/predictions", queue=100_000, context=context
        )
        monitors = {
            name: Subscriber(connect[name], f"{name}/stats", queue=1000, context=context)
            for name in self.stats
        }
        poller = zmq.Poller()
        for subscriber in (predictions, *monitors.values()):
            for pollable in subscriber.pollables:
                poller.register(pollable, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        try:
            while not self.done.is_set() and not self.launcher.stopping:
                if time.monotonic() > deadline:
                    self.error = "timed out"
                    break
                if all(n.state in ("done", "failed") for n in self.launcher.local):
                    self.error = "the pipeline ended early (see the node errors above)"
                    break
                poller.poll(100)
                arrival = now_us()
                for message in predictions.receive():
                    if message.end:
                        continue
                    latency = dict(kinds.Prediction.read(message).latency_ms)
                    latency["subscriber"] = (arrival - message.t) / 1000
                    self.predictions.append(Prediction(message.t, message.seq, arrival, latency))
                    if self.first_prediction is None:
                        self.first_prediction = arrival
                for name, monitor in monitors.items():
                    for message in monitor.receive():
                        cpu = {node: cpu_seconds(pid) for node, pid in self.pids().items()}
                        cpu["bench"] = time.process_time()
                        snapshot = Snapshot(message.t, kinds.Stats.read(message), cpu)
                        self.stats[name].append(snapshot)
                if finished(self):
                    break
        finally:
            self.prediction_gaps = predictions.health.gaps
            predictions.close()
            for monitor in monitors.values():
                monitor.close()
            context.term()
            self.launcher.request_stop()


def run_pipeline(path: Path, finished: Any, timeout: float) -> Collector:
    """Run ``path`` under a :class:`Launcher` until ``finished(collector)`` or ``timeout``."""
    launcher = Launcher(load_pipeline(path), duration=timeout + 30, status="off")
    collector = Collector(launcher, timeout)
    thread = threading.Thread(target=collector.run, args=(finished,), daemon=True)
    thread.start()
    launcher.run()
    collector.done.set()
    thread.join(timeout=30)
    return collector


def snapshot_at(snapshots: list[Snapshot], t: int) -> Snapshot | None:
    """The first stats message at or after ``t``."""
    return next((s for s in snapshots if s.t >= t), None)


def snapshot_before(snapshots: list[Snapshot], t: int) -> Snapshot | None:
    """The last stats message at or before ``t``."""
    return next((s for s in reversed(snapshots) if s.t <= t), None)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "mean": float(array.mean()),
        "max": float(array.max()),
    }


# ------------------------------------------------------------------------------------ video


class VideoWindow:
    """Stop rule: warm-up after the first prediction, ``seconds`` between two camera stats,
    then ``drain`` seconds for the predictions of the window's last frames."""

    def __init__(self, warmup: float, seconds: float, drain: float) -> None:
        self.warmup_us = int(warmup * 1e6)
        self.seconds_us = int(seconds * 1e6)
        self.drain_us = int(drain * 1e6)
        self.start: Snapshot | None = None
        self.end: Snapshot | None = None

    def __call__(self, c: Collector) -> bool:
        if c.first_prediction is None:
            return False
        camera = c.stats["camera"]
        if self.start is None:
            self.start = snapshot_at(camera, c.first_prediction + self.warmup_us)
            return False
        if self.end is None:
            self.end = snapshot_at(camera, self.start.t + self.seconds_us)
            return False
        return now_us() > self.end.t + self.drain_us


def input_counts(stats: kinds.Stats) -> dict[str, int]:
    inputs = stats.inputs.values()
    return {
        "received": sum(i["received"] for i in inputs),
        "dropped": sum(i["dropped"] for i in inputs),
        "gaps": sum(i["gaps"] for i in inputs),
        "invalid": sum(sum(i["invalid"].values()) for i in inputs),
    }


def node_rows(c: Collector, start: Snapshot, end: Snapshot) -> dict[str, dict[str, Any]]:
    rows = {}
    for name, snapshots in c.stats.items():
        a, b = snapshot_at(snapshots, start.t), snapshot_at(snapshots, end.t)
        if a is None or b is None:
            continue
        span = b.stats.uptime_s - a.stats.uptime_s
        busy = (b.stats.busy * b.stats.uptime_s - a.stats.busy * a.stats.uptime_s) / span
        cpu_a, cpu_b = a.cpu.get(name), b.cpu.get(name)
        before, after = input_counts(a.stats), input_counts(b.stats)
        extra_a, extra_b = a.stats.extra, b.stats.extra
        rows[name] = {
            "busy": busy,
            "cpu": (cpu_b - cpu_a) / span if cpu_a is not None and cpu_b is not None else None,
            **{k: after[k] - before[k] for k in after},
            **{
                key: int(extra_b.get(key, 0) - extra_a.get(key, 0))
                for key in ("dropped_steps", "steps", "compiled_steps")
            },
            "errors": sum(b.stats.errors.values()) - sum(a.stats.errors.values()),
            "inputs": {
                port: {
                    k: v - a.stats.inputs[port][k]
                    for k, v in snap.items()
                    if k in ("received", "dropped", "gaps")
                }
                for port, snap in b.stats.inputs.items()
            },
        }
    bench_a, bench_b = start.cpu.get("bench"), end.cpu.get("bench")
    if bench_a is not None and bench_b is not None:
        rows["bench"] = {"cpu": (bench_b - bench_a) / ((end.t - start.t) / 1e6)}
    return rows


def still_video(video: Path, noise: float, fps: float, folder: Path) -> Path:
    """Ten seconds of ``video``'s first frame with Gaussian sensor noise of ``noise`` grey
    levels (a still scene before a camera; the camera node loops it)."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(video))
    ok, first = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"video {video} holds no readable frame")
    out = folder / f"{video.stem}_still.mp4"
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    rng = np.random.default_rng(0)
    for _ in range(int(10 * fps)):
        noisy = first + rng.normal(0.0, noise, first.shape) if noise else first
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return out


def measure_video(folder: Path, video: Path, ckpt: Path, rate: float, args: Any) -> dict[str, Any]:
    path = video_pipeline(
        folder, video, ckpt, rate, args.model_params, args.steps_queue, True, args.camera_params
    )
    window = VideoWindow(args.warmup, args.seconds, args.drain)
    load_before = loadavg()
    c = run_pipeline(path, window, args.startup_timeout + args.warmup + args.seconds + 10)
    row: dict[str, Any] = {"rate": rate, "load_before": load_before, "load_after": loadavg()}
    if window.start is None or window.end is None:
        row["error"] = c.error or "no measurement window"
        return row
    start, end = window.start, window.end
    seconds = (end.t - start.t) / 1e6
    read = int(end.stats.extra["frames"] - start.stats.extra["frames"])
    held = end.stats.extra.get("still_frames_held", 0) - start.stats.extra.get(
        "still_frames_held", 0
    )
    frames = read - int(held)
    inside = [p for p in c.predictions if start.t < p.t <= end.t]
    out = len({p.t for p in inside})
    seqs = sorted(p.seq for p in inside)
    nodes = node_rows(c, start, end)
    dropped = sum(n.get("dropped", 0) + n.get("gaps", 0) for n in nodes.values())
    dropped_steps = sum(n.get("dropped_steps", 0) for n in nodes.values())
    row.update(
        {
            "seconds": seconds,
            "frames_in": frames,
            "frames_held_still": read - frames,
            "achieved_fps": read / seconds,
            "predictions_out": out,
            "lost": frames - out,
            "node_drops_and_gaps": dropped,
            "model_dropped_steps": int(dropped_steps),
            "subscriber_seq_gaps": (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0,
            "latency_ms": {
                stage: percentiles([p.latency[stage] for p in inside if stage in p.latency])
                for stage in STAGES
            },
            "nodes": nodes,
            "pipeline_cpu": sum(
                n["cpu"]
                for name, n in nodes.items()
                if name != "bench" and n.get("cpu") is not None
            ),
        }
    )
    row["zero_drops"] = row["lost"] == 0 and dropped == 0 and dropped_steps == 0
    row["sustained"] = row["zero_drops"] and row["achieved_fps"] >= 0.98 * rate
    return row


# -------------------------------------------------------------------------------------- dvs


class DvsWindow:
    """Stop rule: warm-up after the first prediction, then ``seconds`` of predictions."""

    def __init__(self, warmup: float, seconds: float) -> None:
        self.warmup_us = int(warmup * 1e6)
        self.seconds_us = int(seconds * 1e6)

    def __call__(self, c: Collector) -> bool:
        if c.first_prediction is None:
            return False
        return now_us() > c.first_prediction + self.warmup_us + self.seconds_us


def measure_dvs(
    folder: Path, recording: Path, ckpt: Path, window_us: int, args: Any
) -> dict[str, Any]:
    from respike.recorders import open_events

    reader = open_events(recording)
    times = [(int(p["t"][0]), int(p["t"][-1])) for p in reader.packets() if len(p)]
    duration_s = (times[-1][1] - times[0][0]) / 1e6
    events = sum(len(p) for p in open_events(recording).packets())
    path = dvs_pipeline(folder, recording, ckpt, window_us, args.model_params)
    rule = DvsWindow(args.warmup, args.dvs_seconds)
    c = run_pipeline(path, rule, args.startup_timeout + args.warmup + args.dvs_seconds + 10)
    row: dict[str, Any] = {
        "recording": recording.name,
        "duration_s": duration_s,
        "events": events,
    }
    if c.first_prediction is None:
        row["error"] = c.error or "no prediction"
        return row
    begin = c.first_prediction + rule.warmup_us
    inside = [p for p in c.predictions if p.arrival >= begin]
    if len(inside) < 2:
        row["error"] = "fewer than two predictions in the window"
        return row
    first, last = inside[0], inside[-1]
    seconds = (last.arrival - first.arrival) / 1e6
    packets = last.seq - first.seq
    model = c.stats["model"]
    a, b = snapshot_at(model, first.arrival), snapshot_before(model, last.arrival)
    busy = cpu = None
    if a is not None and b is not None and b.stats.uptime_s > a.stats.uptime_s:
        span = b.stats.uptime_s - a.stats.uptime_s
        busy = (b.stats.busy * b.stats.uptime_s - a.stats.busy * a.stats.uptime_s) / span
        if a.cpu.get("model") is not None and b.cpu.get("model") is not None:
            cpu = (b.cpu["model"] - a.cpu["model"]) / span  # type: ignore[operator]
    rate = packets / seconds
    row.update(
        {
            "packets": packets,
            "seconds": seconds,
            "packets_per_s": rate,
            "x_real_time": rate * window_us / 1e6,
            "model_ms_p50": percentiles([p.latency.get("model", 0.0) for p in inside])["p50"],
            "model_busy": busy,
            "model_cpu": cpu,
        }
    )
    return row


# ------------------------------------------------------------------------------------- main


# ------------------------------------------------------------- respike run beside dora run


def looped_video(video: Path, seconds: float, fps: float, folder: Path) -> tuple[Path, int]:
    """``video`` repeated to ``seconds`` at ``fps`` (an mp4 played once, so both runtimes get
    the same frames and end on their own); returns the file and its frame count."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    count = round(seconds * fps)
    height, width = frames[0].shape[:2]
    out = folder / f"{video.stem}_{count}.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(count):
        writer.write(frames[i % len(frames)])
    writer.release()
    return out, count


def tree_cpu(root: int) -> dict[str, tuple[float, str]]:
    """CPU seconds of ``root`` and every process below it, by pid: with the respike node name
    (``--name``) or, for the runtime itself and its helpers, ``runtime``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        words = [a.decode(errors="replace") for a in args if a]
        node = "--name" in words and words.index("--name") + 1 < len(words)
        name = words[words.index("--name") + 1] if node else "runtime"
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
        table[int(entry.name)] = (int(fields[1]), cpu, name)
    below = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _, _) in table.items():
            if parent in below and pid not in below:
                below.add(pid)
                grew = True
    return {str(pid): table[pid][1:] for pid in below if pid in table}


def measure_runtime(
    runtime: str, pipeline: Path, frames: int, timeout: float, round_: int = 0
) -> dict[str, Any]:
    """Run ``pipeline`` to its end under ``respike run`` or (exported) ``dora run``: frames in,
    predictions out, capture → prediction latency, CPU per node."""
    import subprocess

    from respike.nodes.dora import export_dataflow

    folder = pipeline.parent / f"{runtime}-{round_}"
    folder.mkdir()
    if runtime == "dora":
        dataflow = folder / "dataflow.yml"
        dataflow.write_text(export_dataflow(load_pipeline(pipeline)))
        command = ["dora", "run", str(dataflow)]
    else:
        command = [sys.executable, "-m", "respike.nodes.cli", "run", str(pipeline)]
        command += ["--status", "off"]
    out = (folder / "stdout").open("w")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    begin = time.monotonic()
    process = subprocess.Popen(
        command, cwd=folder, stdout=out, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    samples: list[tuple[float, dict[str, tuple[float, str]]]] = []
    while process.poll() is None and time.monotonic() - begin < timeout:
        samples.append((time.monotonic(), tree_cpu(process.pid)))
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
        raise SystemExit(f"{runtime} run did not end within {timeout} s")
    out.close()
    wall = time.monotonic() - begin
    if runtime == "dora":
        (log,) = folder.glob("out/*/log_print.jsonl")
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        printed = [e["msg"] for e in lines if e.get("stream") == "stdout"]
    else:
        printed = (folder / "stdout").read_text().splitlines()
    predictions = [json.loads(line) for line in printed if line.startswith("{")]
    e2e = [p["meta"]["latency_ms"]["e2e"] for p in predictions]
    model = [p["meta"]["latency_ms"]["model"] for p in predictions]
    # CPU share per node in steady state: each process from the first sample after 40 % of the
    # run (every node started, the clip playing) to the last sample it was seen in.
    start = next(i for i, (t, _) in enumerate(samples) if t - begin >= 0.4 * wall)
    spans: dict[str, tuple[float, float, float, float, str]] = {}
    for t, table in samples[start:]:
        for pid, (seconds, name) in table.items():
            t0, c0 = spans[pid][:2] if pid in spans else (t, seconds)
            if name == "runtime" and pid in spans:  # a cmdline read mid-exec: keep the node's
                name = spans[pid][4]
            spans[pid] = (t0, c0, t, seconds, name)
    per_node: dict[str, float] = {}
    for t0, c0, t1, c1, name in spans.values():
        if t1 > t0:
            per_node[name] = per_node.get(name, 0.0) + (c1 - c0) / (t1 - t0)
    return {
        "runtime": runtime,
        "command": " ".join(command),
        "frames_in": frames,
        "predictions_out": len(predictions),
        "lost": frames - len(predictions),
        "e2e_ms": percentiles(e2e),
        "model_ms": percentiles(model),
        "cpu_share": {name: round(share, 3) for name, share in sorted(per_node.items())},
        "wall_s": round(wall, 2),
        "exit": process.returncode,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="video file")
    parser.add_argument("--size", default="640x480", help="frame size WxH the video is played at")
    parser.add_argument(
        "--checkpoint", default="actions", help="residual checkpoint (path or shipped name)"
    )
    parser.add_argument(
        "--rates", default="30,60,90,120,150", help="camera frame rates to sweep (fps)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after 1st prediction")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to collect late ones")
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds to the first prediction"
    )
    parser.add_argument("--dvs", type=Path, default=DEFAULT_DVS, help="folder of recordings")
    parser.add_argument(
        "--dvs-recordings", default="", help="stems to replay, e.g. 1,2 (default: all)"
    )
    parser.add_argument(
        "--dvs-checkpoint", default="gestures-dvs", help="event checkpoint (path or name)"
    )
    parser.add_argument(
        "--dvs-size", type=int, default=64, help="SNN size of the stand-in event model (px)"
    )
    parser.add_argument("--dvs-window-us", type=int, default=33_333, help="packet duration")
    parser.add_argument("--dvs-seconds", type=float, default=5.0, help="measured s per recording")
    parser.add_argument("--no-dvs", action="store_true", help="skip the DVS replay")
    parser.add_argument("--no-video", action="store_true", help="skip the video sweep")
    parser.add_argument(
        "--scenes",
        default="moving",
        help="video sweeps to run: moving (the clip), still (its first frame with sensor noise)",
    )
    parser.add_argument(
        "--still-noise",
        type=float,
        default=2.0,
        help="sensor noise of the still scene (grey levels)",
    )
    parser.add_argument(
        "--steps-queue",
        type=int,
        default=4,
        help="live queue of the model's steps input (4 as in pipelines/video.toml)",
    )
    parser.add_argument(
        "--model-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra model node parameter, e.g. energy=false, compile=true, threads=2",
    )
    parser.add_argument(
        "--camera-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="camera node parameter; default: the still_* ones of pipelines/webcam.toml "
        "(still_below=-1: send every frame)",
    )
    parser.add_argument(
        "--runtimes",
        default="",
        help="instead of the sweep: the video pipeline played once (--seconds at the first of "
        "--rates) under each of these runtimes side by side, e.g. respike,dora",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.add_argument(
        "--tables", type=Path, help="only print the tables of a saved --json summary"
    )
    args = parser.parse_args(argv)
    args.model_params, args.camera_params = {}, webcam_still_params()
    for flag, items, params in (
        ("--model-param", args.model_param, args.model_params),
        ("--camera-param", args.camera_param, args.camera_params),
    ):
        for item in items:
            name, sep, value = item.partition("=")
            if not sep:
                parser.error(f"{flag} {item!r}: expected NAME=VALUE")
            params[name] = value
    return args


def webcam_still_params() -> dict[str, Any]:
    """The camera's ``still_*`` parameters in ``pipelines/webcam.toml``: the bench's camera goes
    quiet before a still scene as the live demo's does."""
    import tomllib

    pipeline = tomllib.loads((ROOT / "pipelines" / "webcam.toml").read_text())
    params = pipeline["nodes"]["source"]["params"]
    return {name: value for name, value in params.items() if name.startswith("still_")}


def print_tables(summary: dict[str, Any]) -> None:
    print(f"video: {summary.get('video', '-')}  checkpoint: {summary.get('checkpoint', '-')}")
    print(f"{summary['date']}, load average {' '.join(summary['load_start'])} at the start")
    if summary["model_params"]:
        print(f"model node parameters: {summary['model_params']}")
    if summary.get("camera_params"):
        print(f"camera node parameters: {summary['camera_params']}")
    if summary.get("steps_queue", 1) != 1:
        print(f"model steps input queue: {summary['steps_queue']}")
    rows = summary["rates"]
    print(
        f"\n{'scene':>6} {'fps':>5} {'achieved':>8} {'frames in':>9} {'held':>5} {'preds out':>9} "
        f"{'lost':>5} "
        f"{'drops+gaps':>10} {'drop steps':>10} {'e2e p50':>8} {'e2e p99':>8} {'sustained':>9} "
        f"{'load':>9} {'pipeline cpu':>12}"
    )
    for r in rows:
        scene = r.get("scene", "moving")
        if "error" in r:
            print(f"{scene:>6} {r['rate']:>5g} error: {r['error']}")
            continue
        e2e = r["latency_ms"]["e2e"]
        print(
            f"{scene:>6} {r['rate']:>5g} {r['achieved_fps']:>8.1f} {r['frames_in']:>9} "
            f"{r.get('frames_held_still', 0):>5} "
            f"{r['predictions_out']:>9} {r['lost']:>5} {r['node_drops_and_gaps']:>10} "
            f"{int(r['model_dropped_steps']):>10} {e2e['p50']:>8.1f} {e2e['p99']:>8.1f} "
            f"{'yes' if r['sustained'] else 'no':>9} "
            f"{r['load_before']:>4.1f}-{r['load_after']:<4.1f} "
            f"{r.get('pipeline_cpu', 0.0) * 100:>11.0f}%"
        )
    for r in rows:
        if "error" in r:
            continue
        print(
            f"\nlatency, {r.get('scene', 'moving')} scene at {r['rate']:g} fps "
            f"(ms; {r['predictions_out']} predictions)"
        )
        print(f"{'stage':>10} {'p50':>8} {'p99':>8} {'mean':>8} {'max':>8}")
        for stage, p in r["latency_ms"].items():
            if p:
                print(
                    f"{stage:>10} {p['p50']:>8.2f} {p['p99']:>8.2f} {p['mean']:>8.2f} "
                    f"{p['max']:>8.2f}"
                )
        print(f"{'node':>10} {'busy':>6} {'cpu':>6} {'recv':>6} {'dropped':>7} {'gaps':>5}")
        for name, n in r["nodes"].items():
            cpu = f"{n['cpu'] * 100:.0f}%" if n.get("cpu") is not None else "-"
            if name == "bench":
                print(f"{name:>10} {'-':>6} {cpu:>6}")
                continue
            compiled = ""
            if n.get("steps"):
                compiled = f"  ({n.get('compiled_steps', 0)} of {n['steps']} steps compiled)"
            print(
                f"{name:>10} {n['busy'] * 100:>5.0f}% {cpu:>6} {n['received']:>6} "
                f"{n['dropped']:>7} {n['gaps']:>5}{compiled}"
            )
    if summary.get("dvs"):
        window = summary.get("dvs_window_us", 33_333)
        print(
            f"\nDVS replay (speed 0, lossless, {window} us packets), "
            f"checkpoint: {summary['dvs_checkpoint']}"
        )
        print(
            f"{'recording':>10} {'events':>8} {'packets':>7} {'pkt/s':>7} {'x real':>7} "
            f"{'model ms':>8} {'busy':>5} {'cpu':>5}"
        )
        for r in summary["dvs"]:
            if "error" in r:
                print(f"{r['recording']:>10} error: {r['error']}")
                continue
            busy = f"{r['model_busy'] * 100:.0f}%" if r["model_busy"] is not None else "-"
            cpu = f"{r['model_cpu'] * 100:.0f}%" if r["model_cpu"] is not None else "-"
            print(
                f"{r['recording']:>10} {r['events']:>8} {r['packets']:>7} "
                f"{r['packets_per_s']:>7.1f} {r['x_real_time']:>7.2f} {r['model_ms_p50']:>8.2f} "
                f"{busy:>5} {cpu:>5}"
            )
    print("\ntargets:")
    for name, value in summary["targets"].items():
        print(f"  {name}: {value}")


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    moving = [r for r in summary["rates"] if r.get("scene", "moving") == "moving"]
    at30 = next((r for r in moving if r["rate"] == 30 and "error" not in r), None)
    if at30 is not None:
        e2e = at30["latency_ms"]["e2e"]
        result["0 drops at 30 fps"] = f"{at30['zero_drops']} (lost {at30['lost']})"
        result["p50 <= 15 ms"] = f"{e2e['p50'] <= 15} ({e2e['p50']:.1f} ms)"
        result["p99 <= 30 ms"] = f"{e2e['p99'] <= 30} ({e2e['p99']:.1f} ms)"
    sustained = [r["rate"] for r in moving if r.get("sustained")]
    for still in summary["rates"]:
        same = next((r for r in moving if r["rate"] == still["rate"] and "error" not in r), None)
        if still.get("scene") == "still" and "error" not in still and same is not None:
            share = still["pipeline_cpu"] / same["pipeline_cpu"]
            result[f"still scene CPU <= 20 % of moving at {still['rate']:g} fps"] = (
                f"{share <= 0.2} ({share:.0%}: {still['pipeline_cpu']:.0%} against "
                f"{same['pipeline_cpu']:.0%} of a core)"
            )
    if moving:
        best = max(sustained, default=0)
        result["highest rate sustained"] = f"{best:g} fps (>= 120: {best >= 120})"
    good = [r["x_real_time"] for r in summary.get("dvs", []) if "error" not in r]
    if good:
        result["replay x real time"] = (
            f"min {min(good):.2f}, median {float(np.median(good)):.2f} (>= 20: {min(good) >= 20})"
        )
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.tables is not None:
        print_tables(json.loads(args.tables.read_text()))
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = Path(tempfile.mkdtemp(prefix="rs-e2e-"))
    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_start": Path("/proc/loadavg").read_text().split()[:3],
        "model_params": args.model_params,
        "camera_params": args.camera_params,
        "steps_queue": args.steps_queue,
        "rates": [],
        "dvs": [],
    }
    if args.runtimes:
        video = make_video(args.input, width, height, 30.0, folder)
        ckpt, about = checkpoint(args.checkpoint, "actions", folder)
        rate = float(args.rates.split(",")[0])
        looped, frames = looped_video(video, args.seconds, rate, folder)
        pipeline = video_pipeline(folder, looped, ckpt, rate, {}, loop=False)
        summary.update({"video": f"{args.input} as {width}x{height}", "checkpoint": about})
        summary["runtimes"] = []
        for i, runtime in enumerate(args.runtimes.split(",")):
            print(f"[e2e] {runtime} run at {rate:g} fps ...", file=sys.stderr, flush=True)
            timeout = args.seconds * 3 + 120
            summary["runtimes"].append(measure_runtime(runtime, pipeline, frames, timeout, i))
        summary["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
        print(json.dumps(summary, default=float, indent=None if args.json else 1))
        return
    if not args.no_video:
        video = make_video(args.input, width, height, 30.0, folder)
        ckpt, about = checkpoint(args.checkpoint, "actions", folder)
        summary.update({"video": f"{args.input} as {width}x{height}", "checkpoint": about})
        scenes = {"moving": video, "still": None}
        for scene in args.scenes.split(","):
            if scene not in scenes:
                raise SystemExit(f"--scenes: {scene!r}; expected moving or still")
            played = scenes[scene] or still_video(video, args.still_noise, 30.0, folder)
            for rate in (float(r) for r in args.rates.split(",")):
                print(f"[e2e] {scene} video at {rate:g} fps ...", file=sys.stderr, flush=True)
                row = measure_video(folder, played, ckpt, rate, args)
                summary["rates"].append({"scene": scene, **row})
    if not args.no_dvs:
        ckpt, about = checkpoint(args.dvs_checkpoint, "gestures-dvs", folder, args.dvs_size)
        summary["dvs_checkpoint"] = about
        summary["dvs_window_us"] = args.dvs_window_us
        wanted = {s for s in args.dvs_recordings.split(",") if s}
        recordings = sorted(
            (p for p in args.dvs.glob("*.bs2") if not wanted or p.stem in wanted),
            key=lambda p: int(p.stem) if p.stem.isdigit() else 0,
        )
        for recording in recordings:
            print(f"[e2e] dvs replay of {recording.name} ...", file=sys.stderr, flush=True)
            summary["dvs"].append(measure_dvs(folder, recording, ckpt, args.dvs_window_us, args))
    summary["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
    summary["targets"] = targets(summary)
    if args.json:
        print(json.dumps(summary, default=float))
    else:
        print_tables(summary)


if __name__ == "__main__":
    main()
