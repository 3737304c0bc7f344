"""Training and evaluation of respike models: the loops behind ``respike train`` and ``respike eval``.

Training is surrogate-gradient backpropagation through time: :meth:`HybridReSpike.forward` runs
the whole clip (its SNN steps are the streaming code path), the loss is the cross-entropy of the
clip logits plus, weighted by ``step_loss``, that of every step's logits (the live demo predicts
at every step). Runs are reproducible from ``seed``: the model is initialised from it, each epoch
shuffles with a generator seeded by ``(seed, epoch)`` and tells the dataset its epoch, so a run
resumed from its last checkpoint continues exactly as if it had never stopped.

Each epoch writes ``OUT/last.pt`` (a model checkpoint, see :mod:`respike.models.checkpoint`) and
``OUT/last.state.pt`` (optimizer, schedule and history, for ``--resume``); ``OUT/best.pt`` is
the checkpoint of the best validation accuracy (the last epoch when there is no validation
data), and ``--save-every N`` keeps ``OUT/epoch-NNN.pt`` too. Under ``torchrun`` the run is
data-parallel (DDP, gloo on CPU): each process trains on its share of every epoch, rank 0
validates and writes.

Evaluation (:func:`evaluate`) reports accuracy, per-class accuracy, the confusion matrix (also as
a PNG drawn with OpenCV), the energy per prediction measured on the clips next to the ANN-only
``r3d_18`` reference on clips of the same length, and the same for ablation checkpoints.

The CLI (``nodes/cli.py``) adds :func:`add_train_arguments`/:func:`run_train` and
:func:`add_eval_arguments`/:func:`run_eval`; ``python -m respike.models.training train|eval``
runs the same without it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast, get_args

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from respike.models.ann import ANNConfig
from respike.models.checkpoint import (
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from respike.models.datasets import (
    ClipDataset,
    DataOptions,
    DvsRandomisation,
    open_dataset,
    parse_data_spec,
)
from respike.models.energy import measure_energy, r3d18_reference
from respike.models.fusion import FusionConfig
from respike.models.hybrid import MODES, Clip, HybridReSpike, InputSpec, KeyResidual, Mode
from respike.models.neurons import LIFConfig
from respike.models.registry import get_model, list_models
from respike.models.snn import SNNConfig
from respike.synthetic import GROUPS, SceneConfig, class_names

# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoints (``extra["training"]``).

    ``data``/``val_data`` are data SPECs (:func:`respike.models.datasets.parse_data_spec`);
    ``clips`` and ``val_clips`` size synthetic sets; ``resample`` draws new synthetic clips
    every epoch. ``snn``/``ann``/``fusion`` override the builder's defaults when given.
    ``batch_size`` is per process. ``lr`` peaks after ``warmup`` of the first epoch's steps,
    then follows a cosine to zero at the end of ``epochs``. ``init`` lists checkpoints whose
    weights start the model wherever names and shapes match (e.g. a hybrid started from its
    trained ``snn`` and ``ann`` ablations).
    """

    data: str
    out: Path
    val_data: str | None = None
    model: str = "respike_r18_lite"
    mode: Mode = "hybrid"
    input_spec: InputSpec = field(default_factory=InputSpec)
    snn: SNNConfig | None = None
    ann: ANNConfig | None = None
    fusion: FusionConfig | None = None
    classes: tuple[str, ...] = ()
    segments: int = 4
    clips: int = 760
    val_clips: int = 190
    scene: SceneConfig | None = None
    dvs: DvsRandomisation | None = None
    resample: bool = False
    augment: bool = False
    cache_dir: Path | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.5
    step_loss: float = 0.5
    grad_clip: float = 5.0
    seed: int = 0
    workers: int = 0
    threads: int = 0
    save_every: int = 0
    init: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(list_models())}")
        for name in ("epochs", "batch_size", "segments", "clips", "val_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.step_loss < 0 or self.grad_clip <= 0:
            raise ValueError("lr and grad_clip must be positive, weight_decay and step_loss >= 0")
        if self.workers < 0 or self.threads < 0 or self.save_every < 0:
            raise ValueError("workers, threads and save_every must be >= 0")
        parse_data_spec(self.data)
        if self.val_data is not None:
            parse_data_spec(self.val_data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint's ``extra`` (paths as strings, configs as dicts)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif hasattr(value, "__dataclass_fields__"):
                value = asdict(value)
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            out[f.name] = value
        return out


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss and accuracy, validation accuracy (if any), seconds."""

    epoch: int
    loss: float
    accuracy: float
    val_accuracy: float | None
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` leaves: the trained model (unwrapped), checkpoints written, history."""

    model: HybridReSpike
    class_names: tuple[str, ...]
    best: Path | None
    last: Path | None
    history: tuple[EpochStats, ...]
    seconds: float


# --------------------------------------------------------------------------------------------
# Distributed helpers


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process validates, writes checkpoints and shows progress."""
        return self.rank == 0


def init_distributed(init_method: str | None = None) -> DistInfo:
    """Join the process group torchrun (or ``init_method``) describes; a no-op when alone.

    Reads ``RANK``/``WORLD_SIZE`` from the environment (torchrun sets them, with
    ``MASTER_ADDR``/``MASTER_PORT``); ``init_method`` (e.g. ``file:///tmp/x``) replaces the
    environment rendezvous. The backend is gloo: CPU tensors, no GPU needed.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(
            "gloo", init_method=init_method or "env://", rank=rank, world_size=world
        )
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size())


def replica_checksum(model: nn.Module) -> list[float]:
    """Sum and sum of squares of every parameter and buffer: equal on identical replicas."""
    with torch.no_grad():
        tensors = [
            t.detach().double() for t in model.state_dict().values() if t.is_floating_point()
        ]
        return [float(sum(t.sum() for t in tensors)), float(sum(t.square().sum() for t in tensors))]


# --------------------------------------------------------------------------------------------
# Building blocks


def build_model(config: TrainConfig, num_classes: int) -> HybridReSpike:
    """The model ``config`` names, initialised from ``config.seed``."""
    torch.manual_seed(config.seed)
    overrides: dict[str, object] = {}
    for name in ("snn", "ann", "fusion"):
        value = getattr(config, name)
        if value is not None:
            overrides[name] = value
    return get_model(
        config.model,
        num_classes=num_classes,
        mode=config.mode,
        input_spec=config.input_spec,
        **overrides,
    )


def data_options(config: TrainConfig, *, split: str, clips: int, resample: bool) -> DataOptions:
    """:class:`DataOptions` of a training run for one split."""
    synthetic: dict[str, Any] = {}
    if config.scene is not None:
        synthetic["scene"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config.scene).items()
        }
    if config.dvs is not None:
        synthetic["dvs"] = {k: list(v) for k, v in asdict(config.dvs).items()}
    return DataOptions(
        split=split,
        clips=clips,
        seed=config.seed,
        segments=config.segments,
        augment=config.augment and split == "train",
        resample=resample,
        cache_dir=config.cache_dir,
        synthetic=synthetic,
    )


def initialise_from(model: HybridReSpike, path: str | Path, class_names: Sequence[str]) -> int:
    """Copy every tensor of checkpoint ``path`` whose name and shape match into ``model``.

    The head is copied only when the checkpoint has the same classes (its rows are per class);
    returns how many tensors were copied. Tensors the checkpoint lacks keep their values.
    """
    source = load_checkpoint(resolve_checkpoint(path))
    own = model.state_dict()
    same_classes = tuple(source.class_names) == tuple(class_names)
    copied = {
        name: value
        for name, value in source.model.state_dict().items()
        if name in own
        and own[name].shape == value.shape
        and (same_classes or not name.startswith("head."))
    }
    model.load_state_dict(copied, strict=False)
    return len(copied)


def clip_loss(
    logits: torch.Tensor, step_logits: torch.Tensor, labels: torch.Tensor, step_weight: float
) -> torch.Tensor:
    """Cross-entropy of the clip logits plus ``step_weight`` times that of every step's logits."""
    loss = F.cross_entropy(logits, labels)
    if step_weight > 0:
        steps = step_logits.shape[1]
        loss = loss + step_weight * F.cross_entropy(
            step_logits.flatten(0, 1), labels.repeat_interleave(steps)
        )
    return loss


def _check_model_fits(model: HybridReSpike, dataset: ClipDataset) -> None:
    if model.mode != "snn" and not dataset.has_keyframes:
        raise ValueError(
            f"{type(dataset).__name__} has no RGB key frames; only an 'snn'-mode model can "
            f"use it (this one is {model.mode!r})"
        )
    if dataset.input_spec != model.config.input_spec:
        raise ValueError("the dataset makes inputs for another input spec than the model's")


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _progress(iterable: Iterable[Any], *, enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# Training


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    resume: Path | None = None,
    extra: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    init_method: str | None = None,
) -> TrainResult:
    """Train the model ``config`` describes; returns it with the checkpoints written.

    ``resume`` is a folder (or its ``last.pt``) of an earlier run of the same config: training
    continues after its last finished epoch. ``extra`` is added to every checkpoint's metadata
    (e.g. the command line). ``log`` receives one line per epoch (default: stderr, rank 0).
    """
    start_time = time.perf_counter()
    info = init_distributed(init_method)
    if config.threads:
        torch.set_num_threads(config.threads)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    classes = config.classes or None
    train_set = open_dataset(
        config.data,
        config.input_spec,
        options=data_options(config, split="train", clips=config.clips, resample=config.resample),
        class_names=classes,
    )
    val_set = None
    if config.val_data is not None and info.main:
        val_set = open_dataset(
            config.val_data,
            config.input_spec,
            options=data_options(config, split="val", clips=config.val_clips, resample=False),
            class_names=train_set.class_names,
        )
    names = train_set.class_names
    model = build_model(config, len(names))
    _check_model_fits(model, train_set)
    for path in config.init:
        loaded = initialise_from(model, path, names)
        if info.main:
            say(f"initialised {loaded} tensors from {path}")

    steps_per_epoch = len(train_set) // (config.batch_size * info.world)
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(train_set)} training clips are fewer than one batch of {config.batch_size} "
            f"per process x {info.world} process(es)"
        )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    warmup_steps = max(1, round(config.warmup * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.epochs * steps_per_epoch, warmup_steps)
    )
    history: list[EpochStats] = []
    best_accuracy = -1.0
    first_epoch = 0
    out = Path(config.out)
    if resume is not None:
        first_epoch, best_accuracy, history = _resume(resume, model, optimizer, scheduler)
        if info.main:
            say(f"resumed from {resume} after epoch {first_epoch}")

    wrapped: nn.Module = model
    if info.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(model)
    meta = {
        "training": config.to_dict(),
        "data": train_set.describe(),
        **(dict(extra) if extra else {}),
    }
    best_path: Path | None = out / "best.pt" if info.main else None
    last_path: Path | None = out / "last.pt" if info.main else None
    for epoch in range(first_epoch, config.epochs):
        epoch_start = time.perf_counter()
        loss, accuracy = _train_epoch(
            wrapped, train_set, optimizer, scheduler, config, epoch, info, progress
        )
        val_accuracy = None
        if val_set is not None:
            val_accuracy = evaluate(model, val_set, batch_size=config.batch_size).accuracy
        stats = EpochStats(
            epoch + 1, loss, accuracy, val_accuracy, time.perf_counter() - epoch_start
        )
        history.append(stats)
        if info.world > 1:
            # DDP broadcasts rank 0's buffers at each forward, so after the last batch the
            # batch-norm statistics still differ; make every replica rank 0's exactly.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        if info.main:
            assert last_path is not None and best_path is not None
            metrics = {
                "epoch": epoch + 1,
                "history": [asdict(h) for h in history],
                "train_seconds": sum(h.seconds for h in history),
            }
            save_checkpoint(last_path, model, names, extra={**meta, **metrics})
            if val_accuracy is None or val_accuracy >= best_accuracy:
                best_accuracy = best_accuracy if val_accuracy is None else val_accuracy
                save_checkpoint(best_path, model, names, extra={**meta, **metrics})
            if config.save_every and (epoch + 1) % config.save_every == 0:
                path = out / f"epoch-{epoch + 1:03d}.pt"
                save_checkpoint(path, model, names, extra={**meta, **metrics})
            state_path = out / "last.state.pt"
            _save_state(state_path, epoch + 1, best_accuracy, history, optimizer, scheduler)
            val_text = f" val_acc {val_accuracy:.4f}" if val_accuracy is not None else ""
            say(
                f"epoch {epoch + 1}/{config.epochs} loss {loss:.4f} acc {accuracy:.4f}"
                f"{val_text} lr {scheduler.get_last_lr()[0]:.2e} {stats.seconds:.1f}s"
            )
        if info.world > 1:
            dist.barrier()
    model.eval()
    return TrainResult(
        model, names, best_path, last_path, tuple(history), time.perf_counter() - start_time
    )


def _train_epoch(
    model: nn.Module,
    dataset: ClipDataset,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    epoch: int,
    info: DistInfo,
    progress: bool,
) -> tuple[float, float]:
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    if info.world > 1:
        sampler: Any = DistributedSampler(
            dataset, num_replicas=info.world, rank=info.rank, seed=config.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=config.workers,
        )
    else:
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
            num_workers=config.workers,
        )
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = _progress(
        loader, enabled=progress and info.main, total=len(loader), desc=f"epoch {epoch + 1}"
    )
    for keyframes, steps, labels in bar:
        output = model(Clip(keyframes, steps))
        loss = clip_loss(output.logits, output.step_logits, labels, config.step_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += loss.detach().item() * len(labels)
        correct += int((output.logits.argmax(-1) == labels).sum())
        seen += len(labels)
        if bar is not loader:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    if info.world > 1:
        sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64)
        dist.all_reduce(sums)
        total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
    return total_loss / max(1, seen), correct / max(1, seen)


def _save_state(
    path: Path,
    epoch: int,
    best: float,
    history: Sequence[EpochStats],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    state = {
        "epoch": epoch,
        "best_accuracy": best,
        "history": [asdict(h) for h in history],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(
    where: Path,
    model: HybridReSpike,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, float, list[EpochStats]]:
    folder = where if where.is_dir() else where.parent
    checkpoint = load_checkpoint(folder / "last.pt")
    if checkpoint.config != model.config:
        raise ValueError(f"{folder / 'last.pt'}: its model config differs from this run's")
    model.load_state_dict(checkpoint.model.state_dict())
    state = torch.load(folder / "last.state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    history = [EpochStats(**h) for h in state["history"]]
    return int(state["epoch"]), float(state["best_accuracy"]), history


# --------------------------------------------------------------------------------------------
# Evaluation


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

    ``accuracy`` and ``per_class`` count labelled clips only (``None`` without any);
    ``confusion[i][j]`` counts clips of true class ``i`` predicted as ``j``; ``predictions``
    counts every clip's predicted class by name.
    """

    accuracy: float | None
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
    _check_model_fits(model, dataset)
    names = tuple(class_names or dataset.class_names)
    mapping = label_map(dataset.class_names, names)
    was_training = model.training
    model.eval()
    n = len(names)
    confusion = np.zeros((n, n), dtype=np.int64)
    predicted = np.zeros(n, dtype=np.int64)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for keyframes, steps, labels in _progress(
        loader, enabled=progress, total=len(loader), desc="eval"
    ):
        guess = model(Clip(keyframes, steps)).logits.argmax(-1).numpy()
        np.add.at(predicted, guess, 1)
        for true, g in zip(labels.tolist(), guess.tolist(), strict=True):
            if true >= 0:
                confusion[mapping[true], g] += 1
    energy = _measure(model, dataset, energy_clips) if energy_clips > 0 else None
    model.train(was_training)
    labelled = int(confusion.sum())
    per_class: dict[str, dict[str, float | int | None]] = {}
    for i, name in enumerate(names):
        total = int(confusion[i].sum())
        if total:
            per_class[name] = {"accuracy": float(confusion[i, i] / total), "clips": total}
    return EvalReport(
        accuracy=float(np.trace(confusion) / labelled) if labelled else None,
        clips=len(dataset),
        class_names=names,
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        predictions={names[i]: int(c) for i, c in enumerate(predicted) if c},
        energy=energy,
        seconds=time.perf_counter() - start,
    )


def _measure(model: HybridReSpike, dataset: ClipDataset, clips: int) -> EnergySummary:
    """Energy per prediction on the first ``clips`` clips, and the r3d_18 reference."""
    subset = Subset(dataset, range(min(clips, len(dataset))))
    keyframes, steps, _ = next(iter(DataLoader(subset, batch_size=len(subset))))
    report = measure_energy(model, Clip(keyframes, steps))
    spec = model.config.input_spec
    height, width = spec.keyframe_size if model.ann is not None else spec.snn_size
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


# --------------------------------------------------------------------------------------------
# Command line


def _pair(text: str) -> tuple[int, int]:
    """``64`` -> (64, 64); ``160x120`` (width x height) -> (160, 120)."""
    width, sep, height = text.lower().partition("x")
    return (int(width), int(height)) if sep else (int(width), int(width))


def _hw(size: tuple[int, int]) -> tuple[int, int]:
    """A flag's (width, height) as an :class:`InputSpec` size, (height, width)."""
    return (size[1], size[0])


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _range(text: str) -> tuple[float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH or one value")
    return (parts[0], parts[1])


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike train`` (a TOML ``--config`` file may set any of them by name)."""
    parser.add_argument(
        "--config", type=Path, help="TOML file of flag defaults (keys as flags, - or _)"
    )
    parser.add_argument("--data", help="training data SPEC (KIND:PATH or synthetic)")
    parser.add_argument(
        "--val-data", help="validation data SPEC (picks best.pt); none: best = last"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder")
    parser.add_argument(
        "--resume", type=Path, help="continue the run in this folder (or its last.pt)"
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="respike_r18_lite", choices=list_models())
    model.add_argument("--mode", default="hybrid", choices=MODES)
    model.add_argument("--snn-input", default="residual", choices=("residual", "events"))
    model.add_argument("--snn-channels", type=int, help="1 grey / 3 RGB residuals; events: 2")
    model.add_argument(
        "--key-residual",
        default="zero",
        choices=get_args(KeyResidual),
        help="a key frame's residual: zero (ReSpike) or minus the previous key frame",
    )
    model.add_argument("--snn-size", type=_pair, default=(64, 64), help="SNN input, N or WxH")
    model.add_argument("--keyframe-size", type=_pair, default=(112, 112), help="N or WxH")
    model.add_argument("--keyframe-interval", type=int, default=4, help="K: steps per key frame")
    model.add_argument("--time-bin-us", type=int, default=33_333, help="duration of one step")
    model.add_argument("--snn-widths", type=_ints, help="e.g. 16,32,64,128")
    model.add_argument("--snn-blocks", type=_ints, help="e.g. 1,1,1,1")
    model.add_argument("--snn-stem-stride", type=int, default=2)
    model.add_argument(
        "--snn-motion",
        type=_ints,
        help="shifts of the SNN's motion detectors in input pixels, e.g. 1,2,4 (residual input)",
    )
    model.add_argument(
        "--snn-motion-delays",
        type=_ints,
        help="delays of the motion detectors in steps, e.g. 1,2 (default 1)",
    )
    model.add_argument(
        "--lif-decay", type=float, help="membrane kept per step (default ReSpike's 0.25)"
    )
    model.add_argument("--ann-widths", type=_ints)
    model.add_argument("--ann-blocks", type=_ints)
    model.add_argument("--fusion-stages", type=_ints)
    model.add_argument("--fusion-head-dim", type=int, default=32)
    data = parser.add_argument_group("data")
    data.add_argument("--classes", help="synthetic classes: names or groups, comma-separated")
    data.add_argument("--segments", type=int, default=4, help="S: key frames per clip")
    data.add_argument("--clips", type=int, default=760, help="synthetic training clips per epoch")
    data.add_argument("--val-clips", type=int, default=190, help="synthetic validation clips")
    data.add_argument("--resample", action="store_true", help="new synthetic clips every epoch")
    data.add_argument("--augment", action="store_true", help="random event shifts/windows")
    data.add_argument("--cache-dir", type=Path, help="cache synthetic tensors here (.npz)")
    data.add_argument("--scene-size", type=_pair, default=(160, 120), help="synthetic render WxH")
    data.add_argument("--framing", default="full", choices=("full", "upper"))
    data.add_argument("--fps", type=float, default=30.0, help="synthetic frame rate")
    data.add_argument("--dvs-threshold", type=_range, help="synthetic events: LOW,HIGH per clip")
    data.add_argument("--dvs-mismatch", type=_range, default=(0.0, 0.0))
    data.add_argument("--dvs-noise-hz", type=_range, default=(0.0, 0.0))
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=10)
    opt.add_argument("--batch-size", type=int, default=16, help="per process")
    opt.add_argument("--lr", type=float, default=2e-3)
    opt.add_argument("--weight-decay", type=float, default=1e-4)
    opt.add_argument("--step-loss", type=float, default=0.5, help="weight of per-step losses")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    opt.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    opt.add_argument("--save-every", type=int, default=0, help="keep epoch-NNN.pt every N epochs")
    opt.add_argument(
        "--init",
        type=Path,
        action="append",
        default=[],
        help="start from this checkpoint's matching weights (repeatable)",
    )
    opt.add_argument(
        "--no-progress", action="store_true", help="no progress bar (logs: one line per epoch)"
    )


def apply_config_file(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the values of its ``--config`` TOML file where no flag was given.

    Keys are flag names (``batch-size`` or ``batch_size``); a flag left at its default takes the
    file's value, so flags on the command line win over the file.
    """
    if getattr(args, "config", None) is None:
        return args
    reference = argparse.ArgumentParser()
    add_train_arguments(reference)
    actions = {a.dest: a for a in reference._actions}
    with Path(args.config).open("rb") as f:
        values = tomllib.load(f)
    merged = vars(args).copy()
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in actions or dest == "config":
            raise ValueError(f"{args.config}: unknown key {key!r}")
        action = actions[dest]
        if merged.get(dest) != action.default:
            continue
        convert = cast(Callable[[str], Any], action.type or str)
        if isinstance(value, list) and isinstance(action, argparse._AppendAction):
            value = [convert(str(v)) for v in value]
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if action.type is not None and isinstance(value, str | int | float):
            value = cast(Callable[[str], Any], action.type)(str(value))
        merged[dest] = value
    return argparse.Namespace(**merged)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the flags of :func:`add_train_arguments` describe."""
    if not args.data:
        raise ValueError("--data SPEC is required (e.g. synthetic or nmnist:DIR)")
    channels = args.snn_channels or (2 if args.snn_input == "events" else 1)
    spec = InputSpec(
        snn_size=_hw(args.snn_size),
        snn_input=args.snn_input,
        snn_channels=channels,
        key_residual=args.key_residual,
        keyframe_size=_hw(args.keyframe_size),
        keyframe_interval=args.keyframe_interval,
        time_bin_us=args.time_bin_us,
    )
    snn = None
    if (
        args.snn_widths
        or args.snn_blocks
        or args.snn_stem_stride != 2
        or args.lif_decay
        or args.snn_motion
        or args.snn_motion_delays
    ):
        base = SNNConfig()
        snn = SNNConfig(
            widths=args.snn_widths or base.widths,
            blocks=args.snn_blocks or (1,) * len(args.snn_widths or base.widths),
            stem_stride=args.snn_stem_stride,
            lif=LIFConfig(decay=args.lif_decay) if args.lif_decay else base.lif,
            motion_shifts=args.snn_motion or (),
            motion_delays=args.snn_motion_delays or base.motion_delays,
        )
    ann = None
    if args.ann_widths or args.ann_blocks:
        ann = ANNConfig(
            widths=args.ann_widths or ANNConfig().widths, blocks=args.ann_blocks or (1, 1, 1, 1)
        )
    fusion = None
    if args.fusion_stages or args.fusion_head_dim != 32:
        fusion = FusionConfig(
            stages=args.fusion_stages or FusionConfig().stages, head_dim=args.fusion_head_dim
        )
    classes: tuple[str, ...] = ()
    if args.classes:
        names: list[str] = []
        for item in (p.strip() for p in args.classes.split(",") if p.strip()):
            names += class_names(item) if item in GROUPS else [item]
        classes = tuple(names)
    synthetic = parse_data_spec(args.data).kind == "synthetic"
    scene = None
    if synthetic:
        width, height = args.scene_size
        scene = SceneConfig(width=width, height=height, fps=args.fps, framing=args.framing)
    dvs = None
    if synthetic and args.snn_input == "events":
        dvs = DvsRandomisation(
            threshold_range=args.dvs_threshold or (0.2, 0.2),
            mismatch_range=args.dvs_mismatch,
            noise_hz_range=args.dvs_noise_hz,
        )
    val_data = args.val_data
    if val_data is None and synthetic:
        val_data = "synthetic?split=val"
    return TrainConfig(
        data=args.data,
        out=args.out,
        val_data=val_data,
        model=args.model,
        mode=args.mode,
        input_spec=spec,
        snn=snn,
        ann=ann,
        fusion=fusion,
        classes=classes,
        segments=args.segments,
        clips=args.clips,
        val_clips=args.val_clips,
        scene=scene,
        dvs=dvs,
        resample=args.resample,
        augment=args.augment,
        cache_dir=args.cache_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        step_loss=args.step_loss,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        save_every=args.save_every,
        init=tuple(args.init),
    )


def run_train(args: argparse.Namespace) -> int:
    """``respike train``: train, print where the checkpoints went; 0 on success."""
    args = apply_config_file(args)
    config = train_config_from_args(args)
    command = getattr(args, "command_line", None) or " ".join(["respike", *sys.argv[1:]])
    result = train(
        config,
        progress=not args.no_progress and sys.stderr.isatty(),
        resume=args.resume,
        extra={"command": command},
    )
    if result.best is not None:
        print(
            f"trained {len(result.history)} epoch(s) in {result.seconds:.0f} s; best: "
            f"{result.best}, last: {result.last}",
            file=sys.stderr,
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike eval CHECKPOINT --data SPEC``."""
    parser.add_argument(
        "checkpoint", help="checkpoint path or shipped name (actions, gestures-dvs, nmnist)"
    )
    parser.add_argument("--data", required=True, help="data SPEC (KIND:PATH or synthetic)")
    parser.add_argument("--split", default="test", help="split of the data (default test)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: seed of the test clips")
    parser.add_argument("--clips", type=int, default=190, help="synthetic: number of clips")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--energy-clips", type=int, default=8, help="clips for energy (0: skip)")
    parser.add_argument("--confusion", type=Path, help="write the confusion matrix PNG here")
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also evaluate the NAME-snn and NAME-ann checkpoints next to CHECKPOINT",
    )
    parser.add_argument(
        "--ablation",
        type=str,
        action="append",
        default=[],
        help="another checkpoint to compare (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def ablation_paths(checkpoint: Path) -> dict[str, Path]:
    """The ``snn`` and ``ann`` ablations stored beside ``checkpoint`` (``NAME-snn.pt`` ...)."""
    found = {}
    for mode in ("snn", "ann"):
        path = checkpoint.with_name(f"{checkpoint.stem}-{mode}{checkpoint.suffix}")
        if path.is_file():
            found[mode] = path
    return found


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    *,
    split: str = "test",
    seed: int = 0,
    clips: int = 190,
    batch_size: int = 16,
    energy_clips: int = 8,
) -> tuple[EvalReport, dict[str, Any]]:
    """Load ``checkpoint`` (path or shipped name) and evaluate it on the ``data`` SPEC.

    Synthetic data is rendered like the checkpoint's training data (scene, framing, emulator
    settings, clip length), with test seeds and held-out backgrounds by default. Returns the
    report and a description of what was evaluated.
    """
    path = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint(path)
    trained = dict(loaded.extra.get("data", {}))
    options = DataOptions(
        split=split,
        clips=clips,
        seed=seed,
        segments=int(trained.get("segments", loaded.extra.get("training", {}).get("segments", 4))),
        synthetic={k: trained[k] for k in ("scene", "dvs", "classes") if k in trained},
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
    about = {
        "checkpoint": str(path),
        "mode": loaded.config.mode,
        "data": data,
        "dataset": dataset.describe(),
    }
    return report, about


def run_eval(args: argparse.Namespace) -> int:
    """``respike eval``: print the report (a table, or JSON with ``--json``); 0 on success."""
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = dict(
        split=args.split,
        seed=args.seed,
        clips=args.clips,
        batch_size=args.batch_size,
        energy_clips=args.energy_clips,
    )
    report, about = evaluate_checkpoint(args.checkpoint, args.data, **kwargs)
    others: dict[str, Path] = {}
    if args.ablations:
        others.update(ablation_paths(Path(about["checkpoint"])))
        if not others:
            raise ValueError(f"no NAME-snn.pt / NAME-ann.pt ablations beside {about['checkpoint']}")
    for item in args.ablation:
        others[Path(item).stem] = resolve_checkpoint(item)
    ablations = {
        name: evaluate_checkpoint(path, args.data, **kwargs) for name, path in others.items()
    }
    if args.confusion is not None:
        image = confusion_image(
            report.confusion,
            report.class_names,
            title=f"{Path(about['checkpoint']).stem} on {args.data}",
        )
        args.confusion.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.confusion), image):
            raise OSError(f"{args.confusion}: could not write the PNG")
    if args.json:
        payload = {**about, **report.to_dict()}
        payload["ablations"] = {name: {**a, **r.to_dict()} for name, (r, a) in ablations.items()}
        if args.confusion is not None:
            payload["confusion_png"] = str(args.confusion)
        print(json.dumps(payload))
        return 0
    print(_format_report(about, report, ablations))
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _format_report(
    about: Mapping[str, Any],
    report: EvalReport,
    ablations: Mapping[str, tuple[EvalReport, Mapping[str, Any]]],
) -> str:
    lines = [
        f"checkpoint {about['checkpoint']} ({about['mode']}) on {about['data']}: "
        f"{report.clips} clips, accuracy {_pct(report.accuracy)}",
    ]
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m respike.models.training train|eval ...`` (the CLI's commands, standalone)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m respike.models.training")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train a model")
    add_train_arguments(train_parser)
    eval_parser = commands.add_parser("eval", help="evaluate a checkpoint")
    add_eval_arguments(eval_parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m respike.models.training", *argv])
    if args.command == "train":
        return run_train(args)
    return run_eval(args)


__all__ = [
    "DistInfo",
    "EnergySummary",
    "EpochStats",
    "EvalReport",
    "TrainConfig",
    "TrainResult",
    "ablation_paths",
    "add_eval_arguments",
    "add_train_arguments",
    "apply_config_file",
    "build_model",
    "clip_loss",
    "confusion_image",
    "evaluate",
    "evaluate_checkpoint",
    "init_distributed",
    "initialise_from",
    "label_map",
    "replica_checksum",
    "run_eval",
    "run_train",
    "train",
    "train_config_from_args",
]

if __name__ == "__main__":
    sys.exit(main())
