"""Training: tiny runs learn, resume exactly, DDP replicas agree, and their checkpoints evaluate."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
import torch
import torch.multiprocessing as mp

from respike.models import InputSpec, load_checkpoint
from respike.models.checkpoint import SHIPPED, CheckpointError, resolve_checkpoint
from respike.models.cli import main
from respike.models.training import (
    TrainConfig,
    TrainResult,
    build_model,
    replica_checksum,
    stale_keyframes,
    train,
)

TINY_EVENTS = InputSpec(
    snn_size=(32, 32),
    snn_input="events",
    snn_channels=2,
    keyframe_size=(32, 32),
    keyframe_interval=2,
)
TINY_RESIDUAL = InputSpec(
    snn_size=(24, 32),
    snn_input="residual",
    snn_channels=1,
    keyframe_size=(24, 32),
    keyframe_interval=2,
)
TINY_CLASSES = ("hand_clapping", "right_arm_clockwise")


def tiny_config(out: Path, **changes: object) -> TrainConfig:
    """``respike_tiny``'s SNN on emulated events of two classes in a plain 64x48 scene.

    New clips every epoch (``resample``), so what it learns must hold for unseen performers:
    about a second per epoch.
    """
    from respike.synthetic import SceneConfig

    scene = SceneConfig(
        width=64,
        height=48,
        backgrounds=("gradient",),
        scale_jitter=0.0,
        position_jitter=0.0,
        proportion_jitter=0.0,
    ).clean()
    config = TrainConfig(
        data="synthetic",
        val_data="synthetic?split=val",
        out=out,
        model="respike_tiny",
        mode="snn",
        input_spec=TINY_EVENTS,
        classes=TINY_CLASSES,
        segments=2,
        clips=64,
        val_clips=32,
        scene=scene,
        resample=True,
        epochs=6,
        batch_size=8,
        lr=3e-3,
        threads=1,
        seed=1,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    torch.set_num_threads(1)
    return train(tiny_config(tmp_path_factory.mktemp("tiny")), progress=False, log=lambda _: None)


@pytest.mark.slow
def test_a_tiny_run_learns_above_chance(tiny_run: TrainResult) -> None:
    last = tiny_run.history[-1]
    assert last.val_accuracy is not None and last.val_accuracy >= 0.7, (
        f"two classes: chance is 0.5, the tiny run reached {last.val_accuracy} on unseen seeds"
    )
    assert tiny_run.history[-1].loss < tiny_run.history[0].loss, "the training loss must fall"
    assert tiny_run.best is not None and tiny_run.best.is_file()
    saved = load_checkpoint(tiny_run.best)
    assert saved.class_names == TINY_CLASSES
    assert saved.extra["training"]["classes"] == list(TINY_CLASSES)
    assert len(saved.extra["history"]) == 6


@pytest.mark.slow
def test_eval_json_report(
    tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tiny_run.best is not None
    png = tmp_path / "confusion.png"
    code = main(
        [
            "eval",
            str(tiny_run.best),
            "--data",
            "synthetic?clips=8&seed=3",
            "--json",
            "--energy-clips",
            "2",
            "--confusion",
            str(png),
            "--ablation",
            str(tiny_run.last),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "checkpoint",
        "mode",
        "data",
        "accuracy",
        "clips",
        "per_class",
        "confusion",
        "class_names",
        "energy",
        "ablations",
        "confusion_png",
    ):
        assert key in report, f"eval JSON lacks {key!r}"
    assert report["clips"] == 8 and report["class_names"] == list(TINY_CLASSES)
    assert sum(map(sum, report["confusion"])) == 8
    assert set(report["per_class"]) == set(TINY_CLASSES)
    assert report["dataset"]["split"] == "test", "synthetic eval defaults to held-out seeds"
    energy = report["energy"]
    assert energy["prediction_pj"] > 0 and energy["clip_pj"] > energy["prediction_pj"]
    assert 0 < energy["ratio"] < 1, "the tiny hybrid must cost less than r3d_18"
    assert report["ablations"]["last"]["accuracy"] is not None
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 50, "the confusion PNG must be readable"


class _Stop(Exception):
    """Raised by a log callback to stop a run after an epoch, like a killed process."""


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = tiny_config(
        tmp_path / "a", clips=16, val_clips=8, epochs=2, mode="hybrid", input_spec=TINY_RESIDUAL
    )
    straight = train(config, progress=False, log=lambda _: None)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/"):
            raise _Stop

    interrupted = replace(config, out=tmp_path / "b")
    with pytest.raises(_Stop):
        train(interrupted, progress=False, log=stop_after_first_epoch)
    resumed = train(interrupted, progress=False, resume=tmp_path / "b", log=lambda _: None)
    assert [h.epoch for h in resumed.history] == [1, 2]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), f"{key} differs after resume"


def _ddp_worker(rank: int, out: str, rendezvous: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    config = tiny_config(
        Path(out) / "run",
        clips=32,
        epochs=1,
        batch_size=4,
        val_data=None,
        mode="hybrid",
        input_spec=TINY_RESIDUAL,
    )
    result = train(config, progress=False, init_method=rendezvous, log=lambda _: None)
    torch.save(replica_checksum(result.model), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_replicas_stay_identical(tmp_path: Path) -> None:
    """Two gloo processes train on different halves of each epoch; their weights must agree."""
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(
        _ddp_worker, args=(str(tmp_path), rendezvous), nprocs=2, start_method="spawn"
    )
    sums = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert sums[0] == sums[1], f"replicas diverged: {sums}"
    fresh = build_model(tiny_config(tmp_path, mode="hybrid", input_spec=TINY_RESIDUAL), 2)
    assert replica_checksum(fresh) != sums[0], "training must change the weights"
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert replica_checksum(saved.model) == sums[0], "rank 0 writes the synchronised weights"


def test_resolve_checkpoint_names(tmp_path: Path) -> None:
    for name in SHIPPED:
        assert resolve_checkpoint(name).name == f"{name}.pt"
    path = tmp_path / "x.pt"
    path.write_bytes(b"")
    assert resolve_checkpoint(path) == path
    with pytest.raises(CheckpointError, match="actions"):
        resolve_checkpoint("no-such-model")


def test_stale_keyframes_reuse_earlier_frames_within_the_gap() -> None:
    batch, segments, gap = 400, 6, 3
    keyframes = torch.arange(segments, dtype=torch.float32).expand(batch, segments)[..., None]
    generator = torch.Generator().manual_seed(0)
    source = stale_keyframes(keyframes, 0.5, gap, generator)[..., 0].long()
    assert (source[:, 0] == 0).all(), "a stream's first key frame is always its own"
    steps = source[:, 1:] - source[:, :-1]
    assert ((steps == 0) | (source[:, 1:] == torch.arange(1, segments))).all(), (
        "a segment has its own key frame or the previous segment's"
    )
    assert (torch.arange(segments) - source < gap).all(), f"never more than {gap - 1} old"
    stale = (source != torch.arange(segments)).any(dim=1).float().mean()
    assert 0.4 < stale < 0.6, f"about half the clips have stale key frames ({stale:.2f})"
    assert torch.equal(stale_keyframes(keyframes, 0.0, gap, generator), keyframes)
    assert torch.equal(stale_keyframes(keyframes, 1.0, 1, generator), keyframes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"stale_keyframes": 1.5}, "stale_keyframes must be in"), ({"stale_gap": 0}, "stale_gap")],
)
def test_bad_stale_settings_are_named(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="synthetic", **changes)  # type: ignore[arg-type]
