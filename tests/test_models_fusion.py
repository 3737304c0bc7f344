"""Tests of respike.models.fusion: the cross-attention block between SNN and ANN tokens."""

from __future__ import annotations

import pytest
import torch

from respike.models.fusion import FusionBlock, FusionConfig, grid_encoding

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


def test_position_codes_let_attention_see_where_a_key_frame_token_is() -> None:
    """Content-only attention cannot tell a key frame from its mirror image; with position codes
    it can, and a cell gets the code of the same image place on grids of any size."""
    torch.manual_seed(0)
    plain = FusionBlock(32, 32, FusionConfig(head_dim=16)).double().eval()
    placed = FusionBlock(32, 32, FusionConfig(head_dim=16, positional=True)).double().eval()
    placed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for block in (plain, placed):
            torch.nn.init.normal_(block.proj_out.weight, std=0.2)
        placed.proj_out.weight.copy_(plain.proj_out.weight)
    x = (torch.rand(1, 1, 32, 4, 4, dtype=torch.float64) < 0.3).double()
    frame = torch.randn(1, 32, 3, 3, dtype=torch.float64)
    mirrored = frame.flip(-1)
    with torch.no_grad():
        same = plain(x, plain.context(frame)), plain(x, plain.context(mirrored))
        told = placed(x, placed.context(frame)), placed(x, placed.context(mirrored))
    torch.testing.assert_close(*same, rtol=0, atol=1e-12)
    assert not torch.allclose(*told), "the mirrored key frame must change the fused output"
    centre = grid_encoding(1, 1, 16, x)[0]
    torch.testing.assert_close(grid_encoding(3, 3, 16, x)[4], centre)
    assert FusionConfig(**{"stages": (3, 4)}).positional is False, "old configs load without it"
