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


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_written_text_keeps_sensor_size_and_csv_uses_commas(
    tmp_path: Path, rng: np.random.Generator, suffix: str
) -> None:
    """The writer's '# ... sensor WxH' line gives the sensor size back (events alone would say
    1280x699 here); .csv files are comma-separated and read back the same."""
    from respike.events import make_events
    from respike.recorders.writers import write_packets

    n = 500
    events = make_events(
        np.sort(rng.integers(0, 10**6, n)),
        rng.integers(0, 1000, n),
        np.minimum(rng.integers(0, 699, n), 698),
        rng.integers(0, 2, n),
    )
    path = tmp_path / f"events{suffix}"
    assert write_packets([events[:200], events[200:]], path, (1280, 720)) == n
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and "sensor 1280x720" in lines[0]
    if suffix == ".csv":
        assert all("," in line and " " not in line for line in lines[1:]), lines[1]
    else:
        assert all("," not in line for line in lines[1:]), lines[1]
    reader = open_events(path)
    assert reader.sensor_size == (1280, 720)
    assert reader.summary().sensor_size_from == "header"
    np.testing.assert_array_equal(reader.read_all(), events)


def test_header_sensor_line_of_a_hand_written_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("% camera: gen4; sensor 640x480\n# t,x,y,p\n10,1,2,0\n20,3,4,1\n")
    reader = open_events(path)
    assert reader.sensor_size == (640, 480) and reader.read_all()["t"].tolist() == [10, 20]
