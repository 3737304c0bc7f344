"""Writers and the info/convert commands: every event survives a round trip through each format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from respike.recorders import open_events
from respike.recorders.writers import write_packets, writer_for


@pytest.fixture
def aedat4(shared_data: Path) -> Path:
    return shared_data / "tonic_samples" / "sample.aedat4"


@pytest.mark.parametrize("suffix", [".h5", ".aedat4", ".txt"])
def test_round_trip_keeps_every_event(aedat4: Path, tmp_path: Path, suffix: str) -> None:
    source = open_events(aedat4)
    target = tmp_path / f"out{suffix}"
    assert write_packets(source.packets(), target, source.sensor_size or (0, 0)) == 111_954
    again = open_events(target)
    np.testing.assert_array_equal(again.read_all(), source.read_all())
    if suffix != ".txt":
        assert again.sensor_size == (320, 240)


def test_unknown_output_suffix_lists_what_can_be_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"writable formats: hdf5 \(.h5 .hdf5\), aedat4"):
        writer_for(tmp_path / "x.mp4", (10, 10))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_info_and_convert_commands(aedat4: Path, tmp_path: Path) -> None:
    info = run_cli("info", str(aedat4), "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert (summary["format"], summary["event_count"], summary["sensor_size"]) == (
        "aedat4",
        111_954,
        [320, 240],
    )
    converted = run_cli("convert", str(aedat4), str(tmp_path / "out.h5"))
    assert converted.returncode == 0, converted.stderr
    assert "wrote 111,954 events" in converted.stdout
    assert (
        json.loads(run_cli("info", str(tmp_path / "out.h5"), "--json").stdout)["event_count"]
        == 111_954
    )


def test_info_on_a_missing_or_unknown_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = run_cli("info", str(tmp_path / "none.raw"))
    assert missing.returncode == 2 and "no such event recording" in missing.stderr
    unknown = tmp_path / "x.bin2"
    unknown.write_bytes(b"\x01\x02" * 100)
    result = run_cli("info", str(unknown))
    assert result.returncode == 2 and "Supported: aedat4" in result.stderr, result.stderr


@pytest.mark.slow
def test_convert_emulates_events_from_a_video(shared_data: Path, tmp_path: Path) -> None:
    from respike.events.emulator import DvsEmulator
    from respike.recorders.video import VideoEvents

    clip = shared_data / "videos" / "carphone.mp4"
    result = run_cli("convert", str(clip), str(tmp_path / "car.h5"), "--size", "88x72")
    assert result.returncode == 0, result.stderr
    events = open_events(tmp_path / "car.h5").read_all()
    direct = np.concatenate(list(VideoEvents(clip, DvsEmulator(), (88, 72)).packets()))
    assert len(events) == len(direct) > 10_000
    assert open_events(tmp_path / "car.h5").sensor_size == (88, 72)
    assert events["t"].max() < 4_100_000, "times follow the video's 29.97 fps clock (120 frames)"
