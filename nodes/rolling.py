"""Rolling predictions: per-step class probabilities smoothed into a label that does not flicker.

Per step: an exponential moving average of the probabilities (``alpha`` weighs the newest
step), then hysteresis: the current label changes only when another class beats it by
``margin`` and reaches ``enter``; when the best smoothed score falls below ``threshold``, or
the best is the model's own ``no action`` output (an open-set rule's), the state is "no
action". The state is explicit (``state=None`` starts fresh), so the model node and the fusion
node share this one implementation and tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from respike.events.inputs import NO_ACTION


@dataclass(frozen=True)
class Smoothing:
    """Settings of the rolling prediction."""

    alpha: float = 0.25
    enter: float = 0.45
    margin: float = 0.1
    threshold: float = 0.3
    top_k: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha is {self.alpha}; expected 0 < alpha ≤ 1")
        if not 0 <= self.threshold <= self.enter <= 1 or self.margin < 0:
            raise ValueError("expected 0 ≤ threshold ≤ enter ≤ 1 and margin ≥ 0")
        if self.top_k < 1:
            raise ValueError("top_k must be ≥ 1")


class RollingState(NamedTuple):
    """Smoothed probabilities and the current label index (-1: no action)."""

    smoothed: npt.NDArray[np.float64]
    label: int


class RollingPrediction(NamedTuple):
    """What one step says: the current label, the top-k smoothed scores, the raw top class."""

    label: str
    label_index: int
    topk: list[tuple[str, float]]
    raw_label: str
    changed: bool


def roll(
    probs: npt.ArrayLike,
    state: RollingState | None,
    classes: Sequence[str],
    settings: Smoothing | None = None,
) -> tuple[RollingPrediction, RollingState]:
    """Fold one step's class probabilities into the rolling prediction."""
    settings = settings or Smoothing()
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(classes),):
        raise ValueError(
            f"probabilities have shape {p.shape}; expected ({len(classes)},) for the classes"
        )
    smoothed = p if state is None else settings.alpha * p + (1 - settings.alpha) * state.smoothed
    current = -1 if state is None else state.label
    best = int(np.argmax(smoothed))
    if smoothed[best] < settings.threshold or classes[best] == NO_ACTION:
        label = -1
    elif current < 0:
        label = best if smoothed[best] >= settings.enter else -1
    elif (
        best != current
        and smoothed[best] >= settings.enter
        and smoothed[best] - smoothed[current] >= settings.margin
    ):
        label = best
    else:
        label = current
    order = np.argsort(-smoothed)[: settings.top_k]
    prediction = RollingPrediction(
        label=classes[label] if label >= 0 else NO_ACTION,
        label_index=label,
        topk=[(classes[i], round(float(smoothed[i]), 4)) for i in order],
        raw_label=classes[int(np.argmax(p))],
        changed=state is not None and label != current,
    )
    return prediction, RollingState(smoothed, label)
