"""Rolling predictions: smoothing, hysteresis and the no-action state."""

from __future__ import annotations

import numpy as np
import pytest

from respike.nodes.rolling import NO_ACTION, RollingState, Smoothing, roll

CLASSES = ("clap", "wave", "drum")


def run(sequence: list[list[float]], settings: Smoothing) -> list[str]:
    state: RollingState | None = None
    labels = []
    for probs in sequence:
        prediction, state = roll(probs, state, CLASSES, settings)
        labels.append(prediction.label)
    return labels


def test_a_single_noisy_step_does_not_flip_the_label() -> None:
    settings = Smoothing(alpha=0.3, enter=0.4, margin=0.1, threshold=0.2)
    steady = [[0.8, 0.1, 0.1]] * 5
    labels = run([*steady, [0.1, 0.8, 0.1], *steady], settings)
    assert set(labels) == {"clap"}, labels


def test_a_lasting_change_switches_the_label_after_a_few_steps() -> None:
    settings = Smoothing(alpha=0.3, enter=0.4, margin=0.1, threshold=0.2)
    labels = run([[0.8, 0.1, 0.1]] * 5 + [[0.1, 0.8, 0.1]] * 8, settings)
    switch = labels.index("wave")
    assert 6 <= switch <= 9, f"switched at step {switch}: {labels}"
    assert labels[switch:] == ["wave"] * (len(labels) - switch), "no flicker back"


def test_low_confidence_is_no_action() -> None:
    labels = run([[0.34, 0.33, 0.33]] * 4, Smoothing(threshold=0.4, enter=0.5))
    assert labels == [NO_ACTION] * 4


def test_topk_is_sorted_and_the_shape_is_checked() -> None:
    prediction, _ = roll([0.2, 0.5, 0.3], None, CLASSES, Smoothing(top_k=2))
    assert [name for name, _ in prediction.topk] == ["wave", "drum"]
    assert prediction.topk[0][1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        roll(np.ones(4) / 4, None, CLASSES)
