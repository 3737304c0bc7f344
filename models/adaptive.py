"""Compute that follows the scene: which SNN steps and key-frame ANN passes a stream needs.

**Idling.** A static camera gives residuals of (almost) zero and no events, yet a spiking
network on such input does not rest: its batch-norm offsets keep the deeper stages spiking on
their own, so the state never reaches a fixed point and no exact shortcut exists. What the
model says about a still scene is known, though, once it has seen a few still steps: the last
prediction. :class:`IdleGate` computes the first ``idle_after`` still steps (the rolling
prediction settles on them), then holds: further still steps are not computed and repeat the
last probabilities until a step with change arrives, which is computed from the state held
since. ``idle_below`` is the largest absolute input value that counts as no change: residual
levels (frame differences in [-1, 1]) or binned event counts (any event is change while it is
below 1). Camera noise averaged down to the SNN's input size stays well under the default.

**Key frames on demand** (SEENN's idea applied to the ANN branch). :class:`KeyframePolicy`
runs the ANN on a key frame only when something calls for it: the frame changed by more than
``keyframe_change`` (mean absolute change in [0, 1] units against the last key frame computed),
the last prediction's confidence fell below ``keyframe_confidence``, or ``keyframe_gap``
segments passed since the last pass. Otherwise the segment reuses the last context. A key
frame still against the last one computed (a quarter of ``idle_below``) is always reused.
``keyframe_gap = 1`` is the fixed schedule of one pass per key frame.

Torch-free at import (node modules read these defaults before a node starts): what needs torch
imports it where it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

KEYFRAME_STILL_SHARE = 0.25
"""A key frame is still when its mean absolute change, in [0, 1] units, is at most this share
of ``idle_below``: a frame-wide mean, where sensor noise averages out (about 0.003 for noise of
2 grey levels through a video codec) and a moving object does not."""


@dataclass(frozen=True)
class AdaptiveSettings:
    """How the model's work follows the scene (the ``model`` node's parameters of these names)."""

    idle_below: float = 0.02
    """Largest |input| of a still step (2 % of full scale: sensor noise, not motion); negative:
    never idle."""
    idle_after: int = 8
    """Still steps computed before the node idles (two segments of the shipped K = 4)."""
    keyframe_gap: int = 3
    """Most segments between two ANN passes (1: a pass per key frame, the fixed schedule)."""
    keyframe_change: float = 0.08
    """Mean absolute change of a key frame (in [0, 1] units) that calls for an ANN pass."""
    keyframe_confidence: float = 0.4
    """A last prediction less confident than this calls for an ANN pass.

    The key-frame defaults were chosen on the synthetic validation split (bench/RESULTS.md,
    "Key frames on demand"): about half the ANN passes at the same accuracy."""

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} is {value!r}; expected a number")
            return float(value)

        def count(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}; expected an integer >= 1")

        number("idle_below")
        count("idle_after")
        count("keyframe_gap")
        if number("keyframe_change") < 0:
            raise ValueError(f"keyframe_change is {self.keyframe_change!r}; expected >= 0")
        if not 0 <= number("keyframe_confidence") <= 1:
            raise ValueError(
                f"keyframe_confidence is {self.keyframe_confidence!r}; expected a number in [0, 1]"
            )

    @classmethod
    def parse(cls, text: str) -> AdaptiveSettings:
        """Settings from ``NAME=VALUE,...`` (the rest default); raises ValueError naming the
        bad item."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        given: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in fields:
                raise ValueError(f"{item!r}: expected NAME=VALUE with NAME one of {sorted(fields)}")
            try:
                given[name] = int(value) if fields[name] == "int" else float(value)
            except ValueError:
                kind = "an integer" if fields[name] == "int" else "a number"
                raise ValueError(f"{item!r}: {value!r} is not {kind}") from None
        return cls(**given)


def is_still(steps: npt.NDArray[np.floating[Any]], below: float) -> bool:
    """Whether every value of ``steps`` is within ``below`` of zero."""
    if below < 0:
        return False
    return steps.size == 0 or float(np.abs(steps).max()) <= below


@dataclass
class IdleGate:
    """Tells for each SNN input whether to compute it or hold the last prediction, and which
    segment a computed one continues (a segment that began on a held step begins again on
    the next computed one)."""

    settings: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    still_run: int = 0
    """Still steps in a row so far (computed and held)."""
    held: int = 0
    """Steps not computed since the gate was made."""
    _context: Any = field(default=None, repr=False)
    _held_segment: Any = field(default=None, repr=False)

    def admit(
        self,
        steps: npt.NDArray[np.floating[Any]],
        context: Any,
        new_segment: bool,
        can_hold: bool = True,
    ) -> tuple[bool, Any, bool]:
        """Whether to compute ``steps`` (one input's), and the context and new-segment flag
        to compute them with. Still steps are computed while the still run is at most
        ``idle_after`` long, or when they start a segment on another context (what the ANN
        saw changed), or when nothing can be held yet (``can_hold`` False)."""
        still = is_still(steps, self.settings.idle_below)
        self.still_run = self.still_run + len(steps) if still else 0
        new_context = new_segment and context is not self._context
        if still and self.still_run > self.settings.idle_after and not new_context and can_hold:
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


@dataclass
class KeyframePolicy:
    """Decides for each key frame whether the ANN runs on it or the last context stays."""

    settings: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    passes: int = 0
    """Key frames the ANN ran on."""
    reused: int = 0
    """Key frames whose ANN pass was skipped."""
    _last: Any = field(default=None, repr=False)
    _context: Any = field(default=None, repr=False)
    _gap: int = 0

    def lookup(self, frame: Any, confidence: float | None = None) -> Any:
        """The last context when nothing calls for a pass on ``frame`` (the ANN's
        ``(1, 3, H, W)`` ImageNet-normalised input) given the last prediction's
        ``confidence``, else None: then run the ANN and :meth:`keep` its context."""
        last, s = self._last, self.settings
        if last is None or tuple(last.shape) != tuple(frame.shape):
            return None
        from respike.models.ann import IMAGENET_STD

        scale = frame.new_tensor(IMAGENET_STD).view(-1, 1, 1)  # back to [0, 1] units
        change = float(((frame - last).abs() * scale).mean())
        still = s.idle_below >= 0 and change <= KEYFRAME_STILL_SHARE * s.idle_below
        due = (
            self._gap + 1 >= s.keyframe_gap
            or change > s.keyframe_change
            or (confidence is not None and confidence < s.keyframe_confidence)
        )
        if due and not still:
            return None
        self._gap += 1
        self.reused += 1
        return self._context

    def keep(self, frame: Any, context: Any) -> None:
        """The context the ANN just gave for ``frame``."""
        self._last, self._context, self._gap = frame, context, 0
        self.passes += 1


def stream_clip(
    model: Any, keyframes: Any, steps: Any, gate: IdleGate, policy: KeyframePolicy
) -> Any:
    """One clip streamed as the ``model`` node runs it: ``keyframes`` ``(S, 3, Hk, Wk)`` and
    ``steps`` ``(S*K, C, h, w)`` tensors to per-step logits ``(S*K, outputs)``; a held step
    repeats the last computed step's logits."""
    import torch

    k = model.keyframe_interval
    state, last, context = None, None, None
    logits = []
    for t in range(steps.shape[0]):
        new_segment = t % k == 0
        if new_segment and (context is None or model.config.mode != "snn"):
            frame = None if model.config.mode == "snn" else keyframes[t // k][None]
            confidence: float | None = None
            if last is not None:
                confidence = float(torch.softmax(last, -1).max())
            kept = None if frame is None else policy.lookup(frame, confidence)
            if kept is None:
                kept = model.encode_keyframe(frame)
                if frame is not None:
                    policy.keep(frame, kept)
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
