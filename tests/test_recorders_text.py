"""Text event lists: integer µs, float seconds, separators, headers, malformed lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.recorders import EventFileError, open_events


def test_seconds_with_header_and_commas(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("# t x y p\n0.000001 1 2 0\n0.5,3,4,1\n\n1.25 5 6 1\n")
    reader = open_events(path)
    events = reader.read_all()
    assert reader.format == "text"
    assert events["t"].tolist() == [1, 500_000, 1_250_000]
    assert events["x"].tolist() == [1, 3, 5] and events["p"].tolist() == [0, 1, 1]


def test_integer_microseconds_over_many_blocks(tmp_path: Path, rng: np.random.Generator) -> None:
    n = 120_000  # more than one 1 MiB block
    t = np.sort(rng.integers(0, 10**9, n))
    x = rng.integers(0, 1280, n)
    y = rng.integers(0, 720, n)
    p = rng.integers(0, 2, n)
    path = tmp_path / "big.txt"
    np.savetxt(path, np.stack([t, x, y, p], axis=1), fmt="%d")
    assert path.stat().st_size > 1 << 21
    events = open_events(path, packet_events=10_000).read_all()
    assert events["t"].tolist() == t.tolist() and events["y"].tolist() == y.tolist()


def test_bad_line_names_its_offset(tmp_path: Path) -> None:
    lines = ["10 1 1 1", "20 2 2 0", "30 3 x 1", "40 4 4 1"]
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EventFileError, match="four numbers") as info:
        open_events(path).read_all()
    assert info.value.offset == len("10 1 1 1\n20 2 2 0\n")
    assert info.value.where == "event line 2"
    reader = open_events(path, strict=False)
    assert reader.read_all()["t"].tolist() == [10, 20]


def test_time_unit_override(tmp_path: Path) -> None:
    path = tmp_path / "ns.txt"
    path.write_text("1500 1 1 1\n2500 1 1 0\n")
    assert open_events(path, time_unit="ns").read_all()["t"].tolist() == [2, 2]
