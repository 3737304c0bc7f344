"""Start-up: seconds from `respike demo` to its first prediction, cold and warm.

Cold is the first start after installing: numba's cache is empty (a fresh ``NUMBA_CACHE_DIR``),
so the residual node compiles its kernels, and so is the cache of compiled steps (a fresh
``RESPIKE_CACHE``), so the model node starts eager and builds its compiled step in the
background. Warm is the next start with both caches filled (the round waits for that build to
end first, as a user's next start usually comes later). Each
round runs the demo as a user would (``respike demo --no-viewer --json``, optionally on
``--input``), times the first JSON line on stdout from the moment the command starts, then stops
the demo with Ctrl-C (SIGINT) and checks it exits 0. The machine's load average is recorded
beside each round, since a busy second core stretches both numbers.

    python bench/startup.py --rounds 3 --json
    python bench/startup.py --input ../shared/data/videos/carphone.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FIRST_PREDICTION_TIMEOUT_S = 300.0


def first_prediction_s(source: Path | None, cache: Path, compiled_step: str = "auto") -> float:
    """Seconds from starting the demo to its first prediction; the demo is then stopped."""
    command = ["respike", "demo", "--no-viewer", "--json"]
    if source is not None:
        command += ["--source", str(source)]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache / "numba"), "RESPIKE_CACHE": str(cache)}
    env["RESPIKE_COMPILED_STEP"] = compiled_step
    begin = time.monotonic()
    demo = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        assert demo.stdout is not None
        line = demo.stdout.readline()
        seconds = time.monotonic() - begin
        if not line.startswith("{"):
            raise RuntimeError(f"the demo ended without a prediction (exit {demo.wait()})")
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"the demo exited {code} after Ctrl-C")
        return seconds
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def wait_for_builds(cache: Path, timeout: float = 300.0) -> bool:
    """Wait while a compiled step is being built in ``cache``; whether a package is there."""
    deadline = time.monotonic() + timeout
    steps = cache / "compiled-steps"
    while any(steps.glob("*.lock")) and time.monotonic() < deadline:
        time.sleep(0.5)
    return any(steps.glob("step-*.pt2"))


def run(rounds: int, source: Path | None, compiled_step: str = "auto") -> dict[str, Any]:
    results: list[dict[str, float]] = []
    for _ in range(rounds):
        cache = Path(tempfile.mkdtemp(prefix="rs-cache-"))
        try:
            load_cold = os.getloadavg()[0]
            cold = first_prediction_s(source, cache, compiled_step)
            built = wait_for_builds(cache)
            load_warm = os.getloadavg()[0]
            warm = first_prediction_s(source, cache, compiled_step)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        results.append(
            {
                "cold_s": cold,
                "warm_s": warm,
                "load_cold": load_cold,
                "load_warm": load_warm,
                "compiled_step_built": built,
            }
        )
    return {
        "source": str(source) if source else "synthetic (respike demo)",
        "rounds": results,
        "cold_s_median": statistics.median(r["cold_s"] for r in results),
        "warm_s_median": statistics.median(r["warm_s"] for r in results),
        "cpus": os.cpu_count(),
        "compiled_step": compiled_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input", type=Path, help="demo source (video or recording); default: synthetic"
    )
    parser.add_argument("--rounds", type=int, default=3, help="cold + warm start pairs")
    parser.add_argument(
        "--compiled-step", default="auto", help="the model node's compiled_step (auto, off, ...)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    summary = run(args.rounds, args.input, args.compiled_step)
    if args.json:
        print(json.dumps(summary))
        return
    print(f"source: {summary['source']}, compiled_step {summary['compiled_step']}")
    for i, r in enumerate(summary["rounds"], start=1):
        print(
            f"round {i}: cold {r['cold_s']:.1f} s (load {r['load_cold']:.2f}), "
            f"warm {r['warm_s']:.1f} s (load {r['load_warm']:.2f}), "
            f"compiled step {'built' if r['compiled_step_built'] else 'not built'} between"
        )
    print(f"median: cold {summary['cold_s_median']:.1f} s, warm {summary['warm_s_median']:.1f} s")


if __name__ == "__main__":
    main()
