"""Idling on a still scene: streamed clips equal the full computation where nothing is held,
held steps repeat the last computed prediction, key frames are reused only when still."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from respike.models import get_model
from respike.models.idle import IdleGate, KeyframeReuse, check_idle_settings, stream_clip
from tests.test_models_hybrid import excited, make_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("mode", ["hybrid", "snn"])
def test_a_moving_clip_streams_exactly_as_computed_in_full(mode: str) -> None:
    model = excited(get_model("respike_tiny", num_classes=5, mode=mode))
    clip = make_clip(model, batch=1, segments=4)
    gate, reuse = IdleGate(settle_steps=1), KeyframeReuse()
    with torch.no_grad():
        full = model(clip).step_logits[0]
        streamed = stream_clip(model, clip.keyframes[0], clip.steps[0], gate, reuse)
    assert gate.held == 0 and reuse.reused == 0, "every step moves, every key frame differs"
    torch.testing.assert_close(streamed, full, rtol=0, atol=1e-10)


def test_still_steps_are_computed_until_settled_then_held_until_change() -> None:
    model = excited(get_model("respike_tiny", num_classes=5))
    clip = make_clip(model, batch=1, segments=4)  # K = 2: 8 steps
    steps = clip.steps[0].clone()
    steps[2:7] = 0.01  # still (noise below 0.02) for five steps, then change at step 7
    keyframes = clip.keyframes[0].clone()
    keyframes[1:] = keyframes[1]  # the scene stops from segment 1 on
    gate, reuse = IdleGate(settle_steps=2), KeyframeReuse()
    with torch.no_grad():
        full = model(type(clip)(keyframes[None], steps[None])).step_logits[0]
        streamed = stream_clip(model, keyframes, steps, gate, reuse)
    torch.testing.assert_close(streamed[:4], full[:4], rtol=0, atol=1e-10)
    for held in range(4, 7):
        assert torch.equal(streamed[held], streamed[3]), f"step {held} repeats step 3"
    assert gate.held == 3 and reuse.reused == 2, "steps 4-6 held; key frames 2 and 3 reused"
    assert not torch.equal(streamed[7], streamed[3]), "the step with change is computed"


def test_a_key_frame_is_reused_only_while_still_against_the_last_one_computed() -> None:
    reuse = KeyframeReuse(still_below=0.02)  # still: mean change <= 0.005 in [0, 1] units
    base = torch.rand(1, 3, 16, 16)
    assert reuse.lookup(base) is None
    reuse.keep(base, "context")
    assert reuse.lookup(base + 0.003 / 0.225) == "context", "noise-sized change"
    assert reuse.lookup(base + 0.02 / 0.225) is None, "a change of 2 % everywhere is not still"
    assert reuse.lookup(torch.rand(1, 3, 8, 8)) is None, "another size"
    assert reuse.reused == 1


@pytest.mark.parametrize(
    ("still_below", "settle_steps", "message"),
    [
        (0.02, 0, r"idle_after is 0; expected an integer >= 1"),
        (0.02, 2.5, r"idle_after is 2.5"),
        ("x", 8, r"idle_below is 'x'; expected a number"),
    ],
)
def test_bad_idle_settings_are_named(still_below: object, settle_steps: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_idle_settings(still_below, settle_steps)  # type: ignore[arg-type]


def test_a_negative_level_never_idles() -> None:
    gate = IdleGate(still_below=-1.0, settle_steps=1)
    zeros = np.zeros((1, 1, 4, 4), np.float32)
    assert all(gate.admit(zeros, "c", False)[0] for _ in range(5)) and gate.held == 0
