"""Tests of respike.models.energy: MAC and AC counts on tiny nets against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from respike.models import Clip, get_model
from respike.models.energy import (
    ENERGY_PER_AC_PJ,
    ENERGY_PER_MAC_PJ,
    OpCounter,
    OpCounts,
    attention_macs,
    count_macs,
    fan_out_map,
    measure_energy,
    r3d18_reference,
    spike_acs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_conv_and_linear_macs_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(48, 5))
    counts = count_macs(net, torch.zeros(2, 2, 4, 4))
    # conv: 3 x 4 x 4 outputs x (2 x 3 x 3) = 864; linear: 5 x 48 = 240 (per sample)
    assert counts.macs == {"0": 864.0, "2": 240.0}


def test_attention_macs_by_hand() -> None:
    q = torch.zeros(1, 2, 5, 4)
    kv = torch.zeros(1, 2, 3, 4)
    # 2 heads x 5 queries x 3 keys x (4 for q k^T + 4 for a v)
    assert attention_macs(q, kv, kv) == 240


def test_fan_out_at_borders_and_with_stride() -> None:
    same = nn.Conv2d(1, 2, 3, padding=1)
    fan = fan_out_map(same, 4, 4)
    assert fan[0, 0] == 2 * 4 and fan[1, 1] == 2 * 9 and fan[0, 1] == 2 * 6
    strided = nn.Conv2d(1, 1, 3, stride=2, padding=1)
    # outputs at rows/cols 0 and 2 cover input rows {0, 1} and {1, 2, 3}
    assert fan_out_map(strided, 4, 4).tolist() == [
        [1, 2, 1, 1],
        [2, 4, 2, 2],
        [1, 2, 1, 1],
        [1, 2, 1, 1],
    ]


def test_spike_acs_by_hand() -> None:
    conv = nn.Conv2d(3, 2, 3, padding=1)
    spikes = torch.zeros(1, 3, 4, 4)
    spikes[0, 0, 0, 0] = 1  # corner: 4 windows x 2 filters
    spikes[0, 2, 1, 1] = 1  # inside: 9 windows x 2 filters
    assert spike_acs(conv, spikes) == 26
    grouped = nn.Conv2d(4, 4, 1, groups=2)
    assert spike_acs(grouped, torch.ones(1, 4, 2, 2)) == 4 * 4 * 2


def test_counter_splits_macs_and_acs() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-0.5)
    with OpCounter(net, spike_driven=[net[2]]) as counter, torch.no_grad():
        net(x)
    counts = counter.counts()
    # conv 0 (real input): 2 x 16 x 9 = 288 MACs; after the ReLU only windows holding the corner
    # spike are nonzero: 4 pixels x 2 channels, each reaching 1 filter -> 8 ACs
    assert counts.macs == {"0": 288.0}
    assert counts.acs == {"2": 8.0}
    assert counts.energy_pj() == pytest.approx(288 * ENERGY_PER_MAC_PJ + 8 * ENERGY_PER_AC_PJ)


def test_published_resnet18_and_r3d18_counts() -> None:
    """torchvision lists 1.81 GFLOPS (MACs) for resnet18 at 224 px and 40.70 for r3d_18."""
    with torch.device("meta"):
        resnet = torchvision.models.resnet18(weights=None)
        image = torch.empty(1, 3, 224, 224)
    assert count_macs(resnet, image).total_macs == pytest.approx(1.814e9, rel=1e-3)
    assert r3d18_reference().total_macs == pytest.approx(40.70e9, rel=1e-3)


def tiny_fusion_macs(n: int, c: int, inner: int, m: int) -> int:
    """MACs of one tiny fusion block per step: n SNN tokens of c channels, m ANN tokens."""
    proj = n * c * inner * 2  # proj_in, proj_out
    self_attn = 4 * n * inner * inner + n * n * 2 * inner  # q, k, v, out + q k^T, a v
    cross = 2 * n * inner * inner + n * m * 2 * inner  # q, out + q k^T, a v
    ff = n * inner * 8 * inner + n * 4 * inner * inner  # GEGLU in (2 x 4), out
    return proj + self_attn + cross + ff


def test_measure_energy_of_the_tiny_hybrid_by_hand() -> None:
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=3).eval()
    clip = Clip(torch.randn(2, 2, 3, 32, 32), torch.zeros(2, 4, 2, 32, 32))
    report = measure_energy(model, clip)
    # SNN stem 3x3 stride 2, 2 -> 4 channels, 16 x 16 out; a silent input fires nothing
    assert report.step.macs["snn"] == 16 * 16 * 4 * 2 * 9
    assert report.step.acs.get("snn", 0.0) == 0.0
    # fused stages 2, 3, 4: SNN maps 8x8x8, 4x4x8, 2x2x16 vs ANN maps 4x4x8, 2x2x16, 1x1x16
    fusion = (
        tiny_fusion_macs(64, 8, 8, 16)
        + tiny_fusion_macs(16, 8, 8, 4)
        + tiny_fusion_macs(4, 16, 16, 1)
    )
    assert report.step.macs["fusion"] == fusion
    assert report.step.macs["head"] == (4 + 8 + 8 + 16 + 16) * 3
    # ANN at 32 px: stem 7x7/2 (16x16), then 1 block per stage at 8, 4, 2, 1 px
    ann = (
        16 * 16 * 8 * 3 * 49
        + 2 * 8 * 8 * 8 * 8 * 9
        + 2 * 4 * 4 * 8 * 8 * 9
        + 4 * 4 * 8 * 8
        + 2 * 2 * 16 * 8 * 9
        + 2 * 2 * 16 * 16 * 9
        + 2 * 2 * 16 * 8
        + 16 * 16 * 9 * 2
        + 16 * 16
    )
    assert report.keyframe.macs["ann"] == ann
    # keys and values, once per key frame: 2 x tokens x ANN channels x inner
    assert report.keyframe.macs["fusion"] == 2 * (16 * 8 * 8 + 4 * 16 * 8 + 1 * 16 * 16)
    assert report.prediction.total_macs == pytest.approx(
        report.step.total_macs + report.keyframe.total_macs / 2
    )


def test_measured_acs_follow_the_spikes() -> None:
    """SNN ACs equal an independent count: nonzero inputs per window (unfold) x filters."""
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=3, mode="snn").train()
    clip = Clip(torch.zeros(1, 1, 3, 32, 32), (torch.rand(1, 2, 2, 32, 32) < 0.3).float())
    report = measure_energy(model, clip)
    assert model.snn is not None
    expected = 0.0
    dense = 0.0

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal expected, dense
        assert isinstance(module, nn.Conv2d)
        x = inputs[0]
        assert set(x.unique().tolist()) <= {0.0, 1.0}, "spike-driven convs must see spikes"
        windows = F.unfold(
            (x != 0).float(), module.kernel_size, padding=module.padding, stride=module.stride
        )
        expected += float(windows.sum()) * module.out_channels
        dense += output.numel() * module.in_channels * module.kernel_size[0] ** 2

    handles = [c.register_forward_hook(record) for c in model.snn.spike_driven_convs()]
    with torch.no_grad():
        state = model.set_keyframe(None)
        for t in range(2):
            _, state = model.step(clip.steps[:, t], state)
    for h in handles:
        h.remove()
    assert report.step.acs["snn"] == pytest.approx(expected / 2, rel=1e-12)
    assert 0 < report.step.acs["snn"] < dense / 2, "spikes must be sparse but present"


def test_op_counts_arithmetic() -> None:
    a = OpCounts({"ann": 10.0}, {"snn": 4.0})
    b = OpCounts({"ann": 2.0, "head": 1.0}, {})
    total = a + b.scaled(0.5)
    assert total.macs == {"ann": 11.0, "head": 0.5} and total.acs == {"snn": 4.0}
    assert total.energy_pj() == pytest.approx(11.5 * 4.6 + 4.0 * 0.9)
