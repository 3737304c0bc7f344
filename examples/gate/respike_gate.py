"""A node kind from outside respike: pass on a prediction only when a decision is made.

A robot should act once when someone starts waving, not 30 times a second. ``gate`` passes
a rolling prediction on when its label changes to one that has held for ``hold`` predictions
at a top score of at least ``min_score``; ``no action`` is passed on too, so a consumer knows
when an action is over.
"""

from __future__ import annotations

from dataclasses import dataclass

from respike.nodes.base import Node, param
from respike.stream import kinds
from respike.stream.messages import Message


@dataclass(frozen=True)
class GateParams:
    hold: int = param(5, "predictions a label must hold before it is passed on")
    min_score: float = param(0.5, "top score a prediction needs to count toward holding")


class Gate(Node[GateParams]):
    """Passes on a prediction when its label has held for ``hold`` predictions and changed."""

    Params = GateParams
    inputs = ("predictions",)
    outputs = ("decisions",)

    def start(self) -> None:
        self._candidate, self._held, self._decided = "", 0, ""

    def on_message(self, port: str, message: Message) -> None:
        prediction = kinds.Prediction.read(message)
        label = prediction.label or (prediction.topk[0][0] if prediction.topk else "")
        score = float(prediction.topk[0][1]) if prediction.topk else 0.0
        if score < self.params.min_score:
            self._candidate, self._held = "", 0
            return
        self._held = self._held + 1 if label == self._candidate else 1
        self._candidate = label
        if self._held >= self.params.hold and label != self._decided:
            self._decided = label
            self.publish("decisions", prediction, message.t, message.arrays)
