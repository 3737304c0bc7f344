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
    assert result.returncode == 2 and "respike info --help" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one line"
    empty = tmp_path / "empty.aedat4"
    empty.write_bytes(b"")
    result = run_cli("info", str(empty))
    assert result.returncode == 2 and result.stderr.strip() == (
        f"respike: error: {empty}: the file is empty (0 bytes)"
    )
    listing = run_cli("info", "--help")
    assert listing.returncode == 0
    for line in ("evt3 (.raw): Prophesee RAW EVT 3.0", "rosbag1 (.bag)", "tonic (folder)"):
        assert line in listing.stdout, f"`respike info --help` lists the formats: {line}"


def test_info_of_a_dataset_sample(shared_data: Path) -> None:
    result = run_cli("info", f"{shared_data / 'dvs_gesture10'}#3", "--json")
    assert result.returncode == 0, result.stderr
    sample = json.loads(result.stdout)["sample"]
    assert sample["path"] == "4.bs2" and sample["label_name"] == "right_arm_clockwise"


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


def _aedat4_with_frames(path: Path, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """An AEDAT 4 file of events and 8-bit frames written with dv-processing (as a DAVIS
    recording is); returns the events (EVENT_DTYPE) and the (t, image) of each frame."""
    import dv_processing as dv

    from respike.events import make_events

    size = (64, 48)
    config = dv.io.MonoCameraWriter.Config("test")
    config.addEventStream(size)
    config.addFrameStream(size)
    writer = dv.io.MonoCameraWriter(str(path), config)
    n = 3000
    events = make_events(
        np.sort(rng.integers(10_000, 200_000, n)),
        rng.integers(0, size[0], n),
        rng.integers(0, size[1], n),
        rng.integers(0, 2, n),
    )
    store = dv.EventStore()
    for t, x, y, p in events[["t", "x", "y", "p"]].tolist():
        store.push_back(t, x, y, bool(p))
    writer.writeEvents(store)
    frames = []
    for t in (12_000, 60_000, 150_000):
        image = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        writer.writeFrame(dv.Frame(t, image))
        frames.append((t, image))
    del writer  # dv-processing finishes the file when its writer is destroyed
    return events, frames


def test_aedat4_to_aedat4_keeps_frames(tmp_path: Path, rng: np.random.Generator) -> None:
    """`respike convert in.aedat4 out.aedat4` carries the frames: same events, same frame
    times and images; an events-only output format skips them and says how many."""
    source = tmp_path / "davis.aedat4"
    events, frames = _aedat4_with_frames(source, rng)
    assert [f.t for f in open_events(source).frames()] == [t for t, _ in frames]
    target = tmp_path / "out.aedat4"
    converted = run_cli("convert", str(source), str(target))
    assert converted.returncode == 0, converted.stderr
    again = open_events(target)
    assert again.has_frames and again.sensor_size == (64, 48)
    np.testing.assert_array_equal(again.read_all(), events)
    got = list(again.frames())
    assert [f.t for f in got] == [t for t, _ in frames], "frame times differ"
    for frame, (t, image) in zip(got, frames, strict=True):
        assert np.array_equal(frame.image, image), f"frame at {t} differs"
    reader = open_events(source)
    with writer_for(tmp_path / "out.h5", (64, 48), frames=True) as h5:
        for item in reader.stream():
            if isinstance(item, np.ndarray):
                h5.write(item)
            else:
                h5.write_frame(item)
    assert h5.count == len(events) and h5.frames_skipped == 3
