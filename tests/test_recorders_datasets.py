"""Dataset folders through open_events: tonic's NMNIST/DVSGesture layouts, split lists, labels.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tonic

from respike.recorders import DatasetSampleError, UnknownFormatError, open_events
from respike.recorders.datasets import DVS_GESTURE_CLASSES, scan_dataset

MNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _tonic_events(path: Path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=MNIST_DTYPE)


def _same(events: np.ndarray, ref: np.ndarray, what: str) -> None:
    for name in ("t", "x", "y", "p"):
        assert np.array_equal(events[name], ref[name]), f"{what}: {name} differs"


def test_nmnist_small_by_index_and_path(shared_data: Path) -> None:
    root = shared_data / "nmnist_small"
    reader = open_events(f"{root}#3")
    assert reader.format == "tonic" and reader.sensor_size == (34, 34)
    assert reader.sample.path == "4.bs2" and reader.sample.split == "train"
    labels = dict(line.split() for line in (root / "train1K.txt").read_text().splitlines()[1:])
    assert reader.sample.label == int(labels["4"]), "label from train1K.txt"
    _same(reader.read_all(), _tonic_events(root / "4.bs2"), "nmnist_small#3")
    test = open_events(root, sample="60001.bs2")
    assert test.sample.split == "test" and test.folder.samples.index(test.sample) == 1000
    with pytest.raises(DatasetSampleError, match=r"1100 samples \(train 1000, test 100\)"):
        open_events(root)
    with pytest.raises(DatasetSampleError, match=r"outside 0\.\.1099"):
        open_events(root, sample=1100)


def test_dvs_gesture10_labels_csv(shared_data: Path) -> None:
    root = shared_data / "dvs_gesture10"
    reader = open_events(root, sample="7.bs2")
    assert reader.folder.layout == "labels-csv" and reader.sensor_size == (128, 128)
    assert reader.sample.label == 6, "labels.csv class_id 7 is DVS Gesture's 7th class, index 6"
    _same(reader.read_all(), _tonic_events(root / "7.bs2"), "dvs_gesture10 7.bs2")
    with pytest.raises(DatasetSampleError, match=r"no sample 'nope\.bs2'"):
        open_events(root, sample="nope.bs2")


def test_labels_csv_labels_index_the_dvs_gesture_classes(shared_data: Path) -> None:
    """Every labels.csv row's class_name is the name its sample's label indexes."""
    root = shared_data / "dvs_gesture10"
    folder = scan_dataset(root)
    assert folder.class_names == DVS_GESTURE_CLASSES
    with (root / "labels.csv").open(newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert len(folder.samples) == len(rows) == 10
    for sample in folder.samples:
        name = rows[sample.path]["class_name"]
        assert DVS_GESTURE_CLASSES[sample.label] == name == sample.label_name, (
            f"{sample.path}: labelled {name!r}, label {sample.label} names "
            f"{DVS_GESTURE_CLASSES[sample.label]!r}"
        )
    assert folder.in_split("train") == folder.in_split("test") == tuple(range(10)), (
        "a folder without splits serves every sample to each split"
    )


def test_labels_csv_rejects_ids_outside_dvs_gesture(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,class_id,class_name\na.bs2,0,none\n")
    with pytest.raises(DatasetSampleError, match=r"line 2: class_id 0 is not one of .* 1\.\.11"):
        scan_dataset(tmp_path)


def test_folder_open_reads_the_sample_open_events_reads(shared_data: Path) -> None:
    folder = scan_dataset(shared_data / "nmnist_small")
    test = folder.in_split("test")
    assert len(test) == 100 and folder.samples[test[0]].path == "60001.bs2"
    reader = folder.open(test[0])
    assert reader.sample == folder.samples[test[0]] and reader.sensor_size == (34, 34)
    _same(reader.read_all(), open_events(folder.root, sample=test[0]).read_all(), "60001.bs2")


def _mnist_bytes(x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> bytes:
    """40-bit records: x, y, then polarity in bit 7 above 23 bits of µs time, big-endian."""
    rec = np.stack([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    return rec.astype(np.uint8).tobytes()


def test_tonic_nmnist_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    expected = {}
    for split, digit, name in (
        ("Train", 3, "00007.bin"),
        ("Train", 0, "00002.bin"),
        ("Test", 7, "00001.bin"),
    ):
        n = 200
        cols = (
            rng.integers(0, 34, n),
            rng.integers(0, 34, n),
            rng.integers(0, 2, n),
            np.sort(rng.integers(0, 300_000, n)),
        )
        folder = tmp_path / "NMNIST" / split / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_mnist_bytes(*cols))
        expected[f"NMNIST/{split}/{digit}/{name}"] = (digit, cols)
    with pytest.raises(DatasetSampleError) as info:
        open_events(tmp_path)
    assert "nmnist layout, 3 samples (train 2, test 1)" in str(info.value)
    assert "0: NMNIST/Train/0/00002.bin (label 0)" in str(info.value), "listing is sorted"
    for index in range(3):
        reader = open_events(tmp_path, sample=index)
        digit, (x, y, p, t) = expected[reader.sample.path]
        assert reader.sample.label == digit
        events = reader.read_all()
        assert events["t"].tolist() == t.tolist() and events["x"].tolist() == x.tolist()
        assert events["y"].tolist() == y.tolist() and events["p"].tolist() == p.tolist()
        _same(events, _tonic_events(tmp_path / reader.sample.path), reader.sample.path)
    # damage is reported by the sample's own reader, naming its file and the offset
    bad = tmp_path / "NMNIST" / "Test" / "7" / "00001.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(Exception, match=r"00001\.bin: nmnist file cannot be read at byte 995"):
        open_events(tmp_path / "NMNIST", sample="Test/7/00001.bin").read_all()


def test_tonic_dvsgesture_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    n = 300
    t_ms = np.sort(rng.integers(0, 6000, n))
    arr = np.stack(
        [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t_ms], 1
    )
    folder = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    np.save(folder / "4.npy", arr.astype(np.float64))
    np.save(folder / "notes.npy", arr[:2])
    reader = open_events(f"{tmp_path}#0")
    assert reader.folder.layout == "dvsgesture" and len(reader.folder.samples) == 1
    assert reader.sample.label == 4 and reader.sample.split == "test"
    assert reader.sensor_size == (128, 128)
    events = reader.read_all()
    ref = np.load(folder / "4.npy")
    ref[:, 3] *= 1000  # tonic.datasets.DVSGesture: "convert from ms to us"
    assert events["t"].tolist() == ref[:, 3].astype(int).tolist()
    assert events["x"].tolist() == ref[:, 0].astype(int).tolist()
    assert events["p"].tolist() == ref[:, 2].astype(int).tolist()


def test_plain_folder_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormatError, match=r"nor a dataset folder \(tonic") as info:
        open_events(tmp_path)
    assert any(s.startswith("tonic (folder)") for s in info.value.supported)
