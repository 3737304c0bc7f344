"""N-MNIST 40-bit binary reader: identical to tonic on the real samples, damaged copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tonic

from respike.recorders import EventFileError, open_events

TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _same_as_tonic(path: Path, **options: int) -> None:
    events = open_events(path, **options).read_all()
    ref = tonic.io.read_mnist_file(str(path), dtype=TONIC_DTYPE)
    assert events.shape[0] == ref.shape[0], f"{path.name}: event count differs from tonic"
    for name in ("t", "x", "y", "p"):
        assert np.array_equal(events[name], ref[name]), f"{path.name}: {name} differs from tonic"


def test_dvs_gesture_samples_equal_tonic(shared_data: Path) -> None:
    files = sorted((shared_data / "dvs_gesture10").glob("*.bs2"))
    assert len(files) == 10
    for path in files:
        _same_as_tonic(path)
    reader = open_events(files[0])
    assert reader.format == "nmnist" and reader.sensor_size == (128, 128)


def test_nmnist_samples_equal_tonic(shared_data: Path) -> None:
    files = sorted((shared_data / "nmnist_small").glob("*.bs2"))
    assert len(files) == 1100, "1000 training and 100 test samples"
    for path in files:
        _same_as_tonic(path)
    _same_as_tonic(shared_data / "tonic_samples" / "sample_nmnist.bin")
    summary = open_events(shared_data / "tonic_samples" / "sample_nmnist.bin").summary()
    assert summary.event_count == 4325 and summary.sensor_size == (34, 34)


def test_chunked_equals_whole(shared_data: Path) -> None:
    _same_as_tonic(shared_data / "dvs_gesture10" / "5.bs2", packet_events=777)


def test_overflow_markers_follow_tonic(tmp_path: Path) -> None:
    """y == 240 records add 2**13 µs to every later event and are not events themselves."""
    records = [(1, 2, 0, 100), (0, 240, 0, 0), (3, 4, 1, 50), (5, 6, 0, 60)]
    raw = bytearray()
    for x, y, p, t in records:
        raw += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    path = tmp_path / "overflow.bin"
    path.write_bytes(bytes(raw))
    _same_as_tonic(path)
    assert open_events(path).read_all()["t"].tolist() == [100, 8192 + 50, 8192 + 60]


def test_truncated_file_keeps_whole_records(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "dvs_gesture10" / "1.bs2"
    full = open_events(path).read_all()
    damaged = tmp_path / "cut.bs2"
    damaged.write_bytes(path.read_bytes()[: 5 * 1000 + 3])
    with pytest.raises(EventFileError, match="truncated") as info:
        open_events(damaged).read_all()
    assert info.value.offset == 5000 and info.value.format == "nmnist"
    reader = open_events(damaged, strict=False)
    assert np.array_equal(reader.read_all(), full[:1000])


def test_flipped_time_byte_names_the_record(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "dvs_gesture10" / "2.bs2"
    full = open_events(path).read_all()
    raw = bytearray(path.read_bytes())
    raw[5 * 2000 + 2] |= 0x7F  # record 2000's top time bits: a jump forward, then back
    damaged = tmp_path / "flip.bs2"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(EventFileError, match="steps back") as info:
        open_events(damaged).read_all()
    assert info.value.offset == 5 * 2000, "the record that jumped is the culprit"
    reader = open_events(damaged, strict=False)
    assert np.array_equal(reader.read_all(), full[:2000])
    assert reader.error is not None and reader.error.offset == 5 * 2000
