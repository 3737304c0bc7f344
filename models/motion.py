"""Elementary motion detectors: direction-selective input channels in front of the SNN stem.

A ReSpike residual (frame minus its segment's key frame) shows a moving hand twice, where it is
and where it was at the key frame, with a sign that depends on whether the hand is brighter or
darker than what lies behind it. So the residual's sign cannot say which way the hand moved, and
an SNN that sees one residual at a time with a short membrane does not learn it (measured on
swipe right vs left: at chance after 2,000 steps).

A Hassenstein-Reichardt correlator can. With ``d_t`` the change of the input since the previous
step, the detector for a shift ``s`` along an axis is::

    m_t(x) = d_t(x) * d_{t-1}(x - s) - d_t(x - s) * d_{t-1}(x)

An edge that moved by ``s`` in the positive direction makes the first product large; both factors
carry the same sign whatever the edge's contrast, so the detector is contrast-invariant, and the
mirror term makes it opponent (negative for the other direction). Each shift and axis gives two
channels, the positive and negative half-waves, as square roots so that they stay in the input's
intensity units. Shifts 1, 2, 4 tune the detectors to three speeds. A delay ``k`` correlates
``d_t`` with ``d_{t-k}`` instead, tuning shift ``s`` to ``s / k`` pixels per step: delay 2 adds
the slow speeds that tell a slow return from a fast stroke the other way.

A step whose input is exactly zero everywhere is a key frame (its residual is zero by
construction) or a still scene: its change is taken as zero, since the change across a key
frame cannot be recovered from such residuals (``key_residual="previous"`` residuals keep it).
The state carries the last input and the last changes, so a stream cut into steps gives the
same channels as one sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

_TINY = 1e-30
"""Added under the square root so that zeros stay zeros (float32's smallest normal is 1e-38)."""


class MotionState(NamedTuple):
    """The previous step's input (averaged over channels), ``(B, 1, H, W)``, and the changes of
    the last ``max(delays)`` steps, newest first, ``(B, max(delays), H, W)``."""

    previous_input: torch.Tensor
    previous_changes: torch.Tensor


class MotionDetectors(nn.Module):
    """Opponent Reichardt detectors at ``shifts`` along both image axes (no parameters).

    Input ``(T, B, C, H, W)``; output ``(T, B, 4 * len(shifts) * len(delays), H, W)``: per delay,
    per shift, right/left then down/up half-waves. Multi-channel input is averaged over channels
    first.
    """

    def __init__(self, shifts: Sequence[int], delays: Sequence[int] = (1,)) -> None:
        super().__init__()
        self.shifts = tuple(int(s) for s in shifts)
        self.delays = tuple(int(k) for k in delays)
        if not self.shifts or min(self.shifts) < 1:
            raise ValueError(f"motion detector shifts must be positive integers, got {shifts}")
        if not self.delays or min(self.delays) < 1 or len(set(self.delays)) < len(self.delays):
            raise ValueError(
                f"motion detector delays must be distinct positive steps, got {delays}"
            )

    @property
    def channels(self) -> int:
        """Output channels: four per shift and delay."""
        return 4 * len(self.shifts) * len(self.delays)

    def multiplies_per_pixel(self) -> int:
        """Multiplications per input pixel and step (two products per shift, axis and delay)."""
        return 4 * len(self.shifts) * len(self.delays)

    def forward(
        self, x: torch.Tensor, state: MotionState | None = None
    ) -> tuple[torch.Tensor, MotionState]:
        """Detector channels for the sequence ``x`` and the state that continues it."""
        x = x.mean(dim=2, keepdim=True)
        steps, depth = x.shape[0], max(self.delays)
        if state is None:
            last_input = torch.zeros_like(x[0])
            past = x.new_zeros(x.shape[1], depth, *x.shape[-2:])
        else:
            last_input, past = state
        inputs = torch.cat([last_input[None], x])
        change = inputs[1:] - inputs[:-1]
        still = x.flatten(2).abs().amax(dim=2) == 0
        change = change.masked_fill(still[..., None, None, None], 0.0)
        # the changes in time order, oldest first: (depth + T, B, 1, H, W)
        history = torch.cat([past.flip(1).transpose(0, 1)[:, :, None], change])
        shifted_change = self._shifted(change)
        products = []
        for k in self.delays:
            before = history[depth - k : depth - k + steps]
            products.append(change * self._shifted(before) - shifted_change * before)
        m = torch.cat(products, dim=2)
        halves = torch.stack([m.clamp(min=0), (-m).clamp(min=0)], dim=3).flatten(2, 3)
        # sqrt, as h / sqrt(h + tiny): torch's sqrt takes 8x longer on zeros (most of these)
        # than on other values on these CPUs; this takes the same time whatever the values
        out = halves * torch.rsqrt(halves + _TINY)
        newest_first = history[-depth:].flip(0)[:, :, 0].transpose(0, 1)
        return out, MotionState(x[-1], newest_first)

    def _shifted(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (``(..., 1, H, W)``) moved by each shift along x, then y: ``(..., 2 * n, H, W)``.

        Zeros move in at the top and left edges; output ``(y, x)`` holds ``t(y - dy, x - dx)``.
        """
        height, width = t.shape[-2:]
        pad = max(self.shifts)
        padded = nn.functional.pad(t, (pad, 0, pad, 0))
        views = [
            padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]
            for s in self.shifts
            for dy, dx in ((0, s), (s, 0))
        ]
        return torch.cat(views, dim=-3)


__all__ = ["MotionDetectors", "MotionState"]
