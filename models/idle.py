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
    """Tells for each SNN input whether to compute it or hold the last prediction."""

    still_below: float = STILL_BELOW
    settle_steps: int = SETTLE_STEPS
    still_run: int = 0
    """Still steps in a row so far (computed and held)."""
    held: int = 0
    """Steps not computed since the gate was made."""

    def __post_init__(self) -> None:
        check_idle_settings(self.still_below, self.settle_steps)

    def compute(self, steps: npt.NDArray[np.floating[Any]], new_context: bool = False) -> bool:
        """Whether ``steps`` (one input's steps) must be computed; False counts it as held.
        A step starting on a new key-frame context is computed (what the ANN saw changed)."""
        if not is_still(steps, self.still_below):
            self.still_run = 0
            return True
        self.still_run += len(steps)
        if new_context or self.still_run <= self.settle_steps:
            return True
        self.held += len(steps)
        return False


@dataclass
class KeyframeReuse:
    """Keeps the ANN's context of the last key frame computed, for key frames equal to it
    within ``still_below`` (on the ANN's input tensor, values in [0, 1])."""

    still_below: float = STILL_BELOW
    reused: int = 0
    """Key frames whose ANN pass was skipped."""
    _last: Any = field(default=None, repr=False)
    _context: Any = field(default=None, repr=False)

    def lookup(self, frame: Any) -> Any:
        """The kept context when ``frame`` (a tensor or array) is still against the last key
        frame computed, else None (then :meth:`keep` the new one's)."""
        last = self._last
        if last is None or self.still_below < 0 or tuple(last.shape) != tuple(frame.shape):
            return None
        if float(abs(frame - last).max()) > self.still_below:
            return None
        self.reused += 1
        return self._context

    def keep(self, frame: Any, context: Any) -> None:
        self._last, self._context = frame, context
