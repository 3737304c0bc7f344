"""Replay timing: how closely the `dvs` node's packets follow the recording's clock.

Runs the `dvs` node as its own process (as in a pipeline) on a recording at real time (or
``--speed``) and receives its packets here. Each packet's arrival is compared with its due
time on the recording's clock (recording time elapsed since the first packet, divided by the
speed); the error is the deviation from the median offset, i.e. the jitter of the pacing.
Reports the timing error p50/p99/max in ms and the packets per second, per window size.

    python bench/replay.py --input ../shared/data/dvs_gesture10/1.bs2 --windows 1000,10000 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from respike.stream import kinds
from respike.stream.sockets import Delivery, Subscriber

DEFAULT_INPUT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dvs_gesture10" / "1.bs2"
)


def measure(path: Path, window_us: int, speed: float) -> dict[str, float]:
    """Replay ``path`` in a node process and time every packet's arrival here."""
    folder = tempfile.mkdtemp(prefix="rs-bench-")
    endpoint = f"ipc://{folder}/dvs.sock"
    subscriber = Subscriber(endpoint, "dvs/events", delivery=Delivery.LOSSLESS)
    command = [
        sys.executable,
        "-m",
        "respike.nodes.cli",
        "node",
        "dvs",
        "--name",
        "dvs",
        "--output",
        endpoint,
        "--lossless-outputs",
        "--expect",
        "events=1",
        "--path",
        str(path),
        "--window-us",
        str(window_us),
        "--speed",
        str(speed),
    ]
    node = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    arrivals: list[float] = []
    ends: list[int] = []
    try:
        while True:
            batch = subscriber.receive(timeout=30.0)
            if not batch:
                raise RuntimeError("the dvs node stopped sending")
            now = time.monotonic()
            for message in batch:
                if message.end:
                    raise StopIteration
                arrivals.append(now)
                window_end = kinds.Events.read(message).window_end
                assert window_end is not None, "the dvs node stamps every packet's window"
                ends.append(window_end)
    except StopIteration:
        pass
    finally:
        subscriber.close()
        node.wait(timeout=30)
    got = np.asarray(arrivals)
    due = got[0] + (np.asarray(ends) - ends[0]) / 1e6 / speed
    lateness = got - due
    error_ms = np.abs(lateness - np.median(lateness)) * 1000  # jitter around the constant hop delay
    return {
        "window_us": window_us,
        "packets": len(got),
        "packets_per_s": len(got) / (got[-1] - got[0]) if len(got) > 1 else 0.0,
        "error_p50_ms": float(np.percentile(error_ms, 50)),
        "error_p99_ms": float(np.percentile(error_ms, 99)),
        "error_max_ms": float(error_ms.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input", type=Path, default=DEFAULT_INPUT, help="event recording to replay"
    )
    parser.add_argument("--windows", default="1000,10000,33000", help="packet durations in µs")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    args = parser.parse_args()
    rows = [measure(args.input, int(w), args.speed) for w in args.windows.split(",")]
    summary = {"input": str(args.input), "speed": args.speed, "rows": rows}
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"{'window µs':>10} {'packets':>8} {'pkt/s':>8} {'err p50 ms':>11} {'err p99 ms':>11} {'err max ms':>11}"
    )
    for row in rows:
        print(
            f"{row['window_us']:>10} {row['packets']:>8} {row['packets_per_s']:>8.0f} "
            f"{row['error_p50_ms']:>11.3f} {row['error_p99_ms']:>11.3f} {row['error_max_ms']:>11.3f}"
        )


if __name__ == "__main__":
    main()
