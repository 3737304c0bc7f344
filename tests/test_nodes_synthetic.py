"""The synthetic source node: labelled frames of the chosen classes, paced, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from respike.nodes.synthetic import SyntheticNode
from respike.nodes.testing import MockIO
from respike.synthetic import class_names


def run(**params: object) -> list:
    io = MockIO(SyntheticNode, "syn", SyntheticNode.Params(speed=0, **params))  # type: ignore[arg-type]
    io.run_source()
    return [message for _, message in io.outputs]


def test_frames_carry_the_true_label_of_the_chosen_classes() -> None:
    messages = run(
        width=64, height=48, count=200, classes="temporal", segment_min=1.0, segment_max=1.5
    )
    temporal = class_names("temporal")
    assert messages[0].arrays["frame"].shape == (48, 64, 3)
    actions = [m.meta["action"] for m in messages]
    assert set(actions) <= set(temporal)
    assert len(set(actions)) >= 2, (
        "the action changes every 1-1.5 s; 200 frames at 30 fps span several"
    )
    assert all(temporal[m.meta["label"]] == m.meta["action"] for m in messages)


def test_same_seed_same_frames() -> None:
    first = run(width=32, height=32, count=5, seed=3)
    again = run(width=32, height=32, count=5, seed=3)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.arrays["frame"], b.arrays["frame"])


def test_pacing_follows_fps() -> None:
    io = MockIO(SyntheticNode, "syn", SyntheticNode.Params(fps=20.0, width=32, height=32))
    delay = io.node.produce()
    assert delay is not None and 0.0 < delay <= 0.05


def test_unknown_class_names_are_errors() -> None:
    with pytest.raises(ValueError, match="jump"):
        MockIO(SyntheticNode, "syn", SyntheticNode.Params(classes="jump"))
