"""Tests of respike.models.snn: multi-scale spike features, explicit state, BPTT gradients."""

from __future__ import annotations

import pytest
import torch

from respike.models.snn import SNNConfig, SpikingResNet

TINY = SNNConfig(widths=(4, 8, 8, 16), blocks=(1, 2, 1, 1))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def excite(snn: SpikingResNet, seed: int = 0) -> SpikingResNet:
    """Batch-norm statistics that make an untrained network spike in every stage."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in snn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 1.5 + 1.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.8 - 0.3)
    return snn.eval()


def events(t: int, b: int, c: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, c, size, size, generator=gen) < 0.3).to(torch.float64)


def test_default_feature_shapes_at_64px() -> None:
    snn = SpikingResNet(SNNConfig(), in_channels=2).eval()
    with torch.no_grad():
        features, state = snn.step(torch.zeros(1, 2, 64, 64))
    shapes = [tuple(f.shape) for f in features]
    assert shapes == [(1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4)]
    assert len(state.cells) == 2 * 8 + 1


def test_features_are_spikes_and_every_stage_fires() -> None:
    torch.manual_seed(0)
    snn = excite(SpikingResNet(TINY, in_channels=2).double())
    with torch.no_grad():
        features, _ = snn.forward_sequence(events(3, 2))
    for i, f in enumerate(features, start=1):
        assert set(f.unique().tolist()) <= {0.0, 1.0}, f"stage {i} must emit binary spikes"
        assert f.sum() > 0, f"stage {i} must fire for the test to mean anything"


def test_sequence_equals_repeated_steps_and_state_carries() -> None:
    torch.manual_seed(0)
    snn = excite(SpikingResNet(TINY, in_channels=2).double())
    x = events(6, 2)
    with torch.no_grad():
        whole, _ = snn.forward_sequence(x)
        state = None
        stepped = []
        for t in range(6):
            f, state = snn.step(x[t], state)
            stepped.append(f)
        first, mid = snn.forward_sequence(x[:3])
        second, _ = snn.forward_sequence(x[3:], mid)
        fresh, _ = snn.forward_sequence(x[3:])
    for s in range(4):
        assert torch.equal(whole[s], torch.stack([f[s] for f in stepped])), "sequence != steps"
        assert torch.equal(whole[s], torch.cat([first[s], second[s]])), "state did not carry"
    assert not all(torch.equal(whole[s][3:], fresh[s]) for s in range(4)), (
        "a fresh state must differ from the carried one, or the test checks nothing"
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_residual_inputs(channels: int) -> None:
    snn = SpikingResNet(TINY, in_channels=channels).eval()
    residual = torch.randn(2, 1, channels, 32, 32)
    with torch.no_grad():
        features, _ = snn.forward_sequence(residual)
    assert features[-1].shape == (2, 1, 16, 2, 2)
    with pytest.raises(ValueError, match=r"expected \(T, B, 1, H, W\)"):
        SpikingResNet(TINY, in_channels=1).forward_sequence(torch.zeros(1, 1, 2, 32, 32))


def test_bptt_gradients_reach_the_stem_and_earlier_steps() -> None:
    """The loss on the last step's last-stage spikes back-propagates through time and depth."""
    torch.manual_seed(0)
    snn = SpikingResNet(TINY, in_channels=2).train()
    x = (torch.rand(4, 2, 2, 32, 32) < 0.3).float().requires_grad_(True)
    features, _ = snn.forward_sequence(x)
    features[-1][-1].sum().backward()
    stem = snn.stem.conv.weight.grad
    assert stem is not None and stem.abs().sum() > 0, "no gradient reached the stem"
    assert x.grad is not None and x.grad[0].abs().sum() > 0, "no gradient through time"


def test_spike_driven_convs_are_all_but_the_stem() -> None:
    snn = SpikingResNet(TINY, in_channels=2)
    convs = [m for m in snn.modules() if isinstance(m, torch.nn.Conv2d)]
    driven = snn.spike_driven_convs()
    assert snn.stem.conv not in driven
    assert len(driven) == len(convs) - 1


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        SNNConfig(widths=(4, 8), blocks=(1,))
    with pytest.raises(ValueError, match="stem_stride"):
        SNNConfig(stem_stride=3)


def test_inference_steps_fold_batch_norm_and_fuse_lif_with_the_same_spikes() -> None:
    """Under no_grad a step folds each batch norm into its convolution and runs the LIF cells
    in four ops: the spikes are those of the training-time path, also after new weights."""
    torch.manual_seed(3)
    snn = SpikingResNet(SNNConfig(), in_channels=2).eval()

    def randomise() -> None:
        with torch.no_grad():  # in place, as an optimiser step or load_state_dict changes them
            for module in snn.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.mul_(torch.empty_like(module.weight).uniform_(0.8, 1.25))
                if isinstance(module, torch.nn.BatchNorm2d):
                    assert module.running_mean is not None and module.running_var is not None
                    module.running_mean.uniform_(-0.2, 0.2)
                    module.running_var.uniform_(0.5, 2.0)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.1, 0.3)

    inputs = [torch.rand(1, 2, 64, 64) * 3 for _ in range(12)]
    donor = SpikingResNet(SNNConfig(), in_channels=2).eval()
    for change in ("in place", "in place", "assign"):  # the folded weights follow new ones
        if change == "assign":
            with torch.no_grad():
                for module in donor.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.weight.uniform_(0.5, 1.5)
            snn.load_state_dict(donor.state_dict(), assign=True)
        else:
            randomise()
        slow_state = fast_state = None
        fired = 0
        for x in inputs:
            with torch.enable_grad():
                slow, slow_state = snn.step(x, slow_state)
            with torch.no_grad():
                fast, fast_state = snn.step(x, fast_state)
            for a, b in zip(slow, fast, strict=True):
                assert torch.equal(a, b)
            fired += int(sum(f.sum() for f in fast))
        assert fired > 1000, "a test of spikes needs spikes"
        assert fast_state is not None and slow_state is not None
        for a, b in zip(slow_state.cells, fast_state.cells, strict=True):
            torch.testing.assert_close(a.v, b.v, rtol=1e-5, atol=1e-5)
