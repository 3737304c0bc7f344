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
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ANNConfig": "ann",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "Clip": "hybrid",
    "ClipOutput": "hybrid",
    "EnergyReport": "energy",
    "FusionConfig": "fusion",
    "HybridReSpike": "hybrid",
    "InputSpec": "hybrid",
    "LIFConfig": "neurons",
    "ModelConfig": "hybrid",
    "ModelState": "hybrid",
    "OpCounts": "energy",
    "SNNConfig": "snn",
    "SpikingResNet": "snn",
    "export_nir": "export",
    "export_onnx": "export",
    "get_model": "registry",
    "list_models": "registry",
    "load_checkpoint": "checkpoint",
    "measure_energy": "energy",
    "r3d18_reference": "energy",
    "register_model": "registry",
    "save_checkpoint": "checkpoint",
}

if TYPE_CHECKING:
    from respike.models.ann import ANNConfig
    from respike.models.checkpoint import (
        Checkpoint,
        CheckpointError,
        load_checkpoint,
        save_checkpoint,
    )
    from respike.models.energy import EnergyReport, OpCounts, measure_energy, r3d18_reference
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
    "ClipOutput",
    "EnergyReport",
    "FusionConfig",
    "HybridReSpike",
    "InputSpec",
    "LIFConfig",
    "ModelConfig",
    "ModelState",
    "OpCounts",
    "SNNConfig",
    "SpikingResNet",
    "export_nir",
    "export_onnx",
    "get_model",
    "list_models",
    "load_checkpoint",
    "measure_energy",
    "r3d18_reference",
    "register_model",
    "save_checkpoint",
]
