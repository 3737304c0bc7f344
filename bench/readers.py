"""Benchmark of the event-file readers: Mevents/s per format beside the reference reader.

For each input file, respike's reader streams every packet (``open_events(path).packets()``),
reads the whole file into one array (``read_all()``), and the reference reader of that format
decodes the same file in the same process, one after the other, best of ``--repeat`` runs each
(after one warm-up run, so numba's cache load and the page cache are out of the numbers).
``read_all_ratio`` is respike's ``read_all`` time over the reference's (below 1: respike is
faster); for EVT2/EVT3/DAT the first reference is ``expelliarmus.Wizard(encoding=...).read``,
which also returns one array. References: ``expelliarmus.Wizard.read`` (what tonic's Prophesee
datasets call) and its chunked ``read_chunk`` for EVT2/EVT3/DAT, ``tonic.io.read_aedat4``,
``tonic.io.read_mnist_file``, ``numpy.load``, ``h5py`` slicing and ``numpy.loadtxt``; ROS bags
have no Python decoder to compare with, so their row shows what deserialising the messages with
rosbags alone costs (the floor under any decoder built on it).

    python bench/readers.py                      # one real file per format from ../shared/data
    python bench/readers.py --input rec.raw --input bag_folder --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from respike.recorders import open_events

SHARED = Path(
    os.environ.get("RESPIKE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
DEFAULT_INPUTS = (
    "prophesee/evt3_sample.raw",
    "prophesee/evt2_sample.raw",
    "tonic_samples/sample_ncars.dat",
    "tonic_samples/sample.aedat4",
    "dvs_gesture10/5.bs2",
    "prophesee/evt3_sample.npy",
    "rosbag2/test_data_evt3_trigger",
    "rosbag2/test_data_libcaer_rollover",
)
TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def best_time(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs after one warm-up; also returns the event count."""
    count = fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def ours(path: Path) -> Callable[[], int]:
    def run() -> int:
        return sum(p.shape[0] for p in open_events(path).packets())

    return run


def ours_read_all(path: Path) -> Callable[[], int]:
    def run() -> int:
        return int(open_events(path).read_all().shape[0])

    return run


def references(path: Path, fmt: str) -> list[tuple[str, Callable[[], int]]]:
    """The reference readers of ``fmt`` (name, callable returning the event count)."""
    if fmt in ("evt2", "evt3", "dat"):
        from expelliarmus import Wizard

        def full() -> int:
            arr = Wizard(encoding=fmt).read(path)
            return 0 if arr is None else int(arr.shape[0])

        def chunked() -> int:
            wizard = Wizard(encoding=fmt, fpath=path, chunk_size=1 << 16, buff_size=1 << 16)
            return sum(int(c.shape[0]) for c in wizard.read_chunk())

        return [("expelliarmus Wizard.read", full), ("expelliarmus read_chunk 64k", chunked)]
    if fmt == "aedat4":
        import tonic

        return [("tonic.io.read_aedat4", lambda: int(tonic.io.read_aedat4(str(path)).shape[0]))]
    if fmt == "nmnist":
        import tonic

        return [
            (
                "tonic.io.read_mnist_file",
                lambda: int(tonic.io.read_mnist_file(str(path), dtype=TONIC_DTYPE).shape[0]),
            )
        ]
    if fmt == "npy":
        return [("numpy.load", lambda: int(np.load(path).shape[0]))]
    if fmt == "hdf5":
        import h5py

        def h5() -> int:
            with h5py.File(path, "r") as f:
                group = f["events"]
                names = [n for n in ("t", "ts") if n in group]
                return int(group[names[0]][()].shape[0])

        return [("h5py read events/t", h5)]
    if fmt == "text":
        return [("numpy.loadtxt", lambda: int(np.loadtxt(path, ndmin=2).shape[0]))]
    if fmt in ("rosbag1", "rosbag2"):
        from rosbags.highlevel import AnyReader

        from respike.recorders.rosbag import event_typestore

        def deserialize_only() -> int:
            bag = path if path.is_dir() or path.suffix == ".bag" else path.parent
            with AnyReader([bag], default_typestore=event_typestore(fmt == "rosbag2")) as r:
                return sum(1 for c, _, raw in r.messages() if r.deserialize(raw, c.msgtype))

        return [("rosbags deserialize only (messages, no decoding)", deserialize_only)]
    return []


def machine() -> str:
    """CPU model name (lscpu's 'Model name'), for the results table."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(path: Path, repeat: int) -> dict[str, Any]:
    reader = open_events(path)
    fmt = reader.format
    seconds, count = best_time(ours(path), repeat)
    all_s, all_count = best_time(ours_read_all(path), repeat)
    if all_count != count:
        raise RuntimeError(f"{path}: read_all gave {all_count} events, packets {count}")
    row: dict[str, Any] = {
        "file": str(path),
        "format": fmt,
        "events": count,
        "respike_s": seconds,
        "respike_mev_s": count / seconds / 1e6,
        "respike_read_all_s": all_s,
        "references": [],
    }
    for name, fn in references(path, fmt):
        ref_s, ref_count = best_time(fn, repeat)
        unit = "messages" if fmt.startswith("rosbag") else "events"
        row["references"].append(
            {
                "reader": name,
                "seconds": ref_s,
                "count": ref_count,
                "count_unit": unit,
                "mev_s": count / ref_s / 1e6,
                "speedup": ref_s / seconds,
                "read_all_ratio": all_s / ref_s,
            }
        )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", type=Path, help="file or bag folder")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per reader (best)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    inputs = args.input or [SHARED / rel for rel in DEFAULT_INPUTS]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        parser.error(f"inputs not found: {', '.join(missing)}")
    rows = [bench(p, args.repeat) for p in inputs]
    if args.json:
        print(
            json.dumps(
                {"machine": machine(), "python": sys.version.split()[0], "rows": rows}, indent=2
            )
        )
        return 0
    print(f"machine: {machine()}")
    print(
        "| format | file | events | respike packets ms | respike read_all ms | reference "
        "| reference ms | packets speed-up | read_all / reference |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|---:|")
    nan = float("nan")
    for row in rows:
        refs = row["references"] or [
            {"reader": "-", "seconds": nan, "speedup": nan, "read_all_ratio": nan}
        ]
        for i, ref in enumerate(refs):
            lead = (
                f"| {row['format']} | {Path(row['file']).name} | {row['events']:,} | "
                f"{row['respike_s'] * 1e3:.2f} | {row['respike_read_all_s'] * 1e3:.2f} |"
                if i == 0
                else "| | | | | |"
            )
            print(
                f"{lead} {ref['reader']} | {ref['seconds'] * 1e3:.2f} | {ref['speedup']:.2f}x "
                f"| {ref['read_all_ratio']:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
