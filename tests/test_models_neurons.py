"""Tests of respike.models.neurons: ReSpike's LIF update on Norse cells and the ATan surrogate."""

from __future__ import annotations

import math

import pytest
import torch
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, lif_box_feed_forward_step
from norse.torch.module.lif_box import LIFBoxCell

from respike.models.neurons import (
    LIFBoxATanCell,
    LIFConfig,
    atan_spike,
    lif_box_atan_step,
    lif_step,
    make_lif_cell,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_respike_update_by_hand() -> None:
    """v <- 0.25 v + 0.75 x, spike when v > 1, hard reset to 0."""
    cell = make_lif_cell(LIFConfig())
    state = None
    spikes, voltages = [], []
    for x in (1.0, 1.0, 2.0, 0.0):
        z, state = lif_step(cell, torch.tensor([x], dtype=torch.float64), state)
        spikes.append(float(z))
        voltages.append(float(state.v))
    assert spikes == [0.0, 0.0, 1.0, 0.0]
    assert voltages == pytest.approx([0.75, 0.9375, 0.0, 0.0], abs=1e-12)


def test_threshold_is_strict() -> None:
    """A membrane exactly at threshold does not spike (Norse's heaviside is x > 0)."""
    cell = make_lif_cell(LIFConfig(decay=0.0))
    z, state = lif_step(cell, torch.tensor([1.0]), None)
    assert float(z) == 0.0 and float(state.v) == 1.0


def test_atan_surrogate_gradient() -> None:
    """d spike / d x = alpha / 2 / (1 + (pi/2 alpha x)^2)."""
    x = torch.tensor([0.0, 0.5, -0.25], dtype=torch.float64, requires_grad=True)
    atan_spike(x, 2.0).sum().backward()
    assert x.grad is not None
    expected = [1.0 / (1.0 + (math.pi * v) ** 2) for v in (0.0, 0.5, -0.25)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_atan_step_matches_norse_forward() -> None:
    """Our ATan step and Norse's LIF-box step agree on spikes and voltages (forward)."""
    gen = torch.Generator().manual_seed(3)
    params = LIFConfig().parameters()
    ours = theirs = LIFBoxFeedForwardState(v=torch.zeros(64, dtype=torch.float64))
    for _ in range(10):
        x = torch.rand(64, generator=gen, dtype=torch.float64) * 2.0
        z1, ours = lif_box_atan_step(x, ours, params, 1.0)
        z2, theirs = lif_box_feed_forward_step(x, theirs, params._replace(method="super"), 1.0)
        assert torch.equal(z1, z2), "spikes must match Norse's LIF-box neuron"
        assert torch.equal(ours.v, theirs.v), "membranes must match Norse's LIF-box neuron"


def test_make_lif_cell_picks_norse_step_for_norse_surrogates() -> None:
    assert isinstance(make_lif_cell(LIFConfig()), LIFBoxATanCell)
    cell = make_lif_cell(LIFConfig(surrogate="super", alpha=100.0))
    assert type(cell) is LIFBoxCell
    x = torch.full((4,), 1.5, requires_grad=True)
    z, _ = lif_step(cell, x, None)
    z.sum().backward()
    assert x.grad is not None and bool((x.grad != 0).all()), "surrogate must pass gradients"


def test_state_shape_is_full_from_the_first_step() -> None:
    _, state = lif_step(make_lif_cell(LIFConfig()), torch.zeros(2, 3, 4, 4), None)
    assert state.v.shape == (2, 3, 4, 4)


@pytest.mark.parametrize(
    "kwargs", [{"surrogate": "sigmoid"}, {"decay": 1.0}, {"decay": -0.1}, {"alpha": 0.0}]
)
def test_lif_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LIFConfig(**kwargs)  # type: ignore[arg-type]
