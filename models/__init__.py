"""Torch models of respike: the hybrid ReSpike network, registry, checkpoints, energy, export.

Names load on first use (PEP 562), so ``import respike.models`` costs nothing until a model is
built; nodes import this package lazily too.

Example::

    from respike.models import Clip, get_model
    model = get_model("respike_r18", num_classes=101)
    out = model(Clip(keyframes, steps))          # training: out.step_logits, out.logits
    state = model.set_keyframe(keyframe)         # streaming
    logits, state = model.step(step_input, state)
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

# norse 1.1 applies torch.jit.script at import, which torch >= 2.10 answers with a FutureWarning
# on every command that loads a model; nothing here runs TorchScript, so the warning is noise.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)

_EXPORTS = {
    "ANNConfig": "ann",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "Clip": "hybrid",
    "ClipDataset": "datasets",
    "ClipOutput": "hybrid",
    "ClipSample": "datasets",
    "DataOptions": "datasets",
    "DataSpec": "datasets",
    "DvsGesture": "datasets",
    "DvsRandomisation": "datasets",
    "EnergyReport": "energy",
    "EvalReport": "evaluation",
    "EventEncoder": "datasets",
    "EventRecording": "datasets",
    "FrameEncoder": "datasets",
    "FusionConfig": "fusion",
    "HybridReSpike": "hybrid",
    "InputSpec": "hybrid",
    "LIFConfig": "neurons",
    "ModelConfig": "hybrid",
    "ModelState": "hybrid",
    "NMnist": "datasets",
    "OpCounts": "energy",
    "SNNConfig": "snn",
    "SpikingResNet": "snn",
    "SyntheticActions": "datasets",
    "TrainConfig": "training",
    "TrainResult": "training",
    "VideoFolder": "datasets",
    "evaluate": "evaluation",
    "evaluate_checkpoint": "evaluation",
    "export_nir": "export",
    "export_onnx": "export",
    "get_model": "registry",
    "keyframe_tensor": "ann",
    "list_models": "registry",
    "load_checkpoint": "checkpoint",
    "measure_energy": "energy",
    "open_dataset": "datasets",
    "parse_data_spec": "datasets",
    "r3d18_reference": "energy",
    "register_model": "registry",
    "resolve_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "train": "training",
}

if TYPE_CHECKING:
    from respike.models.ann import ANNConfig, keyframe_tensor
    from respike.models.checkpoint import (
        Checkpoint,
        CheckpointError,
        load_checkpoint,
        resolve_checkpoint,
        save_checkpoint,
    )
    from respike.models.datasets import (
        ClipDataset,
        ClipSample,
        DataOptions,
        DataSpec,
        DvsGesture,
        DvsRandomisation,
        EventEncoder,
        EventRecording,
        FrameEncoder,
        NMnist,
        SyntheticActions,
        VideoFolder,
        open_dataset,
        parse_data_spec,
    )
    from respike.models.energy import EnergyReport, OpCounts, measure_energy, r3d18_reference
    from respike.models.evaluation import EvalReport, evaluate, evaluate_checkpoint
    from respike.models.export import export_nir, export_onnx
    from respike.models.fusion import FusionConfig
    from respike.models.hybrid import (
        Clip,
        ClipOutput,
        HybridReSpike,
        InputSpec,
        ModelConfig,
        ModelState,
    )
    from respike.models.neurons import LIFConfig
    from respike.models.registry import get_model, list_models, register_model
    from respike.models.snn import SNNConfig, SpikingResNet
    from respike.models.training import TrainConfig, TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'respike.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"respike.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "ANNConfig",
    "Checkpoint",
    "CheckpointError",
    "Clip",
    "ClipDataset",
    "ClipOutput",
    "ClipSample",
    "DataOptions",
    "DataSpec",
    "DvsGesture",
    "DvsRandomisation",
    "EnergyReport",
    "EvalReport",
    "EventEncoder",
    "EventRecording",
    "FrameEncoder",
    "FusionConfig",
    "HybridReSpike",
    "InputSpec",
    "LIFConfig",
    "ModelConfig",
    "ModelState",
    "NMnist",
    "OpCounts",
    "SNNConfig",
    "SpikingResNet",
    "SyntheticActions",
    "TrainConfig",
    "TrainResult",
    "VideoFolder",
    "evaluate",
    "evaluate_checkpoint",
    "export_nir",
    "export_onnx",
    "get_model",
    "keyframe_tensor",
    "list_models",
    "load_checkpoint",
    "measure_energy",
    "open_dataset",
    "parse_data_spec",
    "r3d18_reference",
    "register_model",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
