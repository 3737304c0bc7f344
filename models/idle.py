"""Idling on a still scene: which SNN steps and key frames need no computation.

A static camera gives residuals of (almost) zero and no events, yet a spiking network on such
input does not rest: its batch-norm offsets keep the deeper stages spiking on their own, so
the state never reaches a fixed point and an exact shortcut is not available. What the model
says about a still scene is known, though, once it has seen a few still steps: the last
prediction. :class:`IdleGate` computes the first ``settle_steps`` still steps (the rolling
prediction settles on them) and then holds: further still steps are not computed and repeat
the last probabilities, until a step with change arrives, which is computed from the state
held since. :class:`KeyframeReuse` keeps the ANN's context for a key frame that equals the
previous one within the same tolerance.

``still_below`` is the largest absolute input value that counts as no change: residual levels
(frame differences in [-1, 1]) or binned event counts (so any event is change when it is
below 1). Camera noise averaged down to the SNN's input size stays well under the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

STILL_BELOW = 0.02
"""Default largest |input| of a still step (2 % of full scale: sensor noise, not motion)."""
SETTLE_STEPS = 8
"""Default still steps computed before the gate holds (two segments of the shipped K = 4)."""


def check_idle_settings(still_below: float, settle_steps: int) -> None:
    """Raise ValueError naming a bad setting (``still_below < 0`` switches idling off)."""
    if isinstance(still_below, bool) or not isinstance(still_below, int | float):
        raise ValueError(f"idle_below is {still_below!r}; expected a number (negative: never idle)")
    if isinstance(settle_steps, bool) or not isinstance(settle_steps, int) or settle_steps < 1:
        raise ValueError(f"idle_after is {settle_steps!r}; expected an integer >= 1 (steps)")


def is_still(steps: npt.NDArray[np.floating[Any]], still_below: float) -> bool:
    """Whether every value of ``steps`` is within ``still_below`` of zero."""
    if still_below < 0:
        return False
    return steps.size == 0 or float(np.abs(steps).max()) <= still_below


@dataclass
class IdleGate:
    """Tells for each SNN input whether to compute it or hold the last prediction, and which
    segment a computed one continues (a segment that began on a held step begins again on
    the next computed one)."""

    still_below: float = STILL_BELOW
    settle_steps: int = SETTLE_STEPS
    still_run: int = 0
    """Still steps in a row so far (computed and held)."""
    held: int = 0
    """Steps not computed since the gate was made."""
    _context: Any = field(default=None, repr=False)
    _held_segment: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_idle_settings(self.still_below, self.settle_steps)

    def admit(
        self,
        steps: npt.NDArray[np.floating[Any]],
        context: Any,
        new_segment: bool,
        can_hold: bool = True,
    ) -> tuple[bool, Any, bool]:
        """Whether to compute ``steps`` (one input's), and the context and new-segment flag
        to compute them with. Still steps are computed while the still run is at most
        ``settle_steps`` long, or when they start a segment on another context (what the ANN
        saw changed), or when nothing can be held yet (``can_hold`` False)."""
        still = is_still(steps, self.still_below)
        self.still_run = self.still_run + len(steps) if still else 0
        new_context = new_segment and context is not self._context
        if still and self.still_run > self.settle_steps and not new_context and can_hold:
            self.held += len(steps)
            if new_segment:
                self._held_segment = context
            return False, context, new_segment
        if self._held_segment is not None and not new_segment:
            context, new_segment = self._held_segment, True
        self._held_segment = None
        if new_segment:
            self._context = context
        return True, context, new_segment


KEYFRAME_SHARE = 0.25
"""A key frame is still when its mean absolute change, in [0, 1] units, is at most this share
of ``still_below``: a frame-wide mean, where sensor noise averages out (about 0.003 for noise of
2 grey levels through a video codec) and a moving object does not."""


@dataclass
class KeyframeReuse:
    """Keeps the ANN's context of the last key frame computed, for key frames still against
    it (see :data:`KEYFRAME_SHARE`). Comparing with the last one computed, not the previous
    one, bounds the drift a slow change can build up."""

    still_below: float = STILL_BELOW
    reused: int = 0
    """Key frames whose ANN pass was skipped."""
    _last: Any = field(default=None, repr=False)
    _context: Any = field(default=None, repr=False)

    def lookup(self, frame: Any) -> Any:
        """The kept context when ``frame`` (the ANN's ``(1, 3, H, W)`` input tensor, ImageNet-
        normalised) is still against the last key frame computed, else None (then :meth:`keep`
        the new one's)."""
        last = self._last
        if last is None or self.still_below < 0 or tuple(last.shape) != tuple(frame.shape):
            return None
        from respike.models.ann import IMAGENET_STD

        scale = frame.new_tensor(IMAGENET_STD).view(-1, 1, 1)  # back to [0, 1] units
        if float(((frame - last).abs() * scale).mean()) > KEYFRAME_SHARE * self.still_below:
            return None
        self.reused += 1
        return self._context

    def keep(self, frame: Any, context: Any) -> None:
        self._last, self._context = frame, context


def stream_clip(
    model: Any, keyframes: Any, steps: Any, gate: IdleGate, reuse: KeyframeReuse
) -> Any:
    """One clip streamed as the ``model`` node runs it, idling included: ``keyframes``
    ``(S, 3, Hk, Wk)`` and ``steps`` ``(S*K, C, h, w)`` tensors to per-step logits
    ``(S*K, outputs)``; a held step repeats the last computed step's logits."""
    import torch

    k = model.keyframe_interval
    state, last, context = None, None, None
    logits = []
    for t in range(steps.shape[0]):
        new_segment = t % k == 0
        if new_segment and (context is None or model.config.mode != "snn"):
            frame = None if model.config.mode == "snn" else keyframes[t // k][None]
            kept = None if frame is None else reuse.lookup(frame)
            if kept is None:
                kept = model.encode_keyframe(frame)
                if frame is not None:
                    reuse.keep(frame, kept)
            context = kept
        run, ctx, segment = gate.admit(
            steps[t : t + 1].numpy(), context, new_segment, last is not None
        )
        if run:
            out, state = model.steps_across(
                steps[t][None, None], state, {0: ctx} if segment else {}
            )
            last = out[0, 0]
        assert last is not None  # the first step is always computed
        logits.append(last)
    return torch.stack(logits)
