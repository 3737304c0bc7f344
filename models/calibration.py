"""Fitting a checkpoint's open-set rule (:mod:`respike.models.open_set`) on its own data.

:func:`calibrate_checkpoint` runs the trained model (frozen) over its training data's kind of
clips and over synthetic outliers, fits the rule on the ``train`` split's statistics, sets its
threshold on the ``val`` split's, measures the rejection on held-out validation clips of both,
and returns the model with the rule in place; ``respike open-set`` (:mod:`respike.models.cli`)
saves it as an ordinary checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from respike.models.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint
from respike.models.datasets import ClipDataset, SyntheticActions, SyntheticOutliers, open_dataset
from respike.models.evaluation import trained_data_options
from respike.models.hybrid import Clip, HybridReSpike
from respike.models.open_set import OpenSetRule, fit_open_set


@dataclass(frozen=True)
class StepStatistics:
    """Per-step statistics ``(N, T, D)``, the step outputs ``(N, T, outputs)`` and each clip's
    label ``(N,)`` of a dataset run through a model."""

    stats: np.ndarray
    outputs: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def step_statistics(
    model: HybridReSpike, dataset: ClipDataset, *, batch_size: int = 16
) -> StepStatistics:
    """Run every clip of ``dataset`` through ``model`` (eval mode) and keep what each step gives."""
    was_training = model.training
    model.eval()
    stats, outputs, labels = [], [], []
    for keyframes, steps, label in DataLoader(dataset, batch_size=batch_size):
        out = model(Clip(keyframes, steps))
        stats.append(out.stats.numpy())
        outputs.append(out.step_logits.numpy())
        labels.append(label.numpy())
    model.train(was_training)
    return StepStatistics(np.concatenate(stats), np.concatenate(outputs), np.concatenate(labels))


@dataclass(frozen=True)
class CalibrationReport:
    """How a fitted rule does on held-out validation clips (shares of steps rejected)."""

    known_rejected: float
    outliers_rejected: dict[str, float]
    fit_steps: int
    background_steps: int
    quantile: float
    shrinkage: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored in the checkpoint's ``extra["open_set"]``)."""
        return asdict(self)


def with_rule(model: HybridReSpike, rule: OpenSetRule | None) -> HybridReSpike:
    """A copy of ``model`` (eval mode) that applies ``rule`` (``None``: no rule, the plain class
    logits); ``model`` is left as it was."""
    config = replace(model.config, open_set=None if rule is None else rule.config)
    result = model.rebuilt(config, fresh=("open_set.",))
    if rule is not None:
        assert result.open_set is not None
        result.open_set.load_state_dict(rule.state_dict())
    return result


def calibrate(
    model: HybridReSpike,
    known: ClipDataset,
    validation: ClipDataset,
    outliers: ClipDataset,
    outliers_validation: ClipDataset,
    *,
    quantile: float = 0.99,
    shrinkage: float = 0.2,
    batch_size: int = 16,
) -> tuple[HybridReSpike, CalibrationReport]:
    """Fit a rule for ``model`` on ``known`` and ``outliers`` (threshold from ``validation``)
    and measure it on ``validation`` and ``outliers_validation``."""
    start = time.perf_counter()
    base = model if model.open_set is None else with_rule(model, None)
    fit = step_statistics(base, known, batch_size=batch_size)
    back = step_statistics(base, outliers, batch_size=batch_size)
    val = step_statistics(base, validation, batch_size=batch_size)
    back_val = step_statistics(base, outliers_validation, batch_size=batch_size)
    steps = fit.stats.shape[1]
    rule = fit_open_set(
        _flat(fit.stats),
        np.repeat(fit.labels, steps),
        _flat(back.stats),
        np.repeat(back.labels, back.stats.shape[1]),
        _flat(val.stats),
        quantile=quantile,
        shrinkage=shrinkage,
    )
    with torch.no_grad():
        known_rejected = float((rule.score(torch.from_numpy(_flat(val.stats))) > 0).float().mean())
        scores = rule.score(torch.from_numpy(back_val.stats)) > 0  # (N, T)
    kinds = outliers_validation.class_names
    per_kind = {
        kind: float(scores[torch.from_numpy(back_val.labels == i)].float().mean())
        for i, kind in enumerate(kinds)
        if (back_val.labels == i).any()
    }
    report = CalibrationReport(
        known_rejected=known_rejected,
        outliers_rejected=per_kind,
        fit_steps=int(fit.stats.shape[0] * steps),
        background_steps=int(back.stats.shape[0] * back.stats.shape[1]),
        quantile=quantile,
        shrinkage=shrinkage,
        seconds=time.perf_counter() - start,
    )
    return with_rule(base, rule), report


def calibrate_checkpoint(
    checkpoint: str,
    *,
    clips: int = 160,
    val_clips: int = 96,
    outlier_clips: int = 96,
    quantile: float = 0.99,
    shrinkage: float = 0.2,
    batch_size: int = 16,
) -> tuple[Checkpoint, CalibrationReport]:
    """Fit ``checkpoint``'s rule on clips like its training data (``train`` seeds), threshold
    and measure on ``val`` seeds; outliers are rendered in its training scene.

    Only checkpoints trained on the synthetic generator can be calibrated this way: their own
    kind of validation data is unlimited (a real dataset's test split must not pick settings).
    """
    loaded = load_checkpoint(resolve_checkpoint(checkpoint))
    options = trained_data_options(loaded)
    if loaded.extra.get("data", {}).get("kind") != "SyntheticActions":
        raise ValueError(
            f"{loaded.path}: trained on {loaded.extra.get('data', {}).get('kind', 'unknown')} "
            "data; an open-set rule is calibrated on synthetic training data only"
        )
    spec = loaded.input_spec

    def known(split: str, count: int) -> ClipDataset:
        return open_dataset(
            "synthetic",
            spec,
            options=replace(options, split=split, clips=count),
            class_names=loaded.class_names,
        )

    train = known("train", clips)
    val = known("val", val_clips)
    assert isinstance(train, SyntheticActions)

    def outliers(split: str, count: int) -> SyntheticOutliers:
        return SyntheticOutliers(
            spec,
            split=split,
            clips=count,
            segments=train.segments,
            scene=train.scene,
            dvs=train.dvs,
        )

    model, report = calibrate(
        loaded.model,
        train,
        val,
        outliers("train", outlier_clips),
        outliers("val", outlier_clips),
        quantile=quantile,
        shrinkage=shrinkage,
        batch_size=batch_size,
    )
    extra = {**loaded.extra, "open_set": report.to_dict()}
    return replace(loaded, model=model, extra=extra), report


def _flat(stats: np.ndarray) -> np.ndarray:
    return stats.reshape(-1, stats.shape[-1])


__all__ = [
    "CalibrationReport",
    "StepStatistics",
    "calibrate",
    "calibrate_checkpoint",
    "step_statistics",
    "with_rule",
]
