"""A low-precision SNN branch: integer weights and integer membranes (SpQuant-SNN's idea).

SpQuant-SNN quantises the membrane potential as well as the weights: on a neuromorphic chip the
membranes are the state read and written every step, so their width sets much of the memory
traffic. Here both are calibrated after training, not trained:

- **weights**: every convolution of the SNN branch, symmetric per output channel, ``b``-bit
  integers times a float scale per channel. The batch norm after each convolution is a
  per-channel affine map in eval mode, so it folds into that scale and bias: the layer is an
  integer convolution with one multiplier and one offset per channel.
- **membranes**: after each step (leak, fire, reset) the membrane is rounded to one of
  ``2**b`` evenly spaced levels from a floor below zero up to the threshold, zero (the reset)
  one of them. Inhibited membranes go well below zero (a few per cent under ``-v_th`` in the
  shipped ``actions``), so each cell's floor is calibrated: a low quantile of its float
  membranes on training clips (:func:`calibrate_floors`). The same rounding runs in training
  (straight through) and in every inference path.

:func:`quantized` turns a float checkpoint's model into one of the given precision; its config
records the precision, so the checkpoint loads as it was saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from respike.models.hybrid import HybridReSpike

WEIGHT_BITS = (4, 8)
"""Integer widths the SNN's weights may take (``None``: float32)."""
MEMBRANE_BITS = (4, 8, 16)
"""Integer widths the SNN's membranes may take (``None``: float32)."""


def check_bits(name: str, bits: object, allowed: tuple[int, ...]) -> None:
    """Raise ValueError naming ``name`` unless ``bits`` is None or one of ``allowed``."""
    if bits is not None and (isinstance(bits, bool) or bits not in allowed):
        raise ValueError(
            f"{name} is {bits!r}; expected one of {', '.join(map(str, allowed))} or None (float32)"
        )


def default_floor(v_th: float, bits: int) -> float:
    """The floor of an uncalibrated membrane: as far below zero as the threshold is above."""
    return -v_th * 2 ** (bits - 1) / (2 ** (bits - 1) - 1)


def quantize_membrane(v: torch.Tensor, v_th: float, floor: torch.Tensor, bits: int) -> torch.Tensor:
    """``v`` rounded to the nearest of ``2**bits`` evenly spaced levels from about ``floor``
    (a 0-d tensor: a cell's buffer, so a compiled step reads it as it is) up to ``v_th``, zero
    one of them; the gradient passes straight through."""
    span = 2**bits - 1
    step = (v_th - floor) / span
    top = torch.clamp(torch.round(v_th / step), min=1.0)
    levels = torch.minimum(torch.maximum(torch.round(v / step), top - span), top) * step
    if v.requires_grad:
        return v + (levels - v).detach()
    return levels


FLOOR_QUANTILE = 0.001
"""Default quantile of a cell's float membranes that becomes its floor."""


@torch.no_grad()
def calibrate_floors(
    model: HybridReSpike, quantized_model: HybridReSpike, clips: Iterable[Any], quantile: float
) -> dict[str, float]:
    """Run the float ``model``'s SNN on ``clips`` (``(keyframes, steps)`` batches; the SNN
    reads the key frames only with in-line fusion), take the ``quantile`` of each LIF cell's
    membranes after its steps (up to 20,000 a call, drawn with a fixed seed), and make it that
    cell's floor in ``quantized_model`` (never above its default floor). Returns the floors by
    cell name."""
    from norse.torch.module.lif_box import LIFBoxCell

    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"floor quantile is {quantile!r}; expected a number in [0, 0.5)")
    assert model.snn is not None
    draw = torch.Generator().manual_seed(0)
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, cell in model.named_modules():
        if isinstance(cell, LIFBoxCell):  # a hooked cell runs as a module, whose hook sees v

            def record(_: nn.Module, __: Any, out: Any, name: str = name) -> None:
                v = out[1].v.flatten()
                seen.setdefault(name, []).append(v[torch.randperm(len(v), generator=draw)[:20_000]])

            handles.append(cell.register_forward_hook(record))
    try:
        for keyframes, steps in clips:
            if model.inline:  # its SNN's later stages spike on the fused maps
                model((keyframes, steps))
            else:
                model.snn.forward_sequence(steps.transpose(0, 1), None)
    finally:
        for handle in handles:
            handle.remove()
    cells = dict(quantized_model.named_modules())
    floors = {}
    for name, values in seen.items():
        cell = cells[name]
        low = float(torch.quantile(torch.cat(values).float(), quantile))
        floors[name] = min(low, float(cell.membrane_floor))
        cell.membrane_floor.fill_(floors[name])
    return floors


@torch.no_grad()
def quantize_weights_(module: nn.Module, bits: int) -> int:
    """Round every convolution weight of ``module`` to ``bits``-bit integers times a scale per
    output channel (symmetric: the largest magnitude of a channel is the top level), in place;
    returns how many weights were rounded."""
    top = 2 ** (bits - 1) - 1
    count = 0
    for conv in module.modules():
        if not isinstance(conv, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            continue
        w = conv.weight
        scale = w.abs().flatten(1).amax(dim=1).clamp(min=1e-12) / top
        shape = (-1,) + (1,) * (w.dim() - 1)
        w.copy_(torch.round(w / scale.view(shape)).clamp(-top, top) * scale.view(shape))
        count += w.numel()
    return count


def quantized(
    model: HybridReSpike,
    *,
    weight_bits: int | None,
    membrane_bits: int | None,
    calibration: Iterable[Any] = (),
    quantile: float = FLOOR_QUANTILE,
) -> HybridReSpike:
    """A copy of ``model`` (eval mode) whose SNN branch runs at the given precision, the
    membranes' floors calibrated on ``calibration`` clips (``(keyframes, steps)`` batches of
    training data; none: the default floors); the ANN, fusion and head stay float. Raises
    ValueError for a precision not offered, or for a model without an SNN branch."""
    check_bits("weight_bits", weight_bits, WEIGHT_BITS)
    check_bits("membrane_bits", membrane_bits, MEMBRANE_BITS)
    if model.snn is None:
        raise ValueError(f"a {model.config.mode!r} model has no SNN branch to quantise")
    snn = model.config.snn
    config = dataclasses.replace(
        model.config,
        snn=dataclasses.replace(
            snn,
            weight_bits=weight_bits,
            lif=dataclasses.replace(snn.lif, membrane_bits=membrane_bits),
        ),
    )
    from respike.models.hybrid import HybridReSpike

    result = HybridReSpike(config)
    missing, unexpected = result.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.endswith(".membrane_floor") for key in missing):
        raise ValueError(f"the model's weights do not fit {config}: {missing or unexpected}")
    result.eval()
    if weight_bits is not None:
        assert result.snn is not None
        quantize_weights_(result.snn, weight_bits)
    if membrane_bits is not None:
        calibrate_floors(model, result, calibration, quantile)
    return result


__all__ = [
    "FLOOR_QUANTILE",
    "MEMBRANE_BITS",
    "WEIGHT_BITS",
    "calibrate_floors",
    "check_bits",
    "default_floor",
    "quantize_membrane",
    "quantize_weights_",
    "quantized",
]
