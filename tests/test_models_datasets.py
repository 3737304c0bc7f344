"""Datasets: every source yields the clip layout, made by the very kernels the live path runs."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from respike.events import EVENT_DTYPE, DvsEmulator, EventFrames, ResidualFrames
from respike.models import InputSpec
from respike.models.ann import keyframe_tensor
from respike.models.datasets import (
    DataOptions,
    DvsGesture,
    DvsRandomisation,
    EventRecording,
    NMnist,
    SyntheticActions,
    VideoFolder,
    open_dataset,
    parse_data_spec,
)
from respike.models.hybrid import KeyResidual
from respike.recorders import open_events
from respike.recorders.datasets import DVS_GESTURE_CLASSES
from respike.synthetic import (
    HELDOUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    SceneConfig,
    render_clip,
    sample_variation,
)

RESIDUAL = InputSpec(
    snn_size=(24, 32), snn_input="residual", snn_channels=1, keyframe_size=(30, 40)
)  # sizes are (height, width), the kernels' are (width, height)
EVENTS = InputSpec(snn_size=(32, 32), snn_input="events", snn_channels=2, keyframe_size=(32, 32))
SMALL_SCENE = SceneConfig(width=64, height=48, backgrounds=TRAIN_BACKGROUNDS)


@pytest.mark.parametrize("key_residual", ["zero", "previous"])
def test_synthetic_residual_clip_equals_the_live_kernels(key_residual: KeyResidual) -> None:
    spec = replace(RESIDUAL, key_residual=key_residual)
    data = SyntheticActions(spec, split="train", clips=3, segments=2, scene=SMALL_SCENE)
    sample = data[2]
    frames = render_clip(data.class_names[2], data.clip_seed(2), 8, SMALL_SCENE)
    kernel = ResidualFrames(
        stride=4, size=(32, 24), color="grey", channel_order="rgb", key_residual=key_residual
    )
    state, expected = None, []
    for frame in frames:
        residual, state = kernel(frame, state)
        expected.append(residual)
    assert sample.steps.shape == (8, 1, 24, 32), "steps must be (S*K, C, h, w)"
    assert torch.equal(sample.steps, torch.from_numpy(np.stack(expected))), (
        "dataset residual steps must be bit-identical to ResidualFrames on the same frames"
    )
    keys = np.stack([keyframe_tensor(frames[i], (40, 30)) for i in (0, 4)])
    assert torch.equal(sample.keyframes, torch.from_numpy(keys)), "key frame s must be frame s*K"
    assert sample.label == 2


def test_synthetic_event_clip_equals_the_live_kernels() -> None:
    randomise = DvsRandomisation((0.15, 0.3), (0.0, 0.05), (0.0, 2.0))
    data = SyntheticActions(
        EVENTS, clips=2, segments=2, scene=SMALL_SCENE, dvs=randomise, classes=DVS_GESTURE_CLASSES
    )
    sample = data[1]
    seed = data.clip_seed(1)
    frames = render_clip(data.class_names[1], seed, 9, SMALL_SCENE)
    dvs = randomise.draw(seed, "rgb")
    binning = EventFrames(sensor_size=(64, 48), n_time_bins=1, size=(32, 32))
    state, expected = None, []
    for i, frame in enumerate(frames):
        events, state = dvs(frame, i * EVENTS.time_bin_us, state)
        if i:
            t0, t1 = (i - 1) * EVENTS.time_bin_us, i * EVENTS.time_bin_us
            expected.append(binning(events, t_start=t0, t_end=t1)[0])
    assert torch.equal(sample.steps, torch.from_numpy(np.stack(expected))), (
        "dataset event steps must be the emulator's events binned per frame interval"
    )
    assert float(sample.steps.sum()) > 0, "a moving figure must make events"


def test_synthetic_splits_use_disjoint_seeds_and_backgrounds() -> None:
    train = SyntheticActions(RESIDUAL, split="train", clips=50)
    test = SyntheticActions(RESIDUAL, split="test", clips=50)
    assert not {train.clip_seed(i) for i in range(50)} & {test.clip_seed(i) for i in range(50)}
    assert set(test.scene.backgrounds) == set(HELDOUT_BACKGROUNDS)
    assert not set(train.scene.backgrounds) & set(test.scene.backgrounds)
    drawn = {sample_variation(test.clip_seed(i), test.scene).background for i in range(50)}
    assert drawn <= set(HELDOUT_BACKGROUNDS), f"test clips drew backgrounds {drawn}"


def test_synthetic_resample_changes_clips_per_epoch() -> None:
    data = SyntheticActions(RESIDUAL, clips=4, segments=1, scene=SMALL_SCENE, resample=True)
    first = data.clip_seed(0)
    data.set_epoch(1)
    assert data.clip_seed(0) != first, "resample must draw new performers every epoch"
    data.set_epoch(0)
    assert data.clip_seed(0) == first, "an epoch's clips must be reproducible"


def test_synthetic_cache_is_written_once_and_identical(tmp_path: Path) -> None:
    args = dict(clips=3, segments=1, scene=SMALL_SCENE, cache_dir=tmp_path)
    first = SyntheticActions(RESIDUAL, **args)  # type: ignore[arg-type]
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1, "the cache must be one .npz per dataset setting"
    second = SyntheticActions(RESIDUAL, **args)  # type: ignore[arg-type]
    plain = SyntheticActions(RESIDUAL, clips=3, segments=1, scene=SMALL_SCENE)
    for i in range(3):
        assert torch.equal(first[i].steps, plain[i].steps)
        assert torch.equal(second[i].keyframes, plain[i].keyframes)
    other = SyntheticActions(RESIDUAL, **{**args, "seed": 1})  # type: ignore[arg-type]
    assert len(list(tmp_path.glob("*.npz"))) == 2, "another seed must not reuse the cache"
    assert not torch.equal(other[0].steps, first[0].steps)


def test_nmnist_split_files_and_binning(shared_data: Path) -> None:
    spec = InputSpec(
        snn_size=(34, 34),
        snn_input="events",
        snn_channels=2,
        keyframe_interval=8,
        time_bin_us=40_000,
    )
    root = shared_data / "nmnist_small"
    test = NMnist(root, spec, split="test")
    train = NMnist(root, spec, split="train")
    assert (len(train), len(test)) == (1000, 100)
    assert test.labels[:3] == [7, 2, 1], "labels come from test100.txt"
    events = open_events(root / "60001.bs2").read_all()
    t0 = int(events["t"][0])
    expected = EventFrames(sensor_size=(34, 34), n_time_bins=8)(events, t0, t0 + 8 * 40_000)
    sample = test[0]
    assert torch.equal(sample.steps, torch.from_numpy(expected)), (
        "N-MNIST steps must be EventFrames over S*K bins of time_bin_us"
    )
    assert sample.keyframes.shape == (1, 3, 0, 0), "event data has no key frames"
    shifted = NMnist(root, spec, split="test", augment=True, shift=2)[0].steps
    assert shifted.sum() <= sample.steps.sum() + 1e-6


def test_dvs_gesture_ten_recordings(shared_data: Path) -> None:
    data = open_dataset("dvsgesture:" + str(shared_data / "dvs_gesture10"), EVENTS)
    assert isinstance(data, DvsGesture)
    assert data.class_names == DVS_GESTURE_CLASSES
    with (shared_data / "dvs_gesture10" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(set(data.labels)) == sorted(int(r["class_id"]) - 1 for r in rows)
    assert all(data.class_names[int(r["class_id"]) - 1] == r["class_name"] for r in rows)
    assert len(data) > 10, "1.45 s recordings make several 0.27 s windows each"
    assert data[0].steps.shape == (16, 2, 32, 32)


def test_dvs_gesture_labels_csv_label_is_the_class_index(shared_data: Path) -> None:
    """labels.csv numbers DVS Gesture's classes 1-11; a clip's label indexes class_names."""
    root = shared_data / "dvs_gesture10"
    data = DvsGesture(root, EVENTS, windows="first")
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(data) == len(rows) == 10, "one clip per recording with windows='first'"
    for row, label in zip(rows, data.labels, strict=True):
        assert data.class_names[label] == row["class_name"], (
            f"{row['file']} is labelled {row['class_name']!r} in labels.csv but its clip's label "
            f"{label} names {data.class_names[label]!r}"
        )


def test_dvs_gesture_tonic_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    n = 500
    t_ms = np.sort(rng.integers(0, 1000, n))
    raw = np.stack(
        [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t_ms], 1
    )
    np.save(folder / "4.npy", raw.astype(np.int64))
    data = DvsGesture(tmp_path, EVENTS, split="test", segments=1, windows="first")
    assert data.labels == [4]
    counts = data[0].steps
    in_window = int(np.count_nonzero((t_ms - t_ms[0]) * 1000 < 4 * EVENTS.time_bin_us))
    assert int(counts.sum()) == in_window, "tonic's millisecond times must become µs"


def test_event_recording_from_npy_with_label(tmp_path: Path) -> None:
    events = np.zeros(300, dtype=EVENT_DTYPE)
    events["t"] = np.arange(300) * 4000
    events["x"] = np.arange(300) % 20
    events["y"] = 3
    events["p"] = 1
    np.save(tmp_path / "rec.npy", events)
    names = ("a", "b")
    data = open_dataset(f"events:{tmp_path / 'rec.npy'}?label=b", EVENTS, class_names=names)
    assert isinstance(data, EventRecording)
    window = data.steps * EVENTS.time_bin_us
    assert len(data) == -(-(299 * 4000 + 1) // window) == 3, "one clip per window over the file"
    assert set(data.labels) == {1}
    total = sum(float(data[i].steps.sum()) for i in range(len(data)))
    assert total == 300, "every event lands in exactly one clip"
    with pytest.raises(FileNotFoundError, match="no such event recording"):
        EventRecording(tmp_path / "rec.aedat4", EVENTS, class_names=names)


def test_event_recording_reads_any_format_and_dataset_samples(shared_data: Path) -> None:
    """Every format open_events reads (here Prophesee DAT, a dataset sample) feeds a dataset."""
    dat = shared_data / "tonic_samples" / "sample_ncars.dat"
    data = EventRecording(dat, EVENTS, class_names=("car",), label=0, segments=1)
    reader = open_events(dat)
    events, size = reader.read_all(), reader.sensor_size
    assert size is not None
    t0 = int(events["t"][0])
    window = data.steps * EVENTS.time_bin_us
    binning = EventFrames(sensor_size=size, n_time_bins=data.steps, size=(32, 32))
    assert torch.equal(data[0].steps, torch.from_numpy(binning(events, t0, t0 + window))), (
        "an event file's clip must be its events binned at the reader's sensor size"
    )
    sample = EventRecording(f"{shared_data / 'dvs_gesture10'}#2", EVENTS, class_names=("a",))
    whole = open_events(shared_data / "dvs_gesture10" / "3.bs2").read_all()
    assert sum(int(sample[i].steps.sum()) for i in range(len(sample))) == len(whole)


def _write_video(path: Path, frames: np.ndarray) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_video_folder_ucf_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    for name in ("Jump", "Run"):
        (tmp_path / name).mkdir()
        for k in range(2):
            frames = rng.integers(0, 256, (10, 48, 64, 3), dtype=np.uint8)
            _write_video(tmp_path / name / f"v_{name}_g0{k}.avi", frames)
    (tmp_path / "trainlist01.txt").write_text("Jump/v_Jump_g00.avi 1\nRun/v_Run_g00.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Jump/v_Jump_g01.avi\nRun/v_Run_g01.avi\n")
    spec = InputSpec(
        snn_size=(24, 32), snn_input="residual", snn_channels=3, keyframe_size=(32, 32)
    )
    test = open_dataset(f"videos:{tmp_path}", spec, options=DataOptions(split="test", segments=2))
    assert isinstance(test, VideoFolder)
    assert test.class_names == ("Jump", "Run") and test.labels == [0, 1]
    capture = cv2.VideoCapture(str(tmp_path / "Run" / "v_Run_g01.avi"))
    decoded = [capture.read()[1] for _ in range(8)]
    capture.release()
    kernel = ResidualFrames(stride=4, size=(32, 24), color="rgb", channel_order="bgr")
    state, expected = None, []
    for frame in decoded:
        step, state = kernel(frame, state)
        expected.append(step)
    sample = test[1]
    assert torch.equal(sample.steps, torch.from_numpy(np.stack(expected)))
    key = keyframe_tensor(decoded[4], (32, 32), "bgr")
    assert torch.equal(sample.keyframes[1], torch.from_numpy(key)), "BGR video, RGB key frame"
    everything = VideoFolder(tmp_path, spec, split="all")
    assert len(everything) == 4, "a split without a split file means every video"


def test_parse_data_spec_grammar() -> None:
    spec = parse_data_spec("synthetic?split=val&clips=20")
    assert (spec.kind, spec.path, dict(spec.options)) == (
        "synthetic",
        None,
        {"split": "val", "clips": "20"},
    )
    spec = parse_data_spec("nmnist:/data/nm")
    assert spec.kind == "nmnist" and spec.path == Path("/data/nm")
    for bad, message in (
        ("mnist:/x", "unknown kind"),
        ("videos:", "needs a path"),
        ("synthetic:/x", "takes no path"),
        ("events:/x?label", "key=value"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_data_spec(bad)
    with pytest.raises(ValueError, match="unknown for nmnist"):
        open_dataset("nmnist:/x?clips=3", EVENTS)


def test_emulator_channel_order_must_match_frames() -> None:
    from respike.models.datasets import FrameEncoder

    with pytest.raises(ValueError, match="channel_order"):
        FrameEncoder(EVENTS, channel_order="bgr", dvs=DvsEmulator(channel_order="rgb"))
