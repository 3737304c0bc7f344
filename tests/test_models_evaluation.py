"""Evaluation: the shipped checkpoints classify held-out data; labels map by name; reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from respike.models.evaluation import (
    EvalReport,
    confusion_image,
    evaluate_checkpoint,
    format_report,
    label_map,
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "clips", "floor"), [("actions", 40, 0.75), ("gestures-dvs", 44, 0.35)]
)
def test_shipped_checkpoints_classify_fresh_synthetic_clips(
    name: str, clips: int, floor: float
) -> None:
    torch.set_num_threads(1)
    report, about = evaluate_checkpoint(name, f"synthetic?clips={clips}&seed=11", energy_clips=0)
    assert about["dataset"]["split"] == "test"
    assert report.accuracy is not None and report.accuracy >= floor, (
        f"{name} on {clips} fresh held-out synthetic clips: {report.accuracy}"
    )


def test_shipped_nmnist_checkpoint(shared_data: Path) -> None:
    torch.set_num_threads(1)
    report, _ = evaluate_checkpoint(
        "nmnist", f"nmnist:{shared_data / 'nmnist_small'}", energy_clips=0
    )
    assert report.clips == 100
    assert report.accuracy is not None and report.accuracy >= 0.97


def test_dataset_labels_map_to_the_model_classes_by_name() -> None:
    assert label_map(["b", "a"], ["a", "b", "c"]) == [1, 0]
    with pytest.raises(ValueError, match=r"\['d'\]"):
        label_map(["a", "d"], ["a", "b"])


def test_report_text_and_confusion_image() -> None:
    report = EvalReport(
        accuracy=0.75,
        closed_accuracy=0.75,
        rejected=0,
        clips=4,
        class_names=("a", "b"),
        per_class={"a": {"accuracy": 1.0, "clips": 2}, "b": {"accuracy": 0.5, "clips": 2}},
        confusion=((2, 0), (1, 1)),
        predictions={"a": 3, "b": 1},
        energy=None,
        seconds=0.0,
    )
    about = {"checkpoint": "x.pt", "mode": "snn", "data": "synthetic"}
    text = format_report(about, report, {"y": (report, {**about, "mode": "ann"})})
    assert "4 clips, accuracy 75.0%" in text
    assert "| model | snn | 75.0% | - | - | - |" in text and "| y | ann |" in text
    image = confusion_image(report.confusion, report.class_names)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
