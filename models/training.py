"""Training of respike models: the loop behind ``respike train``.

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
validates (:func:`respike.models.evaluation.evaluate`) and writes.

The command line (:mod:`respike.models.cli`) turns ``respike train``'s flags into a
:class:`TrainConfig`; every default is this module's dataclasses' (and the model configs').
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from respike.models.ann import ANNConfig
from respike.models.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from respike.models.datasets import (
    ClipDataset,
    DataOptions,
    DvsRandomisation,
    open_dataset,
    parse_data_spec,
)
from respike.models.evaluation import check_model_fits, evaluate, progress_bar
from respike.models.fusion import FusionConfig
from respike.models.hybrid import MODES, Clip, HybridReSpike, InputSpec, Mode
from respike.models.registry import get_model, list_models
from respike.models.snn import SNNConfig
from respike.synthetic import SceneConfig

# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoints (``extra["training"]``).

    ``data``/``val_data`` are data SPECs (:func:`respike.models.datasets.parse_data_spec`);
    ``clips`` and ``val_clips`` size synthetic sets; ``resample`` draws new synthetic clips
    every epoch. ``input_spec`` defaults to grey residual input (the model builders' default
    is events); ``snn``/``ann``/``fusion`` override the builder's defaults when given.
    ``batch_size`` is per process. ``lr`` peaks after ``warmup`` of the first epoch's steps,
    then follows a cosine to zero at the end of ``epochs``. ``init`` lists checkpoints whose
    weights start the model wherever names and shapes match (e.g. a hybrid started from its
    trained ``snn`` and ``ann`` ablations). ``stale_keyframes`` is the share of training clips
    whose segments reuse an earlier segment's key frame, at most ``stale_gap`` segments apart
    (:func:`stale_keyframes`): what key frames on demand feed the model when they skip passes.
    """

    data: str
    out: Path = Path("runs/train")
    val_data: str | None = None
    model: str = "respike_r18_lite"
    mode: Mode = "hybrid"
    input_spec: InputSpec = field(
        default_factory=lambda: InputSpec(snn_input="residual", snn_channels=1)
    )
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
    stale_keyframes: float = 0.0
    stale_gap: int = 3

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
        if not 0 <= self.stale_keyframes <= 1:
            raise ValueError(f"stale_keyframes must be in [0, 1], got {self.stale_keyframes}")
        if self.stale_gap < 1:
            raise ValueError(f"stale_gap must be >= 1, got {self.stale_gap}")
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


def stale_keyframes(
    keyframes: torch.Tensor, share: float, gap: int, generator: torch.Generator
) -> torch.Tensor:
    """Key frames ``(B, S, ...)`` where a ``share`` of the clips reuse earlier segments' frames.

    In a chosen clip the first segment always has its own key frame (a stream's first key frame
    is always computed); each later one gets a fresh key frame with probability 1/3, and always
    once ``gap`` segments have passed since the last fresh one; the others reuse the last fresh
    frame. That is the spread of schedules :class:`respike.models.adaptive.KeyframePolicy`
    gives a stream (the change and confidence triggers add passes between the gap's), so the
    model learns to predict from a context a few segments old.
    """
    batch, segments = keyframes.shape[:2]
    if share <= 0 or segments < 2:
        return keyframes
    stale = torch.rand(batch, generator=generator) < share
    fresh = torch.rand(batch, segments, generator=generator) < 1 / 3
    source = torch.zeros(batch, segments, dtype=torch.long)
    last = torch.zeros(batch, dtype=torch.long)
    for segment in range(1, segments):
        due = fresh[:, segment] | (segment - last >= gap) | ~stale
        last = torch.where(due, torch.full_like(last, segment), last)
        source[:, segment] = last
    index = source.view(batch, segments, *([1] * (keyframes.dim() - 2)))
    return torch.gather(keyframes, 1, index.expand_as(keyframes))


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


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
    check_model_fits(model, train_set)
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
    stale_generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 7)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = progress_bar(
        loader, enabled=progress and info.main, total=len(loader), desc=f"epoch {epoch + 1}"
    )
    for keyframes, steps, labels in bar:
        keyframes = stale_keyframes(
            keyframes, config.stale_keyframes, config.stale_gap, stale_generator
        )
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


__all__ = [
    "DistInfo",
    "EpochStats",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "clip_loss",
    "data_options",
    "init_distributed",
    "initialise_from",
    "replica_checksum",
    "train",
]
