"""Format detection, the registry and the unknown-format error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from respike.recorders import (
    FORMATS,
    FormatSpec,
    UnknownFormatError,
    detect_format,
    open_events,
    register_format,
    supported_formats,
)

EXPECTED = {
    "prophesee/evt3_sample.raw": "evt3",
    "prophesee/evt2_sample.raw": "evt2",
    "prophesee/evt3_sample.npy": "npy",
    "tonic_samples/sample.aedat4": "aedat4",
    "tonic_samples/sample_nmnist.bin": "nmnist",
    "tonic_samples/sample_ncars.dat": "dat",
    "dvs_gesture10/1.bs2": "nmnist",
    "rosbag2/test_data_mono_cd": "rosbag2",
    "rosbag2/test_data_mono_cd/test_data_mono_cd_0.db3": "rosbag2",
}


def test_detects_every_real_sample(shared_data: Path) -> None:
    for rel, name in EXPECTED.items():
        assert detect_format(shared_data / rel) == name, rel


def test_header_wins_over_extension(tmp_path: Path, shared_data: Path) -> None:
    renamed = tmp_path / "capture.dat"
    renamed.write_bytes((shared_data / "tonic_samples" / "sample.aedat4").read_bytes())
    assert detect_format(renamed) == "aedat4"
    assert open_events(renamed).summary().event_count == 111_954


def test_unknown_format_is_one_short_line(tmp_path: Path) -> None:
    """The error names the file and what it starts with, and points to --format and the list
    in `respike info --help` instead of enumerating every format (that was ~1,000 characters);
    the full list stays on the exception."""
    path = tmp_path / "mystery.xyz"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UnknownFormatError) as info:
        open_events(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 250
    assert "00 01 02 03" in message, "what the first bytes are, briefly"
    assert "--format" in message and "respike info --help" in message
    assert "rosbag1 (" not in message, "the formats are listed elsewhere, not in the error"
    for name in ("aedat4", "evt3", "evt2", "dat", "nmnist", "hdf5", "npy", "rosbag2", "rosbag1"):
        assert any(s.startswith(f"{name} (") for s in info.value.supported), name
    text = tmp_path / "notes.txt"
    text.write_text("hello, these are my notes\n")
    with pytest.raises(UnknownFormatError, match="starts with text 'hello, these are my"):
        open_events(text)
    with pytest.raises(UnknownFormatError, match=r"neither a ROS 2 bag \(metadata.yaml\) nor"):
        open_events(tmp_path)


def test_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.raw"
    path.write_bytes(b"")
    with pytest.raises(UnknownFormatError) as info:
        open_events(path)
    assert str(info.value) == f"{path}: the file is empty (0 bytes)"


def test_raw_without_event_format_asks_for_one(tmp_path: Path) -> None:
    path = tmp_path / "headless.raw"
    path.write_bytes(b"% camera something\n" + bytes(100))
    with pytest.raises(UnknownFormatError, match="format='evt2' or 'evt3'"):
        detect_format(path)


def test_forced_format_and_missing_file(tmp_path: Path, shared_data: Path) -> None:
    reader = open_events(shared_data / "prophesee" / "evt3_sample.raw", format="evt3")
    assert reader.format == "evt3"
    with pytest.raises(UnknownFormatError, match="'evt9' is not known"):
        open_events(shared_data / "prophesee" / "evt3_sample.raw", format="evt9")
    with pytest.raises(FileNotFoundError):
        open_events(tmp_path / "absent.raw")


def test_registry_rejects_duplicates() -> None:
    spec = FORMATS["evt3"]
    with pytest.raises(ValueError, match="already registered"):
        register_format(FormatSpec(spec.name, "again", (".raw",), spec.opener))
    assert len(supported_formats()) == len(FORMATS)


def test_summary_of_a_dataset_sample_names_sample_and_label(shared_data: Path) -> None:
    """`respike info FOLDER#3` says which sample it read and its label (id, name if known)."""
    gesture = open_events(f"{shared_data / 'dvs_gesture10'}#3").summary().to_dict()
    assert gesture["sample"] == {
        "index": 3,
        "path": "4.bs2",
        "split": "",
        "label": 3,
        "label_name": "right_arm_clockwise",
    }
    digits = open_events(f"{shared_data / 'nmnist_small'}#3").summary().to_dict()
    labels = dict(
        line.split()
        for line in (shared_data / "nmnist_small" / "train1K.txt").read_text().split("\n")[1:]
        if line
    )
    assert digits["sample"]["path"] == "4.bs2" and digits["sample"]["index"] == 3
    assert digits["sample"]["label"] == int(labels["4"])
    assert digits["sample"]["label_name"] == labels["4"], "an N-MNIST class is its digit"
    plain = open_events(shared_data / "dvs_gesture10" / "4.bs2").summary().to_dict()
    assert "sample" not in plain, "only dataset samples have one"


def test_summary_json_for_info(shared_data: Path) -> None:
    summary = open_events(shared_data / "rosbag2" / "test_data_mono_cd").summary()
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["format"] == "rosbag2" and data["sensor_size"] == [640, 480]
    assert data["event_count"] == 100 and data["duration_us"] == data["last_t"] - data["first_t"]
    assert data["topics"] == {
        "/event_camera/events": {"type": "event_array_msgs/msg/EventArray", "count": 2}
    }


def test_split_sample_reads_folder_hash_choices(tmp_path: Path) -> None:
    from respike.recorders import split_sample

    folder = tmp_path / "data"
    folder.mkdir()
    assert split_sample(f"{folder}#3") == (folder, 3)
    assert split_sample(f"{folder}#Train/0/a.bin") == (folder, "Train/0/a.bin")
    named = tmp_path / "odd#1.raw"
    named.write_bytes(b"")
    assert split_sample(named) == (named, None), "an existing file keeps its '#'"
    assert split_sample(tmp_path / "none#2") == (tmp_path / "none#2", None)


def test_open_events_refuses_two_different_sample_choices(tmp_path: Path) -> None:
    from respike.recorders import open_events

    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(ValueError, match="names sample 3 but sample=5"):
        open_events(f"{folder}#3", sample=5)
