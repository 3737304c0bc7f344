"""Tests of respike.models.hybrid: step == forward, one code path for all modes, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from respike.models import Clip, FusionConfig, HybridReSpike, ModelConfig, get_model, measure_energy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def excited(model: HybridReSpike, seed: int = 0) -> HybridReSpike:
    """Give an untrained model active neurons and non-trivial fusion, in eval mode, float64."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if model.snn is not None:
            for m in model.snn.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 1.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.8 - 0.3)
        for block in model.fusion.values():
            block.proj_out.weight.normal_(0.0, 0.3, generator=gen)
    return model.double().eval()


def make_clip(model: HybridReSpike, batch: int = 2, segments: int = 3, seed: int = 1) -> Clip:
    spec = model.config.input_spec
    gen = torch.Generator().manual_seed(seed)
    keyframes = torch.randn(batch, segments, 3, *spec.keyframe_size, generator=gen)
    steps = torch.rand(
        batch, segments * spec.keyframe_interval, spec.snn_channels, *spec.snn_size, generator=gen
    )
    return Clip(keyframes.double(), (steps < 0.3).double())


def stream(model: HybridReSpike, clip: Clip) -> torch.Tensor:
    """Per-step logits from the streaming API, one sample and one step at a time."""
    k = model.keyframe_interval
    per_sample = []
    for b in range(clip.steps.shape[0]):
        state = None
        logits = []
        for t in range(clip.steps.shape[1]):
            if t % k == 0:
                state = model.set_keyframe(clip.keyframes[b : b + 1, t // k], state)
            assert state is not None
            out, state = model.step(clip.steps[b : b + 1, t], state)
            logits.append(out)
        per_sample.append(torch.stack(logits, dim=1))
    return torch.cat(per_sample)


INLINE = FusionConfig(stages=(2, 3, 4), head_dim=8, placement="inline")


def inline_model(num_classes: int = 4) -> HybridReSpike:
    """``respike_tiny`` with ReSpike's in-line fusion, excited."""
    return excited(get_model("respike_tiny", num_classes=num_classes, fusion=INLINE))


@pytest.mark.parametrize("mode", ["hybrid", "snn", "ann", "inline"])
def test_step_equals_forward(mode: str) -> None:
    torch.manual_seed(0)
    model = (
        inline_model(5)
        if mode == "inline"
        else excited(get_model("respike_tiny", num_classes=5, mode=mode))
    )
    clip = make_clip(model)
    with torch.no_grad():
        out = model(clip)
        streamed = stream(model, clip)
    assert out.step_logits.shape == (2, 6, 5)
    torch.testing.assert_close(streamed, out.step_logits, rtol=0, atol=1e-10)
    k = model.keyframe_interval
    torch.testing.assert_close(out.logits, out.step_logits[:, k - 1 :: k].mean(dim=1))


def test_forward_continues_from_a_state() -> None:
    torch.manual_seed(0)
    model = excited(get_model("respike_tiny", num_classes=3))
    clip = make_clip(model, segments=4)
    half = Clip(clip.keyframes[:, :2], clip.steps[:, :4])
    rest = Clip(clip.keyframes[:, 2:], clip.steps[:, 4:])
    with torch.no_grad():
        whole = model(clip).step_logits
        first = model(half)
        second = model(rest, first.state).step_logits
        fresh = model(rest).step_logits
    torch.testing.assert_close(torch.cat([first.step_logits, second], 1), whole, rtol=0, atol=0)
    assert not torch.allclose(second, fresh), "SNN membranes must carry across clips"


def test_modes_are_one_code_path() -> None:
    """With fusion at identity, hybrid logits split exactly into the snn and ann models' terms."""
    torch.manual_seed(0)
    hybrid = get_model("respike_tiny", num_classes=4, mode="hybrid")
    snn = get_model("respike_tiny", num_classes=4, mode="snn")
    ann = get_model("respike_tiny", num_classes=4, mode="ann")
    assert snn.ann is None and len(snn.fusion) == 0 and ann.snn is None
    assert hybrid.snn is not None and hybrid.ann is not None
    excited(hybrid)
    for block in hybrid.fusion.values():
        torch.nn.init.zeros_(block.proj_out.weight)
    snn.snn.load_state_dict(hybrid.snn.state_dict())
    ann.ann.load_state_dict(hybrid.ann.state_dict())
    snn_width = sum(hybrid.config.snn.widths)
    with torch.no_grad():
        snn.head.weight.copy_(hybrid.head.weight[:, :snn_width])
        snn.head.bias.copy_(hybrid.head.bias)
        ann.head.weight.copy_(hybrid.head.weight[:, snn_width:])
        ann.head.bias.zero_()
    snn.double().eval()
    ann.double().eval()
    clip = make_clip(hybrid)
    with torch.no_grad():
        total = hybrid(clip).step_logits
        parts = snn(clip).step_logits + ann(clip).step_logits
    torch.testing.assert_close(parts, total, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["hybrid", "snn", "inline"])
def test_steps_across_segments_equal_step_by_step(mode: str) -> None:
    """Steps spanning key frames (one SNN pass, or a pass per segment with in-line fusion)
    give the streaming logits and state."""
    torch.manual_seed(0)
    model = (
        inline_model()
        if mode == "inline"
        else excited(get_model("respike_tiny", num_classes=4, mode=mode))
    )
    clip = make_clip(model, batch=1, segments=3)
    k = model.keyframe_interval
    frames = clip.keyframes[:, :, None] if mode != "snn" else [[None] * 3]
    contexts = [model.encode_keyframe(f) for f in frames[0]]
    with torch.no_grad():
        expected = stream(model, clip)
        # steps 0..2 (segment 0 and the first step of segment 1), then 3..5 (a new segment at 4)
        first, state = model.steps_across(clip.steps[:, :3], None, {0: contexts[0], 2: contexts[1]})
        second, state = model.steps_across(clip.steps[:, 3:], state, {1: contexts[2]})
    assert k == 2
    torch.testing.assert_close(torch.cat([first, second], 1), expected, rtol=0, atol=1e-10)
    with pytest.raises(RuntimeError, match="no key frame yet"):
        model.steps_across(clip.steps[:, :2], None, {1: contexts[1]})
    with pytest.raises(ValueError, match="outside steps"):
        model.steps_across(clip.steps[:, :2], state, {2: contexts[1]})


@pytest.mark.parametrize("mode", ["hybrid", "snn"])
def test_a_windowed_head_streams_as_it_runs_on_clips(mode: str) -> None:
    """Mean and spread over the last N steps, carried across key frames: step by step, in
    batches spanning key frames, and on whole clips all agree."""
    from dataclasses import replace

    torch.manual_seed(0)
    base = get_model("respike_tiny", num_classes=3, mode=mode)
    model = excited(HybridReSpike(replace(base.config, head_window=3)))
    clip = make_clip(model, batch=1, segments=4)
    frames = clip.keyframes[:, :, None] if mode == "hybrid" else [[None] * 4]
    contexts = [model.encode_keyframe(f) for f in frames[0]]
    with torch.no_grad():
        expected = stream(model, clip)
        out = model(clip)
        first, state = model.steps_across(clip.steps[:, :3], None, {0: contexts[0], 2: contexts[1]})
        second, _ = model.steps_across(clip.steps[:, 3:], state, {1: contexts[2], 3: contexts[3]})
    torch.testing.assert_close(out.step_logits, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([first, second], 1), expected, rtol=0, atol=1e-10)
    snn = sum(model.config.snn.widths)
    features = out.features[0, :, :snn]  # the window means
    spread = out.features[0, :, snn : 2 * snn]
    assert model.head.in_features == out.features.shape[-1]
    assert spread[0].abs().max() == 0, "one step has no spread"
    assert not torch.allclose(features[5], features[4])


def test_an_unfused_head_on_a_grid_sees_the_snn_alone() -> None:
    """``head_fused=False`` (a taught head): the SNN columns of the head's inputs, stage 2's
    spikes on a 2x2 grid included, do not change with the key frames; fused ones do. Streaming
    still equals whole clips."""
    from dataclasses import replace

    torch.manual_seed(0)
    base = get_model("respike_tiny", num_classes=3)
    snn = replace(base.config.snn, head_grid=(2, 2), grid_stages=(1,))
    assert snn.feature_widths == (*snn.widths, 4 * snn.widths[1])
    fused = excited(HybridReSpike(replace(base.config, snn=snn, head_window=3)))
    unfused = excited(HybridReSpike(replace(fused.config, head_fused=False)))
    unfused.load_state_dict(fused.state_dict())
    clip = make_clip(unfused, batch=1, segments=3)
    other = Clip(clip.keyframes.flip(-1) * 2, clip.steps)
    columns = 2 * sum(snn.feature_widths)
    with torch.no_grad():
        out = unfused(clip)
        torch.testing.assert_close(out.step_logits, stream(unfused, clip), rtol=0, atol=1e-10)
        same = unfused(other).features[..., :columns]
        changed = fused(other).features[..., :columns]
        before = fused(clip).features[..., :columns]
    assert unfused.encode_keyframe(clip.keyframes[:, 0]).kv == (), "no fusion keys computed"
    torch.testing.assert_close(same, out.features[..., :columns], rtol=0, atol=0)
    assert not torch.allclose(changed, before), "the fused head does see the key frame"


def test_head_grid_settings_are_checked_and_old_names_load() -> None:
    from respike.models.hybrid import ModelConfig
    from respike.models.snn import SNNConfig

    with pytest.raises(ValueError, match="grid_stages need a head_grid"):
        SNNConfig(grid_stages=(1,))
    with pytest.raises(ValueError, match=r"must name stages 0\.\.3"):
        SNNConfig(head_grid=(2, 2), grid_stages=(4,))
    with pytest.raises(ValueError, match="motion detectors or grid_stages"):
        SNNConfig(head_grid=(2, 2))
    config = get_model("respike_tiny", num_classes=3).config
    saved = config.to_dict()
    saved["snn"] = {**saved["snn"], "motion_shifts": (1,), "motion_grid": (3, 4)}
    del saved["snn"]["head_grid"]
    saved["input_spec"] = {**saved["input_spec"], "snn_input": "residual", "snn_channels": 1}
    loaded = ModelConfig.from_dict(saved)
    assert loaded.snn.head_grid == (3, 4), "a checkpoint from before the rename loads"
    assert loaded.head_fused, "checkpoints without the field keep their fused head"


def test_streaming_errors() -> None:
    model = get_model("respike_tiny", num_classes=2).eval()
    x = torch.zeros(1, 2, 32, 32)
    with pytest.raises(RuntimeError, match="set_keyframe"):
        model.step(x, model.set_keyframe(torch.zeros(1, 3, 32, 32))._replace(context=None))
    with pytest.raises(ValueError, match="expected \\(B, 3, H, W\\)"):
        model.set_keyframe(None)
    state = model.set_keyframe(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="SNN input has shape"):
        model.step(torch.zeros(1, 2, 16, 16), state)
    with pytest.raises(ValueError, match="S\\*2"):
        model(Clip(torch.zeros(1, 2, 3, 32, 32), torch.zeros(1, 3, 2, 32, 32)))


def test_snn_mode_needs_no_keyframe_image() -> None:
    model = get_model("respike_tiny", num_classes=2, mode="snn").eval()
    with torch.no_grad():
        logits, state = model.step(torch.zeros(1, 2, 32, 32), model.set_keyframe(None))
    assert logits.shape == (1, 2) and state.snn is not None


@pytest.mark.slow
def test_tiny_snn_overfits_through_the_spiking_layers() -> None:
    """Head frozen: only the SNN learns, so gradients must flow through its spikes (BPTT)."""
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=4, mode="snn").train()
    gen = torch.Generator().manual_seed(1)
    clip = Clip(
        torch.zeros(4, 2, 3, 32, 32), (torch.rand(4, 4, 2, 32, 32, generator=gen) < 0.2).float()
    )
    labels = torch.arange(4)
    model.head.requires_grad_(False)
    assert model.snn is not None
    optimiser = torch.optim.Adam(model.snn.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        loss = F.cross_entropy(model(clip).logits, labels)
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = model(clip).logits
    assert first is not None and float(F.cross_entropy(logits, labels)) < 0.7 * first
    assert torch.equal(logits.argmax(1), labels), "the tiny batch must be learnt"


@pytest.mark.slow
def test_compiled_step_matches_eager() -> None:
    """``enable_compile`` traces the whole step into one graph (eager backend: fast to build)."""
    torch.manual_seed(0)
    model = excited(get_model("respike_tiny", num_classes=3)).float()
    clip = make_clip(model, batch=1, segments=1)
    frame, steps = clip.keyframes[:, 0].float(), clip.steps[:, :2].float()
    with torch.no_grad():
        eager = model.steps(steps, model.set_keyframe(frame))[0]
        model.enable_compile(backend="eager", fullgraph=True)
        state = model.set_keyframe(frame)
        a, state = model.step(steps[:, 0], state)
        b, _ = model.step(steps[:, 1], state)
        counted = measure_energy(model, Clip(clip.keyframes.float(), clip.steps.float()))
        model.enable_compile(False)
    torch.testing.assert_close(torch.stack([a, b], 1), eager, rtol=1e-5, atol=1e-6)
    reference = measure_energy(model, Clip(clip.keyframes.float(), clip.steps.float()))
    assert counted == reference, "energy counting must step eagerly even when compiled"


def test_inline_fusion_feeds_the_snn_and_late_fusion_does_not() -> None:
    """In line, the key frame changes what the SNN's later stages spike; late, never."""
    torch.manual_seed(0)
    clip = None
    for placement in ("late", "inline"):
        fusion = FusionConfig(stages=(2, 3, 4), head_dim=8, placement=placement)
        model = excited(get_model("respike_tiny", num_classes=3, fusion=fusion))
        assert model.inline == (placement == "inline")
        clip = clip or make_clip(model, batch=1, segments=2)
        a, b = (model.encode_keyframe(clip.keyframes[:, s]) for s in range(2))
        x = clip.steps[:, :2].transpose(0, 1)
        with torch.no_grad():
            (first, _), (second, _) = model._snn(x, None, a), model._snn(x, None, b)
        changed = [not torch.equal(f, g) for f, g in zip(first, second, strict=True)]
        assert changed == ([False, True, True, True] if placement == "inline" else [False] * 4)


def test_fusion_placement_is_checked_and_old_configs_load_as_late() -> None:
    config = get_model("respike_tiny", num_classes=3).config.to_dict()
    del config["fusion"]["placement"]  # as checkpoints before in-line fusion wrote it
    assert ModelConfig.from_dict(config).fusion.placement == "late"
    with pytest.raises(ValueError, match="fusion placement must be one of late, inline"):
        FusionConfig(placement="early")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in-line fusion feeds the SNN"):
        ModelConfig(num_classes=3, fusion=INLINE, head_fused=False)


def test_split_nodes_give_the_same_logits() -> None:
    """SNN, key-frame ANN and fusion run apart (as separate nodes) and agree with step()."""
    torch.manual_seed(0)
    model = excited(get_model("respike_tiny", num_classes=3))
    assert model.snn is not None and model.ann is not None
    clip = make_clip(model, batch=1, segments=1)
    frame = clip.keyframes[:, 0]
    with torch.no_grad():
        state = model.set_keyframe(frame)
        context = model.context_from_features(model.ann(frame))
        snn_state, head = None, None
        for t in range(2):
            expected, state = model.step(clip.steps[:, t], state)
            features, snn_state = model.snn.step(clip.steps[:, t], snn_state)
            logits, head = model.fuse([f.unsqueeze(0) for f in features], context, head)
            torch.testing.assert_close(logits[0], expected, rtol=0, atol=1e-12)
