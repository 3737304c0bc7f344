"""Evaluation of respike models: accuracy, confusion, energy next to ``r3d_18``, ablations.

:func:`evaluate` classifies every clip of a dataset and reports accuracy, per-class accuracy,
the confusion matrix (also as a PNG drawn with OpenCV, :func:`confusion_image`) and the energy
per prediction measured on the clips next to the ANN-only ``r3d_18`` reference on clips of the
same length. :func:`evaluate_checkpoint` does it for a checkpoint on a data SPEC, rendering
synthetic data like the checkpoint's training data; ``respike eval`` (:mod:`respike.models.cli`)
adds its ablations and prints :func:`format_report`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from respike.models.adaptive import AdaptiveSettings, IdleGate, KeyframePolicy, stream_clip
from respike.models.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint
from respike.models.datasets import ClipDataset, DataOptions, open_dataset
from respike.models.energy import measure_energy, r3d18_reference
from respike.models.hybrid import Clip, HybridReSpike


@dataclass(frozen=True)
class EnergySummary:
    """Energy of a model's predictions measured on evaluation clips, next to ``r3d_18``'s.

    ``prediction_pj``: one per-step prediction, the key frame amortised over its ``K`` steps;
    ``clip_pj``: all ``steps`` of a clip (ReSpike's clip prediction); ``reference_clip_pj``: an
    ANN-only ``r3d_18`` on a clip of the same ``steps`` frames at ``reference_size`` (W, H);
    ``ratio``: ``clip_pj / reference_clip_pj``.
    """

    prediction_pj: float
    clip_pj: float
    reference_clip_pj: float
    ratio: float
    steps: int
    reference_size: tuple[int, int]
    clips_measured: int
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class EvalReport:
    """Results of :func:`evaluate` on one dataset (labels in the model's class order).

    ``accuracy`` and ``per_class`` count labelled clips only (``None`` without any); a model
    with an open-set rule may answer ``no action``, which counts as wrong there and in
    ``rejected``; ``closed_accuracy`` is the best known class's accuracy, rule or not.
    ``confusion[i][j]`` counts clips of true class ``i`` predicted as ``j``; ``predictions``
    counts every clip's prediction by name.
    """

    accuracy: float | None
    closed_accuracy: float | None
    rejected: int
    clips: int
    class_names: tuple[str, ...]
    per_class: Mapping[str, Mapping[str, float | int | None]]
    confusion: tuple[tuple[int, ...], ...]
    predictions: Mapping[str, int]
    energy: EnergySummary | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "accuracy": self.accuracy,
            "closed_accuracy": self.closed_accuracy,
            "rejected": self.rejected,
            "clips": self.clips,
            "class_names": list(self.class_names),
            "per_class": {k: dict(v) for k, v in self.per_class.items()},
            "confusion": [list(r) for r in self.confusion],
            "predictions": dict(self.predictions),
            "energy": None if self.energy is None else _energy_dict(self.energy),
            "seconds": self.seconds,
        }


def _energy_dict(energy: EnergySummary) -> dict[str, Any]:
    out = asdict(energy)
    out["reference_size"] = list(energy.reference_size)
    return out


def check_model_fits(model: HybridReSpike, dataset: ClipDataset) -> None:
    """Raise unless ``dataset`` makes the inputs ``model`` takes (its spec; key frames if used)."""
    if model.mode != "snn" and not dataset.has_keyframes:
        raise ValueError(
            f"{type(dataset).__name__} has no RGB key frames; only an 'snn'-mode model can "
            f"use it (this one is {model.mode!r})"
        )
    if dataset.input_spec != model.config.input_spec:
        raise ValueError("the dataset makes inputs for another input spec than the model's")


def progress_bar(iterable: Iterable[Any], *, enabled: bool, total: int, desc: str) -> Any:
    """``iterable`` behind a tqdm bar when ``enabled`` (tqdm imported only then)."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def label_map(dataset_names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """For each dataset class, the model's class of the same name; unknown names are an error."""
    index = {name: i for i, name in enumerate(model_names)}
    missing = [n for n in dataset_names if n not in index]
    if missing:
        raise ValueError(
            f"the data has classes the model does not know: {missing}; model classes: "
            f"{', '.join(model_names)}"
        )
    return [index[n] for n in dataset_names]


@torch.no_grad()
def evaluate(
    model: HybridReSpike,
    dataset: ClipDataset,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 16,
    energy_clips: int = 0,
    progress: bool = False,
) -> EvalReport:
    """Classify every clip of ``dataset`` with ``model`` (put in eval mode, restored after).

    ``class_names`` are the model's (default: the dataset's, i.e. trained on it); dataset labels
    are matched to them by name. ``energy_clips > 0`` measures the energy per prediction on the
    first that many clips.
    """
    start = time.perf_counter()
    check_model_fits(model, dataset)
    names = tuple(class_names or dataset.class_names)
    mapping = label_map(dataset.class_names, names)
    was_training = model.training
    model.eval()
    n = len(names)
    outputs = model.config.output_names(names)
    confusion = np.zeros((n, n), dtype=np.int64)
    rejected = np.zeros(n, dtype=np.int64)
    closed_correct = 0
    predicted = np.zeros(len(outputs), dtype=np.int64)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for keyframes, steps, labels in progress_bar(
        loader, enabled=progress, total=len(loader), desc="eval"
    ):
        logits = model(Clip(keyframes, steps)).logits
        guess = logits.argmax(-1).numpy()
        closed = logits[:, :n].argmax(-1).numpy()
        np.add.at(predicted, guess, 1)
        for true, g, c in zip(labels.tolist(), guess.tolist(), closed.tolist(), strict=True):
            if true >= 0:
                if g < n:
                    confusion[mapping[true], g] += 1
                else:
                    rejected[mapping[true]] += 1
                closed_correct += int(c == mapping[true])
    energy = _measure(model, dataset, energy_clips) if energy_clips > 0 else None
    model.train(was_training)
    labelled = int(confusion.sum() + rejected.sum())
    per_class: dict[str, dict[str, float | int | None]] = {}
    for i, name in enumerate(names):
        total = int(confusion[i].sum() + rejected[i])
        if total:
            per_class[name] = {
                "accuracy": float(confusion[i, i] / total),
                "clips": total,
                "rejected": int(rejected[i]),
            }
    return EvalReport(
        accuracy=float(np.trace(confusion) / labelled) if labelled else None,
        closed_accuracy=closed_correct / labelled if labelled else None,
        rejected=int(rejected.sum()),
        clips=len(dataset),
        class_names=names,
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        predictions={outputs[i]: int(c) for i, c in enumerate(predicted) if c},
        energy=energy,
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class RejectionReport:
    """How often a model says ``no action`` on data that holds none of its classes.

    ``clips_rejected``: the share of clips whose prediction is ``no action``; ``steps_rejected``:
    the share of per-step outputs (what the live pipeline's raw label says each step).
    """

    clips: int
    clips_rejected: float
    steps: int
    steps_rejected: float
    predictions: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {**asdict(self), "predictions": dict(self.predictions)}


@torch.no_grad()
def evaluate_rejection(
    model: HybridReSpike, dataset: ClipDataset, class_names: Sequence[str], *, batch_size: int = 16
) -> RejectionReport:
    """Run every clip of ``dataset`` (labels ignored) and count the ``no action`` answers.

    A model without an open-set rule never says it: its rejection is 0.
    """
    check_model_fits(model, dataset)
    outputs = model.config.output_names(class_names)
    was_training = model.training
    model.eval()
    predicted = np.zeros(len(outputs), dtype=np.int64)
    steps = rejected_steps = 0
    for keyframes, clip_steps, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        out = model(Clip(keyframes, clip_steps))
        np.add.at(predicted, out.logits.argmax(-1).numpy(), 1)
        step_guess = out.step_logits.argmax(-1)
        steps += step_guess.numel()
        if model.open_set is not None:
            rejected_steps += int((step_guess == len(class_names)).sum())
    model.train(was_training)
    clips = int(predicted.sum())
    rejected_clips = int(predicted[len(class_names) :].sum())
    return RejectionReport(
        clips=clips,
        clips_rejected=rejected_clips / clips if clips else 0.0,
        steps=steps,
        steps_rejected=rejected_steps / steps if steps else 0.0,
        predictions={outputs[i]: int(c) for i, c in enumerate(predicted) if c},
    )


@dataclass(frozen=True)
class AdaptiveReport:
    """Clips streamed as the ``model`` node runs them, its work following the scene
    (:mod:`respike.models.adaptive`), next to the full computation of the same clips."""

    accuracy: float | None
    full_accuracy: float | None
    changed: int
    """Clips whose prediction differs from the full computation's."""
    held_share: float
    """Share of the steps not computed."""
    ann_passes_share: float
    """ANN passes per key frame (1.0: the fixed schedule)."""
    clips: int
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_adaptive(
    model: HybridReSpike,
    dataset: ClipDataset,
    settings: AdaptiveSettings,
    *,
    class_names: Sequence[str] | None = None,
) -> AdaptiveReport:
    """Stream every clip of ``dataset`` step by step under ``settings`` (fresh for each clip,
    as a node starting on it) and compare its clip predictions (the mean of the segments'
    last logits, as :meth:`HybridReSpike.forward`) with the full computation's."""
    check_model_fits(model, dataset)
    names = tuple(class_names or dataset.class_names)
    mapping = label_map(dataset.class_names, names)
    was_training = model.training
    model.eval()
    k = model.keyframe_interval
    correct = full_correct = labelled = changed = held = steps = passes = keyframes_seen = 0
    with torch.no_grad():
        for keyframes, clip_steps, label in DataLoader(dataset, batch_size=1, shuffle=False):
            full = int(model(Clip(keyframes, clip_steps)).logits[0].argmax())
            gate, policy = IdleGate(settings), KeyframePolicy(settings)
            logits = stream_clip(model, keyframes[0], clip_steps[0], gate, policy)
            adaptive = int(logits[k - 1 :: k].mean(dim=0).argmax())
            changed += int(adaptive != full)
            held, steps = held + gate.held, steps + len(logits)
            passes, keyframes_seen = passes + policy.passes, keyframes_seen + keyframes.shape[1]
            if int(label) >= 0:
                labelled += 1
                correct += int(adaptive == mapping[int(label)])
                full_correct += int(full == mapping[int(label)])
    model.train(was_training)
    return AdaptiveReport(
        accuracy=correct / labelled if labelled else None,
        full_accuracy=full_correct / labelled if labelled else None,
        changed=changed,
        held_share=held / steps if steps else 0.0,
        ann_passes_share=passes / keyframes_seen if keyframes_seen else 0.0,
        clips=len(dataset),
        settings=asdict(settings),
    )


def _measure(model: HybridReSpike, dataset: ClipDataset, clips: int) -> EnergySummary:
    """Energy per prediction on the first ``clips`` clips, and the r3d_18 reference.

    The reference sees the frames the model's widest input sees: the key frames when it has an
    ANN, else the SNN's input.
    """
    subset = Subset(dataset, range(min(clips, len(dataset))))
    keyframes, steps, _ = next(iter(DataLoader(subset, batch_size=len(subset))))
    report = measure_energy(model, Clip(keyframes, steps))
    spec = model.config.input_spec
    if model.ann is not None:
        width, height = spec.keyframe_width, spec.keyframe_height
    else:
        width, height = spec.snn_width, spec.snn_height
    n_steps = steps.shape[1]
    reference = r3d18_reference(
        num_classes=model.config.num_classes, frames=n_steps, size=(height, width)
    )
    clip_pj = report.clip(n_steps).energy_pj()
    return EnergySummary(
        prediction_pj=report.prediction.energy_pj(),
        clip_pj=clip_pj,
        reference_clip_pj=reference.energy_pj(),
        ratio=clip_pj / reference.energy_pj(),
        steps=n_steps,
        reference_size=(width, height),
        clips_measured=len(subset),
        detail=report.to_dict(),
    )


def confusion_image(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str = ""
) -> np.ndarray:
    """The confusion matrix as a BGR image: row-normalised cells, counts, class names.

    Rows are true classes, columns predictions (numbered; the row labels name them). Drawn with
    OpenCV so evaluation needs no plotting library.
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    n = matrix.shape[0]
    cell = 34 if n <= 20 else 22
    label_w = 12 + 7 * max((len(f"{i}: {name}") for i, name in enumerate(class_names)), default=0)
    top = 48
    width, height = label_w + n * cell + 10, top + n * cell + 10
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    colours = cv2.applyColorMap((share * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    if title:
        cv2.putText(image, title, (6, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "predicted ->", (label_w, 32), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(n):
        cv2.putText(
            image, str(j), (label_w + j * cell + 4, top - 4), font, 0.33, (0, 0, 0), 1, cv2.LINE_AA
        )
    for i in range(n):
        y = top + i * cell
        cv2.putText(
            image,
            f"{i}: {class_names[i]}",
            (6, y + cell // 2 + 4),
            font,
            0.33,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        for j in range(n):
            x = label_w + j * cell
            colour = tuple(int(c) for c in colours[i, j])
            cv2.rectangle(image, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
            if matrix[i, j]:
                ink = (0, 0, 0) if share[i, j] > 0.5 else (255, 255, 255)
                cv2.putText(
                    image,
                    str(int(matrix[i, j])),
                    (x + 3, y + cell // 2 + 4),
                    font,
                    0.33,
                    ink,
                    1,
                    cv2.LINE_AA,
                )
        cv2.rectangle(
            image, (label_w, y), (label_w + n * cell - 1, y + cell - 1), (200, 200, 200), 1
        )
    return image


def ablation_paths(checkpoint: Path) -> dict[str, Path]:
    """The ``snn`` and ``ann`` ablations stored beside ``checkpoint`` (``NAME-snn.pt`` ...)."""
    found = {}
    for mode in ("snn", "ann"):
        path = checkpoint.with_name(f"{checkpoint.stem}-{mode}{checkpoint.suffix}")
        if path.is_file():
            found[mode] = path
    return found


def trained_data_options(loaded: Checkpoint) -> DataOptions:
    """Data options that render synthetic clips like ``loaded``'s training data (scene,
    emulator settings, classes, clip length)."""
    trained = dict(loaded.extra.get("data", {}))
    segments = trained.get(
        "segments", loaded.extra.get("training", {}).get("segments", DataOptions.segments)
    )
    return DataOptions(
        segments=int(segments),
        synthetic={k: trained[k] for k in ("scene", "dvs", "classes") if k in trained},
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    *,
    split: str | None = None,
    seed: int | None = None,
    clips: int | None = None,
    batch_size: int = 16,
    energy_clips: int = 8,
    ood: str | None = None,
    adaptive: AdaptiveSettings | None = None,
) -> tuple[EvalReport, dict[str, Any]]:
    """Load ``checkpoint`` (path or shipped name) and evaluate it on the ``data`` SPEC.

    ``split``, ``seed`` and ``clips`` (synthetic data) default to :class:`DataOptions`': the
    test split, i.e. test seeds and held-out backgrounds. Synthetic data is rendered like the
    checkpoint's training data (scene, framing, emulator settings, clip length). ``ood`` is a
    data SPEC holding none of the classes: its :class:`RejectionReport` goes in the description
    as ``"ood"``. ``adaptive`` streams the clips as the model node does with those settings
    too: its :class:`AdaptiveReport` goes in the description as ``"adaptive"``. Returns the
    report and a description of what was evaluated.
    """
    path = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint(path)
    given: dict[str, Any] = {"split": split, "seed": seed, "clips": clips}
    options = replace(
        trained_data_options(loaded),
        **{name: value for name, value in given.items() if value is not None},
    )
    dataset = open_dataset(
        data,
        loaded.input_spec,
        options=options,
        class_names=loaded.class_names,
    )
    report = evaluate(
        loaded.model,
        dataset,
        class_names=loaded.class_names,
        batch_size=batch_size,
        energy_clips=energy_clips,
    )
    about: dict[str, Any] = {
        "checkpoint": str(path),
        "mode": loaded.config.mode,
        "data": data,
        "dataset": dataset.describe(),
    }
    if ood is not None:
        outside = open_dataset(ood, loaded.input_spec, options=options)
        rejection = evaluate_rejection(
            loaded.model, outside, loaded.class_names, batch_size=batch_size
        )
        about["ood"] = {"data": ood, **rejection.to_dict()}
    if adaptive is not None:
        about["adaptive"] = evaluate_adaptive(
            loaded.model, dataset, adaptive, class_names=loaded.class_names
        ).to_dict()
    return report, about


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_report(
    about: Mapping[str, Any],
    report: EvalReport,
    ablations: Mapping[str, tuple[EvalReport, Mapping[str, Any]]],
) -> str:
    """The text ``respike eval`` prints: accuracy per class, then a Markdown table of the model
    and its ``ablations`` (accuracy, energy, ratio to ``r3d_18``)."""
    lines = [
        f"checkpoint {about['checkpoint']} ({about['mode']}) on {about['data']}: "
        f"{report.clips} clips, accuracy {_pct(report.accuracy)}",
    ]
    if report.rejected or "no action" in report.predictions:
        lines.append(
            f"no action for {report.rejected} labelled clips; closed-set accuracy "
            f"(best known class) {_pct(report.closed_accuracy)}"
        )
    if "ood" in about:
        ood = about["ood"]
        lines.append(
            f"out of distribution ({ood['data']}): no action for "
            f"{_pct(ood['clips_rejected'])} of {ood['clips']} clips, "
            f"{_pct(ood['steps_rejected'])} of {ood['steps']} steps"
        )
    if "adaptive" in about:
        a = about["adaptive"]
        lines.append(
            f"streamed following the scene ({', '.join(f'{k}={v}' for k, v in a['settings'].items())}): "
            f"accuracy {_pct(a['accuracy'])} against {_pct(a['full_accuracy'])} computed in "
            f"full, {a['changed']} clips changed, {_pct(a['held_share'])} of steps held, "
            f"{a['ann_passes_share']:.2f} ANN passes per key frame"
        )
    if report.per_class:
        width = max(len(n) for n in report.per_class)
        lines.append("per class:")
        for name, row in report.per_class.items():
            acc = row["accuracy"]
            lines.append(
                f"  {name:<{width}}  {_pct(None if acc is None else float(acc))}  ({row['clips']} clips)"
            )
    else:
        lines.append(
            "predictions: " + ", ".join(f"{k} x{v}" for k, v in report.predictions.items())
        )
    rows = [("model", report, about)] + [(name, r, a) for name, (r, a) in ablations.items()]
    lines.append("")
    lines.append(
        "| model | mode | accuracy | energy/prediction (nJ) | energy/clip (µJ) | vs r3d_18 |"
    )
    lines.append("|---|---|---:|---:|---:|---:|")
    for name, r, a in rows:
        e = r.energy
        energy = (
            f"{e.prediction_pj / 1e3:.1f} | {e.clip_pj / 1e6:.2f} | 1/{1 / e.ratio:.0f}"
            if e is not None
            else "- | - | -"
        )
        lines.append(f"| {name} | {a['mode']} | {_pct(r.accuracy)} | {energy} |")
    if report.energy is not None:
        e = report.energy
        lines.append(
            f"r3d_18 reference: {e.reference_clip_pj / 1e6:.1f} µJ per clip of {e.steps} frames "
            f"at {e.reference_size[0]}x{e.reference_size[1]}"
        )
    return "\n".join(lines)


__all__ = [
    "EnergySummary",
    "EvalReport",
    "RejectionReport",
    "ablation_paths",
    "check_model_fits",
    "confusion_image",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_rejection",
    "format_report",
    "label_map",
    "progress_bar",
    "trained_data_options",
]
