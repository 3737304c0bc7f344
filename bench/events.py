"""Benchmark of the frame-to-event kernels: frames/s and Mevents/s, numba vs numpy vs OpenCV.

The first ``--frames`` frames of a video are resized to each ``--sizes`` entry (outside the
timing) and fed, one frame at a time with fresh state, to:

- DVS emulation with the default settings: respike's numba kernel, its numpy reference, and an
  OpenCV formulation of the same model (cvtColor, LUT, subtract, compare and findNonZero for the
  dense work, numpy for the per-event work); the same on the first frame repeated (no event:
  the per-pixel floor of the cost, beside a copy of each frame: the floor of any per-frame
  work); and with every option on (threshold mismatch, refractory period, leak, shot noise),
  numba vs numpy only; the default and every-option runs also on ``--threads`` threads
  (``DvsEmulator(threads=...)``, whose packets are checked identical to one thread's);
- ReSpike residuals, grey at frame size (the defaults) and RGB area-downsampled to 128x128
  (a model input): numba, numpy reference, OpenCV (cvtColor, resize INTER_AREA, subtract);
- binning of the emulated event packets into (4, 2, 128, 128) counts: numba vs numpy.

One thread everywhere but the threaded rows (BLAS and OpenMP pools of one thread,
cv2.setNumThreads(1); numba's pool has the cores this process may use, for those rows only),
best of ``--repeat`` runs after one warm-up run (numpy reference: ``--numpy-repeat`` runs).
The process's heap is set as a node's (``keep_freed_buffers``) unless ``--heap glibc``.
Each rate is given by wall time and by the process's CPU time (all its threads), which is
steadier on a machine shared with other work. First-call latency (import, first frames, warm_up()) is measured in fresh subprocesses,
first with an empty numba cache (compilation), then with that cache filled (cache load).

    python bench/events.py
    python bench/events.py --input clip.mp4 --frames 60 --sizes 640x480 --json
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ["NUMBA_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))  # the threaded rows' pool

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from respike.events import warm_up  # noqa: E402
from respike.events.binning import EventFrames  # noqa: E402
from respike.events.emulator import DvsEmulator, grid_thresholds, log_table  # noqa: E402
from respike.events.residual import ResidualFrames  # noqa: E402
from respike.events.types import EventArray, empty_events  # noqa: E402
from respike.nodes.runtime import keep_freed_buffers  # noqa: E402
from respike.recorders.video import read_frames  # noqa: E402

cv2.setNumThreads(1)

SHARED = Path(
    os.environ.get("RESPIKE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
DEFAULT_INPUT = SHARED / "videos" / "kinetics_arm_wrestling.mp4"
ALL_OPTIONS = DvsEmulator(
    threshold_mismatch=0.03, refractory_us=1_000, leak_rate_hz=0.1, shot_noise_rate_hz=0.1, seed=1
)


class OpenCvDvs:
    """The default DVS model written the OpenCV way: dense steps in cv2, sparse ones in numpy.

    Same arithmetic as the kernel (float32 log reference, thresholds on the same grid, crossings
    by division, crossing times on the straight line between frames), so its packets can be
    compared with respike's.
    """

    def __init__(self, on: float = 0.2, off: float = 0.2) -> None:
        self.on, self.off = grid_thresholds([on])[0], grid_thresholds([off])[0]
        self.lut = log_table(20.0, 256).reshape(1, 256)
        self.ref: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, t: int) -> EventArray:
        log_now = cv2.LUT(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), self.lut)
        if self.ref is None:
            self.ref, self.prev, self.t = log_now.copy(), log_now, t
            return empty_events(0)
        d1 = cv2.subtract(log_now, self.ref)
        active = cv2.bitwise_or(
            cv2.compare(d1, float(self.on), cv2.CMP_GE),
            cv2.compare(d1, -float(self.off), cv2.CMP_LE),
        )
        where = cv2.findNonZero(active)
        t0, dt = self.t, t - self.t
        self.t = t
        if where is None:
            self.prev = log_now
            return empty_events(0)
        where = where.reshape(-1, 2)  # (N, 1, 2) in OpenCV 4, (N, 2) in OpenCV 5
        x, y = where[:, 0], where[:, 1]
        d1_act = d1[y, x]
        up = d1_act > 0
        c = np.where(up, self.on, self.off)
        n = (np.abs(d1_act) / c).astype(np.int64)
        d0 = (self.prev[y, x] - self.ref[y, x]).astype(np.float64)
        self.ref[y, x] += np.where(up, n, -n).astype(np.float32) * c
        self.prev = log_now
        # One row per event: pixel index repeated n times, crossing number k = 1..n.
        pixel = np.repeat(np.arange(n.shape[0]), n)
        k = np.arange(pixel.shape[0]) - np.repeat(np.cumsum(n) - n, n) + 1
        sign = np.where(up[pixel], 1.0, -1.0)
        denom = d1_act[pixel].astype(np.float64) - d0[pixel]
        inv = 1.0 / np.where(denom != 0.0, denom, 1.0)
        frac = (sign * k * c[pixel].astype(np.float64) - d0[pixel]) * inv
        frac = np.clip(np.where(denom != 0.0, frac, 1.0), 0.0, 1.0)
        offset = np.minimum((frac * dt).astype(np.int64), dt - 1)
        order = np.argsort(offset, kind="stable")
        events = empty_events(order.shape[0])
        events["t"] = t0 + offset[order]
        events["x"] = x[pixel][order]
        events["y"] = y[pixel][order]
        events["p"] = up[pixel][order]
        return events


class OpenCvResiduals:
    """ReSpike residuals the OpenCV way: cvtColor, resize INTER_AREA, subtract, divide."""

    def __init__(self, stride: int = 4, size: tuple[int, int] | None = None, rgb: bool = False):
        self.stride, self.size, self.rgb = stride, size, rgb
        self.index = 0
        self.key: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.size is not None:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if self.rgb else cv2.COLOR_BGR2GRAY)
        if self.index % self.stride == 0:
            self.key = image
        self.index += 1
        residual = cv2.divide(cv2.subtract(image, self.key, dtype=cv2.CV_32F), 255.0)
        if self.rgb:
            return np.stack(cv2.split(residual))
        return residual[None]


def timed(run: Callable[[], int], repeat: int) -> dict[str, float]:
    """Best wall and process-CPU seconds (all threads) of ``repeat`` runs after one warm-up;
    and the count."""
    count = run()
    wall = cpu = float("inf")
    for _ in range(repeat):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        count = run()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return {"wall_s": wall, "cpu_s": cpu, "events": count}


def dvs_run(
    step: Callable[..., Any], frames: list[np.ndarray], times: list[int], state: Any = None
) -> int:
    """Events of the frames through ``step``, continuing ``state`` (None: a new stream)."""
    count = 0
    for frame, t in zip(frames, times, strict=True):
        events, state = step(frame, t, state)
        count += events.shape[0]
    return count


def copy_run(frames: list[np.ndarray]) -> int:
    """The floor of any per-frame work: one copy of each frame into a new array."""
    for frame in frames:
        frame.copy()
    return 0


def opencv_dvs_run(frames: list[np.ndarray], times: list[int]) -> int:
    dvs, count = OpenCvDvs(), 0
    for frame, t in zip(frames, times, strict=True):
        count += dvs(frame, t).shape[0]
    return count


def residual_run(step: Callable[..., Any], frames: list[np.ndarray]) -> int:
    state = None
    for frame in frames:
        _, state = step(frame, state)
    return 0


def opencv_residual_run(frames: list[np.ndarray], size: tuple[int, int] | None, rgb: bool) -> int:
    residuals = OpenCvResiduals(size=size, rgb=rgb)
    for frame in frames:
        residuals(frame)
    return 0


def agreement(frames: list[np.ndarray], times: list[int], threads: int) -> dict[str, Any]:
    """How the OpenCV formulations' outputs, and the threaded emulator's, compare with
    respike's single-threaded ones on these frames."""
    dvs, state, cv_dvs, same = DvsEmulator(), None, OpenCvDvs(), True
    threaded, threaded_state, same_threaded = DvsEmulator(threads=threads), None, True
    for frame, t in zip(frames, times, strict=True):
        events, state = dvs(frame, t, state)
        same = same and events.tobytes() == cv_dvs(frame, t).tobytes()
        many, threaded_state = threaded(frame, t, threaded_state)
        same_threaded = same_threaded and many.tobytes() == events.tobytes()
    diffs = {}
    for name, ours, theirs in (
        ("residual_grey", ResidualFrames(), OpenCvResiduals()),
        (
            "residual_rgb_128",
            ResidualFrames(color="rgb", size=(128, 128)),
            OpenCvResiduals(4, (128, 128), True),
        ),
    ):
        res_state, worst = None, 0.0
        for frame in frames:
            out, res_state = ours(frame, res_state)
            worst = max(worst, float(np.abs(out - theirs(frame)).max()))
        diffs[name] = worst
    return {
        "opencv_dvs_identical_packets": same,
        "threaded_dvs_identical_packets": same_threaded,
        "opencv_residual_max_abs_diff": diffs,
    }


FIRST_CALL = """
import json, time
start = time.perf_counter()
import numpy as np
from respike.events.emulator import DvsEmulator
from respike.events.residual import ResidualFrames
from respike.events.warmup import warm_up
imported = time.perf_counter()
rng = np.random.default_rng(0)
a, b = (rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(2))
dvs = DvsEmulator()
_, state = dvs(a, 0)
dvs(b, 33333, state)
dvs_done = time.perf_counter()
residuals = ResidualFrames()
_, rstate = residuals(a)
residuals(b, rstate)
residual_done = time.perf_counter()
warm = warm_up()
print(json.dumps({"import_s": imported - start, "first_dvs_pair_s": dvs_done - imported,
                  "first_residual_pair_s": residual_done - dvs_done, "warm_up_s": warm}))
"""


def first_call_latency() -> dict[str, dict[str, float]]:
    """Import, first 640x480 frame pairs and warm_up() in fresh processes: compile, then load."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("empty_cache", "filled_cache"):
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALL],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def bench_size(
    frames: list[np.ndarray], times: list[int], size: tuple[int, int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    resized = [
        cv2.resize(
            f,
            size,
            interpolation=cv2.INTER_AREA if size[0] < f.shape[1] else cv2.INTER_LINEAR,
        )
        for f in frames
    ]
    rows: list[dict[str, Any]] = []

    def add(stage: str, impl: str, run: Callable[[], int], repeat: int) -> None:
        result = timed(run, repeat)
        rows.append({"size": f"{size[0]}x{size[1]}", "stage": stage, "impl": impl, **result})

    dvs = DvsEmulator()
    threaded = DvsEmulator(threads=args.threads)
    many = f"numba {args.threads} threads"
    add("dvs", "numba", lambda: dvs_run(dvs, resized, times), args.repeat)
    add("dvs", many, lambda: dvs_run(threaded, resized, times), args.repeat)
    add("dvs", "numpy", lambda: dvs_run(dvs.reference, resized, times), args.numpy_repeat)
    add("dvs", "opencv", lambda: opencv_dvs_run(resized, times), args.repeat)
    # Unchanged frames in a running stream: the stream starts on the frame before the timing.
    static = [resized[0]] * len(resized)
    before = times[0] - (times[1] - times[0])
    running = dvs(static[0], before)[1]
    running_reference = dvs.reference(static[0], before)[1]
    add(
        "dvs unchanged frames",
        "numba",
        lambda: dvs_run(dvs, static, times, running),
        args.repeat,
    )
    add("dvs unchanged frames", "copy floor", lambda: copy_run(static), args.repeat)
    add(
        "dvs unchanged frames",
        "numpy",
        lambda: dvs_run(dvs.reference, static, times, running_reference),
        args.numpy_repeat,
    )
    add("dvs all options", "numba", lambda: dvs_run(ALL_OPTIONS, resized, times), args.repeat)
    all_threaded = dataclasses.replace(ALL_OPTIONS, threads=args.threads)
    add("dvs all options", many, lambda: dvs_run(all_threaded, resized, times), args.repeat)
    add(
        "dvs all options",
        "numpy",
        lambda: dvs_run(ALL_OPTIONS.reference, resized, times),
        args.numpy_repeat,
    )
    grey = ResidualFrames()
    add("residual grey", "numba", lambda: residual_run(grey, resized), args.repeat)
    add("residual grey", "numpy", lambda: residual_run(grey.reference, resized), args.numpy_repeat)
    add("residual grey", "opencv", lambda: opencv_residual_run(resized, None, False), args.repeat)
    rgb = ResidualFrames(color="rgb", size=(128, 128))
    add("residual rgb 128x128", "numba", lambda: residual_run(rgb, resized), args.repeat)
    add(
        "residual rgb 128x128",
        "numpy",
        lambda: residual_run(rgb.reference, resized),
        args.numpy_repeat,
    )
    add(
        "residual rgb 128x128",
        "opencv",
        lambda: opencv_residual_run(resized, (128, 128), True),
        args.repeat,
    )
    packets, state = [], None
    for frame, t in zip(resized, times, strict=True):
        events, state = dvs(frame, t, state)
        packets.append((events, t))
    binning = EventFrames(sensor_size=size, n_time_bins=4, size=(128, 128))
    bounds = list(zip([times[0], *times[:-1]], times, strict=True))

    def bin_all(step: Callable[..., np.ndarray]) -> int:
        count = 0
        for (events, _), (t0, t1) in zip(packets, bounds, strict=True):
            if t1 > t0:
                count += int(step(events, t0, t1).sum())
        return count

    add("binning (4,2,128,128)", "numba", lambda: bin_all(binning), args.repeat)
    add("binning (4,2,128,128)", "numpy", lambda: bin_all(binning.reference), args.numpy_repeat)
    n = len(resized)
    for row in rows:
        row["frames"] = n
        row["fps_wall"] = n / row["wall_s"]
        row["fps_cpu"] = n / row["cpu_s"]
        row["mevents_s_wall"] = row["events"] / row["wall_s"] / 1e6
        row["events_per_frame"] = row["events"] / n
    for row in rows:
        numpy_row = next(r for r in rows if r["stage"] == row["stage"] and r["impl"] == "numpy")
        row["x_numpy_wall"] = numpy_row["wall_s"] / row["wall_s"]
        row["x_numpy_cpu"] = numpy_row["cpu_s"] / row["cpu_s"]
    return rows


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| size | stage | impl | frames/s (wall) | frames/s (CPU) | Mevents/s (wall) "
        "| events/frame | x numpy (wall) | x numpy (CPU) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        has_events = r["stage"].startswith(("dvs", "binning"))
        lines.append(
            f"| {r['size']} | {r['stage']} | {r['impl']} | {r['fps_wall']:,.0f} | "
            f"{r['fps_cpu']:,.0f} | {r['mevents_s_wall']:.1f} | "
            f"{r['events_per_frame']:,.0f} | {r['x_numpy_wall']:.1f} | {r['x_numpy_cpu']:.1f} |"
            if has_events
            else f"| {r['size']} | {r['stage']} | {r['impl']} | {r['fps_wall']:,.0f} | "
            f"{r['fps_cpu']:,.0f} | – | – | {r['x_numpy_wall']:.1f} | {r['x_numpy_cpu']:.1f} |"
        )
    first = report.get("first_call", {})
    if first:
        lines += [
            "",
            "| first call (fresh process) | import | first DVS frame pair 640x480 "
            "| first residual frame pair | warm_up() |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, v in first.items():
            lines.append(
                f"| {name.replace('_', ' ')} | {v['import_s']:.2f} s | "
                f"{v['first_dvs_pair_s'] * 1e3:,.0f} ms | {v['first_residual_pair_s'] * 1e3:,.0f} ms"
                f" | {v['warm_up_s']:.2f} s |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a video file")
    parser.add_argument("--frames", type=int, default=40, help="frames read from the video")
    parser.add_argument("--sizes", default="346x260,640x480,1280x720", help="WxH,WxH,...")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs, best kept")
    parser.add_argument("--numpy-repeat", type=int, default=1, help="timed runs of numpy")
    parser.add_argument("--threads", type=int, default=2, help="threads of the threaded rows")
    parser.add_argument("--no-first-call", action="store_true", help="skip the subprocesses")
    parser.add_argument(
        "--heap",
        choices=("node", "glibc"),
        default="node",
        help="node: the node runtime's heap setting (keep_freed_buffers); glibc: its defaults",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()
    if args.heap == "node":
        keep_freed_buffers()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    frames, fps = read_frames(args.input, args.frames)
    times = [round(i * 1e6 / fps) for i in range(len(frames))]
    load_before = os.getloadavg()
    warm_up()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rows += bench_size(frames, times, (size[0], size[1]), args)
    report: dict[str, Any] = {
        "input": str(args.input),
        "frames": len(frames),
        "video_fps": fps,
        "heap": args.heap,
        "machine": machine(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "agreement_640x480": agreement(
            [cv2.resize(f, (640, 480)) for f in frames[:10]], times[:10], args.threads
        ),
        "rows": rows,
    }
    if not args.no_first_call:
        report["first_call"] = first_call_latency()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(markdown(report))
        print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
