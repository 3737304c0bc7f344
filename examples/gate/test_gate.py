"""The gate node, tested with respike's test double: no sockets, no processes."""

from __future__ import annotations

from respike_gate import Gate, GateParams

from respike.nodes.testing import MockIO, message
from respike.stream import kinds


def predict(label: str, score: float, t: int) -> object:
    return message(kinds.Prediction(label=label, topk=[[label, score]]), t=t)


def test_a_label_is_passed_on_once_it_has_held() -> None:
    io = MockIO(Gate, params=GateParams(hold=3, min_score=0.5))
    labels = ["wave"] * 2 + ["clap"] + ["wave"] * 5 + ["no action"] * 3
    for t, label in enumerate(labels):
        io.send("predictions", predict(label, 0.9, t))
    decisions = [(m.t, kinds.Prediction.read(m).label) for m in io.published("decisions")]
    assert decisions == [(5, "wave"), (10, "no action")]
    assert len(io.end()) == 2


def test_unsure_predictions_do_not_count() -> None:
    io = MockIO(Gate, params=GateParams(hold=2, min_score=0.8))
    for t, score in enumerate([0.9, 0.5, 0.9, 0.95]):
        io.send("predictions", predict("wave", score, t))
    assert [m.t for _, m in io.end()] == [3]
