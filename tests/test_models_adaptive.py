"""Compute that follows the scene: streamed clips equal the full computation where nothing is
skipped, held steps repeat the last computed prediction, key frames get an ANN pass when
something calls for one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from respike.models import get_model
from respike.models.adaptive import AdaptiveSettings, IdleGate, KeyframePolicy, stream_clip
from tests.test_models_hybrid import excited, make_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("mode", ["hybrid", "snn"])
def test_a_moving_clip_streams_exactly_as_computed_in_full(mode: str) -> None:
    model = excited(get_model("respike_tiny", num_classes=5, mode=mode))
    clip = make_clip(model, batch=1, segments=4)
    settings = AdaptiveSettings(idle_after=1)
    gate, reuse = IdleGate(settings), KeyframePolicy(settings)
    with torch.no_grad():
        full = model(clip).step_logits[0]
        streamed = stream_clip(model, clip.keyframes[0], clip.steps[0], gate, reuse)
    assert gate.held == 0 and reuse.reused == 0, "every step moves, every key frame differs"
    assert reuse.passes == (4 if mode == "hybrid" else 0), "snn mode has no key-frame ANN"
    torch.testing.assert_close(streamed, full, rtol=0, atol=1e-10)


def test_still_steps_are_computed_until_settled_then_held_until_change() -> None:
    model = excited(get_model("respike_tiny", num_classes=5))
    clip = make_clip(model, batch=1, segments=4)  # K = 2: 8 steps
    steps = clip.steps[0].clone()
    steps[2:7] = 0.01  # still (noise below 0.02) for five steps, then change at step 7
    keyframes = clip.keyframes[0].clone()
    keyframes[1:] = keyframes[1]  # the scene stops from segment 1 on
    settings = AdaptiveSettings(idle_after=2)
    gate, reuse = IdleGate(settings), KeyframePolicy(settings)
    with torch.no_grad():
        full = model(type(clip)(keyframes[None], steps[None])).step_logits[0]
        streamed = stream_clip(model, keyframes, steps, gate, reuse)
    torch.testing.assert_close(streamed[:4], full[:4], rtol=0, atol=1e-10)
    for held in range(4, 7):
        assert torch.equal(streamed[held], streamed[3]), f"step {held} repeats step 3"
    assert gate.held == 3 and reuse.reused == 2, "steps 4-6 held; key frames 2 and 3 reused"
    assert not torch.equal(streamed[7], streamed[3]), "the step with change is computed"


def test_a_key_frame_is_reused_only_while_still_against_the_last_one_computed() -> None:
    reuse = KeyframePolicy(AdaptiveSettings(idle_below=0.02, keyframe_gap=1))  # still: <= 0.005
    base = torch.rand(1, 3, 16, 16)
    assert reuse.lookup(base) is None
    reuse.keep(base, "context")
    assert reuse.lookup(base + 0.003 / 0.225) == "context", "noise-sized change"
    assert reuse.lookup(base + 0.02 / 0.225) is None, "a change of 2 % everywhere is not still"
    assert reuse.lookup(torch.rand(1, 3, 8, 8)) is None, "another size"
    assert reuse.reused == 1 and reuse.passes == 1


def test_key_frames_on_demand_run_the_ann_on_change_low_confidence_or_a_full_gap() -> None:
    settings = AdaptiveSettings(
        keyframe_gap=3, keyframe_change=0.03, keyframe_confidence=0.5, idle_below=-1.0
    )
    policy = KeyframePolicy(settings)
    base = torch.rand(1, 3, 16, 16)
    policy.keep(base, "first")
    small = base + 0.01 / 0.225  # changed, by less than keyframe_change
    assert policy.lookup(small, confidence=0.9) == "first"
    assert policy.lookup(small, confidence=0.9) == "first"
    assert policy.lookup(small, confidence=0.9) is None, "the third segment since the pass"
    policy.keep(small, "second")
    assert policy.lookup(small, confidence=0.4) is None, "confidence fell"
    assert policy.lookup(small + 0.05 / 0.225, confidence=0.9) is None, "the scene changed"
    assert policy.lookup(small, confidence=0.9) == "second"
    assert (policy.passes, policy.reused) == (2, 3)
    fixed = KeyframePolicy(AdaptiveSettings(idle_below=-1.0, keyframe_gap=1))
    fixed.keep(base, "first")
    assert fixed.lookup(base, confidence=1.0) is None, "the fixed schedule: a pass every key frame"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("idle_after=0", r"idle_after is 0; expected an integer >= 1"),
        ("keyframe_gap=0", r"keyframe_gap is 0; expected an integer >= 1"),
        ("keyframe_confidence=2", r"keyframe_confidence is 2.0; expected a number in \[0, 1\]"),
        ("precision=4", r"'precision=4': expected NAME=VALUE with NAME one of"),
        ("idle_after=2.5", r"'idle_after=2.5': '2.5' is not an integer"),
    ],
)
def test_bad_settings_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveSettings.parse(text)


def test_a_negative_level_never_idles() -> None:
    gate = IdleGate(AdaptiveSettings(idle_below=-1.0, idle_after=1))
    zeros = np.zeros((1, 1, 4, 4), np.float32)
    assert all(gate.admit(zeros, "c", False)[0] for _ in range(5)) and gate.held == 0
