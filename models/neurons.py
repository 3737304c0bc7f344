"""Spiking neurons of the SNN branch: Norse LIF-box cells, ReSpike's constants, an ATan surrogate.

ReSpike's neuron is a leaky integrate-and-fire cell without a current term,
``v <- 0.25 v + 0.75 x``, spiking at ``v > 1`` with a hard reset to 0 and an arc-tangent
surrogate gradient. That is Norse's LIF-box neuron with ``dt * tau_mem_inv = 0.75``; Norse has
no arc-tangent surrogate, so this module adds one and a cell that uses it. Every other surrogate
goes straight to Norse's own ``lif_box_feed_forward_step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters
from norse.torch.functional.reset import reset_value
from norse.torch.module.lif_box import LIFBoxCell
from norse.torch.module.snn import SNNCell

from respike.models.quant import MEMBRANE_BITS, check_bits, default_floor, quantize_membrane

#: Surrogate names Norse's ``threshold`` understands, plus our ``"atan"``.
SURROGATES = ("atan", "super", "tanh", "triangle", "circ", "heavi_erfc", "heaviside")

#: One simulation step is one time unit: a step's leak is ``dt * tau_mem_inv`` with ``dt = 1``.
STEP_DT = 1.0


class ATanSpike(torch.autograd.Function):
    """Heaviside spike forward, arc-tangent surrogate backward (SpikingJelly's ``ATan``).

    The surrogate is the derivative of ``atan(pi/2 * alpha * x) / pi + 1/2``:
    ``alpha / 2 / (1 + (pi/2 * alpha * x)^2)``, peaking at ``alpha / 2`` on the threshold.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.gt(x, 0.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad = alpha / 2.0 / (1.0 + (math.pi / 2.0 * alpha * x).square())
        return grad_outputs[0] * grad, None


def atan_spike(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spikes where ``x > 0``; gradients through the arc-tangent surrogate of width ``alpha``."""
    out: torch.Tensor = ATanSpike.apply(x, alpha)
    return out


def lif_box_atan_step(
    input_tensor: torch.Tensor,
    state: LIFBoxFeedForwardState,
    p: LIFBoxParameters,
    dt: float = STEP_DT,
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """One Euler step of Norse's LIF-box neuron with the ATan surrogate.

    The same equations as ``norse.torch.functional.lif_box.lif_box_feed_forward_step``
    (``v += dt * tau_mem_inv * (x + v_leak - v)``, spike at ``v > v_th``, ``p.reset_method``),
    written out only because Norse's threshold has no arc-tangent surrogate.
    """
    v_decayed = state.v + dt * p.tau_mem_inv * (input_tensor + p.v_leak - state.v)
    z = atan_spike(v_decayed - p.v_th, float(p.alpha))
    v_new = p.reset_method(z, v_decayed, p.v_reset, p.v_th)
    return z, LIFBoxFeedForwardState(v=v_new)


class LIFBoxATanCell(LIFBoxCell):
    """Norse's ``LIFBoxCell`` stepping with the ATan surrogate.

    A subclass, so everything that knows Norse's LIF-box cell (its NIR export among them)
    handles this one too.
    """

    def __init__(self, p: LIFBoxParameters, dt: float = STEP_DT) -> None:
        SNNCell.__init__(self, lif_box_atan_step, self.initial_state, p, dt=dt)


@dataclass(frozen=True)
class LIFConfig:
    """Settings of every LIF cell in the SNN branch; the defaults are ReSpike's.

    ``decay`` is the fraction of the membrane kept per step (``v <- decay*v + (1-decay)*x``),
    ``surrogate`` one of :data:`SURROGATES`, ``alpha`` its width parameter, ``membrane_bits``
    the integer width of the membrane (None: float32; see :mod:`respike.models.quant`).
    """

    decay: float = 0.25
    v_th: float = 1.0
    v_reset: float = 0.0
    surrogate: str = "atan"
    alpha: float = 2.0
    membrane_bits: int | None = None

    def __post_init__(self) -> None:
        check_bits("membrane_bits", self.membrane_bits, MEMBRANE_BITS)
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"LIF decay must be in [0, 1), got {self.decay}")
        if self.surrogate not in SURROGATES:
            raise ValueError(
                f"unknown surrogate {self.surrogate!r}; expected one of {', '.join(SURROGATES)}"
            )
        if self.alpha <= 0:
            raise ValueError(f"surrogate alpha must be positive, got {self.alpha}")

    @property
    def leak(self) -> float:
        """``dt * tau_mem_inv`` of one step: the share of the input written into ``v``."""
        return 1.0 - self.decay

    def parameters(self) -> LIFBoxParameters:
        """Norse parameters for one step of ``dt = 1`` (hard reset to ``v_reset``)."""
        return LIFBoxParameters(
            tau_mem_inv=torch.as_tensor(self.leak / STEP_DT),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(self.v_th),
            v_reset=torch.as_tensor(self.v_reset),
            method=self.surrogate,
            alpha=self.alpha,
            reset_method=reset_value,
        )


def make_lif_cell(config: LIFConfig) -> LIFBoxCell:
    """A Norse LIF-box cell for ``config``: Norse's own step, or ours for the ATan surrogate;
    :func:`lif_step` rounds its membrane to ``config.membrane_bits``."""
    if config.surrogate == "atan":
        cell: LIFBoxCell = LIFBoxATanCell(config.parameters(), dt=STEP_DT)
    else:
        cell = LIFBoxCell(config.parameters(), dt=STEP_DT)
    cell.membrane_bits = config.membrane_bits
    cell.membrane_v_th = config.v_th  # a number, which a compiled step takes as a constant
    if config.membrane_bits is not None:  # calibrated per cell, saved with the weights
        floor = default_floor(config.v_th, config.membrane_bits)
        cell.register_buffer("membrane_floor", torch.tensor(floor))
    return cell


def lif_step(
    cell: LIFBoxCell, x: torch.Tensor, state: LIFBoxFeedForwardState | None
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """Step ``cell`` once; ``state=None`` starts from a zero membrane shaped like ``x``.

    Norse's fallback state is a 0-d tensor that broadcasts; a full-shaped one keeps the state's
    shape constant from the first step on, which ``torch.compile`` and state hand-over need.
    """
    if state is None:
        state = LIFBoxFeedForwardState(v=torch.zeros_like(x))
    if not (torch.is_grad_enabled() or cell._forward_hooks or torch.compiler.is_compiling()):
        z, new_state = _lif_inference_step(cell, x, state)
    else:
        z, new_state = cell(x, state)
    bits = getattr(cell, "membrane_bits", None)
    if bits is not None:
        v = quantize_membrane(new_state.v, cell.membrane_v_th, cell.membrane_floor, bits)
        new_state = LIFBoxFeedForwardState(v=v)
    return z, new_state


def _lif_inference_step(
    cell: LIFBoxCell, x: torch.Tensor, state: LIFBoxFeedForwardState
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """The same step as Norse's (every surrogate spikes at ``v > v_th`` going forward) in four
    tensor ops instead of a dozen and the module call: for inference, where nothing needs
    gradients. Reset by value only, as :class:`LIFConfig` makes every cell."""
    constants = cell.__dict__.get("_inference_constants")
    if constants is None:
        p = cell.p
        if p.reset_method is not reset_value:
            z, new_state = cell(x, state)
            return z, new_state
        constants = (
            float(cell.dt * p.tau_mem_inv),
            float(p.v_leak),
            float(p.v_th),
            float(p.v_reset),
        )
        cell.__dict__["_inference_constants"] = constants
    leak, v_leak, v_th, v_reset = constants
    drive = x - state.v if v_leak == 0.0 else x + v_leak - state.v
    v = torch.add(state.v, drive, alpha=leak)
    fired = v > v_th
    return fired.to(x.dtype), LIFBoxFeedForwardState(v=v.masked_fill_(fired, v_reset))


__all__ = [
    "STEP_DT",
    "SURROGATES",
    "ATanSpike",
    "LIFBoxATanCell",
    "LIFConfig",
    "atan_spike",
    "lif_box_atan_step",
    "lif_step",
    "make_lif_cell",
]
