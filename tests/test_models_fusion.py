"""Tests of respike.models.fusion: the cross-attention block between SNN and ANN tokens."""

from __future__ import annotations

import pytest
import torch

from respike.models.fusion import FusionBlock, FusionConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def block_with_output(channels: int = 64, context: int = 32, seed: int = 0) -> FusionBlock:
    """A block whose zero-initialised output projection has been given weights."""
    torch.manual_seed(seed)
    block = FusionBlock(channels, context, FusionConfig()).double().eval()
    with torch.no_grad():
        torch.nn.init.normal_(block.proj_out.weight, std=0.2)
    return block


def test_new_block_is_the_identity() -> None:
    block = FusionBlock(16, 8, FusionConfig()).eval()
    x = torch.randn(2, 3, 16, 4, 4)
    kv = block.context(torch.randn(3, 8, 2, 2))
    with torch.no_grad():
        assert torch.equal(block(x, kv), x), "zero-initialised proj_out must make fusion a no-op"


def test_heads_of_32_channels() -> None:
    assert FusionBlock(128, 64, FusionConfig()).cross_attn.heads == 4
    assert FusionBlock(16, 64, FusionConfig()).cross_attn.heads == 1


def test_keys_and_values_come_from_the_ann_tokens() -> None:
    block = block_with_output()
    x = (torch.rand(1, 2, 64, 4, 4, dtype=torch.float64) < 0.3).double()
    a = torch.randn(2, 32, 3, 3, dtype=torch.float64)
    b = torch.randn(2, 32, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        out_a = block(x, block.context(a))
        out_b = block(x, block.context(b))
    assert out_a.shape == x.shape
    assert not torch.allclose(out_a, out_b), "changing the key frame must change the output"


def test_time_steps_are_independent_queries() -> None:
    """T steps at once equal T single steps against the same key frame."""
    block = block_with_output()
    x = (torch.rand(4, 2, 64, 4, 4, dtype=torch.float64) < 0.3).double()
    kv = block.context(torch.randn(2, 32, 3, 3, dtype=torch.float64))
    with torch.no_grad():
        together = block(x, kv)
        apart = torch.cat([block(x[t : t + 1], kv) for t in range(4)])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-12)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="distinct"):
        FusionConfig(stages=(2, 2))
    assert FusionConfig(stages=(4, 2)).stages == (2, 4)
