"""Model checkpoints: one ``torch.save`` file of format version, config, classes, spec, weights.

Files are read with ``torch.load(weights_only=True)``: only tensors, dicts, lists, tuples,
strings and numbers, never code. Every way a file can be wrong (missing, truncated, not a
torch file, another program's checkpoint, a newer format, weights that do not fit the config)
raises :class:`CheckpointError` naming the file and what was expected.

Torch is imported only to load or save weights: :func:`read_checkpoint_info` reads a
checkpoint's classes, input contract and metadata without it (a launcher fitting a residual node
to a model then starts in tenths of a second, not seconds).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from respike.events.inputs import InputSpec

if TYPE_CHECKING:
    import torch

    from respike.models.hybrid import HybridReSpike, ModelConfig

FORMAT = "respike-model"
FORMAT_VERSION = 1

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
"""Where the shipped checkpoints live (installed as package data)."""

SHIPPED: tuple[str, ...] = ("actions", "gestures-dvs", "nmnist")
"""Names of the checkpoints shipped with respike; each has a model card ``NAME.md`` beside it."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the expectation."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode), its class names and any extra metadata."""

    model: HybridReSpike
    class_names: tuple[str, ...]
    extra: Mapping[str, Any]
    path: Path

    @property
    def config(self) -> ModelConfig:
        """The model's configuration."""
        return self.model.config

    @property
    def input_spec(self) -> InputSpec:
        """What the model expects per step and per key frame."""
        return self.model.config.input_spec


def save_checkpoint(
    path: str | PathLike[str],
    model: HybridReSpike,
    class_names: Sequence[str],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` with its config and ``class_names`` to ``path`` (atomically).

    ``extra`` holds plain metadata (epoch, metrics, dataset name): dicts, lists, strings and
    numbers only, so the file stays loadable with ``weights_only=True``.
    """
    import torch

    path = Path(path)
    names = tuple(str(n) for n in class_names)
    if len(names) != model.config.num_classes:
        raise ValueError(
            f"{len(names)} class names for a model with {model.config.num_classes} classes"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_names": list(names),
        "input_spec": asdict(model.config.input_spec),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | PathLike[str]) -> dict[str, Any]:
    """The validated raw payload of a checkpoint file (no model built)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable respike checkpoint (expected a file written by "
            f"respike.models.save_checkpoint; it may be truncated or corrupted): {exc}"
        ) from exc
    return _validated(path, payload)


def _validated(path: Path, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a respike checkpoint (expected a dict with format={FORMAT!r}, "
            f"found {found!r})"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r}; this respike reads 1..{FORMAT_VERSION}"
        )
    for key, kind in (("config", dict), ("class_names", list), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint lacks {key!r} (expected a {kind.__name__})")
    return payload


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read without torch: classes, inputs, metadata."""

    path: Path
    class_names: tuple[str, ...]
    input_spec: InputSpec
    config: Mapping[str, Any]
    """The model config as stored (``ModelConfig.to_dict()``)."""
    extra: Mapping[str, Any]


def read_checkpoint_info(path: str | PathLike[str]) -> CheckpointInfo:
    """A checkpoint's class names, input contract and metadata, without importing torch.

    The file's pickle is read by an unpickler that builds only dicts, lists and plain values:
    each tensor becomes ``None`` and is never read, and any class other than torch's tensor
    rebuilders and ``OrderedDict`` is refused (the same guarantee as ``weights_only=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            payload = _MetadataUnpickler(io.BytesIO(archive.read(name))).load()
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable respike checkpoint (expected a file written by "
            f"respike.models.save_checkpoint; it may be truncated or corrupted): {exc}"
        ) from exc
    payload = _validated(path, payload)
    try:
        spec = InputSpec(**payload["config"]["input_spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is invalid: {exc!r}") from exc
    return CheckpointInfo(
        path,
        tuple(str(n) for n in payload["class_names"]),
        spec,
        payload["config"],
        payload.get("extra", {}),
    )


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a ``torch.save`` payload into plain values, every tensor as ``None``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _no_tensor  # tensor rebuilders and storage types: never called into torch
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> None:
        return None  # tensor storage: left unread


def _no_tensor(*args: Any, **kwargs: Any) -> None:
    return None


def resolve_checkpoint(name_or_path: str | PathLike[str]) -> Path:
    """The file a checkpoint argument means: an existing path, or a shipped checkpoint's name.

    Shipped names (:data:`SHIPPED`, plus their ``-snn``/``-ann`` ablations where present) map to
    ``SHIPPED_DIR/NAME.pt``; anything else that is not a file raises :class:`CheckpointError`
    listing the names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path)
    shipped = SHIPPED_DIR / f"{name}.pt"
    if "/" not in name and shipped.is_file():
        return shipped
    known = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt")) or list(SHIPPED)
    raise CheckpointError(
        f"{name}: no such checkpoint file, and not the name of a shipped checkpoint "
        f"({', '.join(known)})"
    )


def teach_base(name_or_path: str | PathLike[str]) -> str:
    """The checkpoint teach mode teaches on for a pipeline running ``name_or_path``: itself,
    unless it fuses in line (teach mode reads the SNN's spikes before fusion), then its shipped
    late-fusion sibling ``NAME-late`` (``actions`` -> ``actions-late``). Read without torch."""
    config = read_checkpoint_info(resolve_checkpoint(name_or_path)).config
    if config.get("mode") != "hybrid" or config["fusion"].get("placement") != "inline":
        return str(name_or_path)
    sibling = f"{Path(name_or_path).stem}-late"
    if not (SHIPPED_DIR / f"{sibling}.pt").is_file():
        raise CheckpointError(
            f"{name_or_path}: fuses in line, so teach mode cannot read its SNN alone, and "
            f"there is no shipped {sibling}; give a late-fusion base"
        )
    return sibling


def load_checkpoint(
    path: str | PathLike[str], *, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the model saved at ``path`` (eval mode, on ``map_location``)."""
    from respike.models.hybrid import HybridReSpike, ModelConfig

    path = Path(path)
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is invalid: {exc!r}") from exc
    names = tuple(str(n) for n in payload["class_names"])
    if len(names) != config.num_classes:
        raise CheckpointError(
            f"{path}: {len(names)} class names but the config has {config.num_classes} classes"
        )
    model = HybridReSpike(config)
    try:
        result = model.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise CheckpointError(f"{path}: weights do not match the config: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not match the config: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    model.to(map_location).eval()
    return Checkpoint(model, names, payload.get("extra", {}), path)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SHIPPED",
    "SHIPPED_DIR",
    "Checkpoint",
    "CheckpointError",
    "CheckpointInfo",
    "load_checkpoint",
    "read_checkpoint",
    "read_checkpoint_info",
    "resolve_checkpoint",
    "save_checkpoint",
    "teach_base",
]
