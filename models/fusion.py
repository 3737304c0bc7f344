"""Cross-attention fusion: SNN spike tokens query the same-stage ANN key-frame tokens (ReSpike).

One :class:`FusionBlock` per fused stage, a spatial transformer block as ReSpike describes it
(the layout of latent-diffusion models' spatial transformers): GroupNorm, 1x1 conv in,
self-attention over the SNN tokens, cross-attention with queries from SNN tokens and
keys/values from the ANN tokens, GEGLU feed-forward, 1x1 conv out initialised to zero, residual
add. The zero output projection makes a new block the identity, so fusion starts from the
plain SNN features.

Keys and values depend only on the key frame: :meth:`FusionBlock.context` computes them once per
key frame and every SNN step until the next key frame reuses them.

Where a block sits is :attr:`FusionConfig.placement`: ``late`` fuses the SNN's spike features on
their way to the head and never feeds the SNN (the SNN is independent of the key frame, so it
can run on another host); ``inline`` is ReSpike's own code: the fused map replaces the SNN
stage's output, so the next stage's neurons spike on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Placement = Literal["late", "inline"]
PLACEMENTS: tuple[Placement, ...] = ("late", "inline")


@dataclass(frozen=True)
class FusionConfig:
    """Which SNN stages get a fusion block (1-based) and the transformer's sizes.

    Stage 1 is left out by default: at 64 px its 32x32 = 1024 tokens make self-attention alone
    (67 M MACs) cost about twice the whole SNN's dense synaptic operations (35 M) per step.
    """

    stages: tuple[int, ...] = (2, 3, 4)
    head_dim: int = 32
    ff_mult: int = 4
    norm_groups: int = 32
    placement: Placement = "late"
    """``late``: fused features go to the head only; ``inline``: they feed the SNN's next stage."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(sorted(int(s) for s in self.stages)))
        if len(set(self.stages)) != len(self.stages) or any(s < 1 for s in self.stages):
            raise ValueError(f"fusion stages must be distinct 1-based indices, got {self.stages}")
        if self.head_dim < 1 or self.ff_mult < 1 or self.norm_groups < 1:
            raise ValueError("fusion head_dim, ff_mult and norm_groups must be positive")
        if self.placement not in PLACEMENTS:
            raise ValueError(
                f"fusion placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}"
            )


class KeyValue(NamedTuple):
    """Keys and values of one cross-attention, ``(B, heads, tokens, head_dim)`` each."""

    key: torch.Tensor
    value: torch.Tensor


class ScaledDotProduct(nn.Module):
    """``softmax(q k^T / sqrt(d)) v``: its own module so energy accounting can see its matmuls."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head attention of ``query_dim`` tokens over ``context_dim`` tokens."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.core = ScaledDotProduct()
        self.to_out = nn.Linear(inner, query_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def keys_values(self, context: torch.Tensor) -> KeyValue:
        """Keys and values of ``context`` tokens ``(B, N, context_dim)``."""
        return KeyValue(self._split(self.to_k(context)), self._split(self.to_v(context)))

    def forward(self, x: torch.Tensor, kv: KeyValue | None = None) -> torch.Tensor:
        """Attend from ``x`` (``(B, N, query_dim)``) to ``kv``, or to ``x`` itself if ``None``."""
        if kv is None:
            kv = self.keys_values(x)
        out = self.core(self._split(self.to_q(x)), kv.key, kv.value)
        return self.to_out(out.transpose(-3, -2).flatten(-2))


class GEGLU(nn.Module):
    """Feed-forward ``W2 (a * gelu(g))`` with ``[a, g] = W1 x`` (Shazeer 2020)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class FusionBlock(nn.Module):
    """Fuse one stage: ``x + proj_out(transformer(proj_in(norm(x)), ANN tokens))``.

    ``channels`` is the SNN stage width, ``context_channels`` the ANN stage width; attention
    runs with ``max(1, channels // head_dim)`` heads of ``head_dim``.
    """

    def __init__(self, channels: int, context_channels: int, config: FusionConfig) -> None:
        super().__init__()
        heads = max(1, channels // config.head_dim)
        inner = heads * config.head_dim
        self.norm = nn.GroupNorm(math.gcd(config.norm_groups, channels), channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, kernel_size=1)
        self.norm1 = nn.LayerNorm(inner)
        self.self_attn = Attention(inner, inner, heads, config.head_dim)
        self.norm2 = nn.LayerNorm(inner)
        self.context_norm = nn.LayerNorm(context_channels)
        self.cross_attn = Attention(inner, context_channels, heads, config.head_dim)
        self.norm3 = nn.LayerNorm(inner)
        self.ff = GEGLU(inner, config.ff_mult)
        self.proj_out = nn.Conv2d(inner, channels, kernel_size=1)
        nn.init.zeros_(self.proj_out.weight)
        assert self.proj_out.bias is not None
        nn.init.zeros_(self.proj_out.bias)

    def context(self, ann_features: torch.Tensor) -> KeyValue:
        """Keys and values from one key frame's ANN stage map ``(B, C_ann, H, W)``."""
        tokens = ann_features.flatten(2).transpose(1, 2)
        return self.cross_attn.keys_values(self.context_norm(tokens))

    def forward(self, x: torch.Tensor, kv: KeyValue) -> torch.Tensor:
        """Fuse SNN maps ``x`` of shape ``(T, B, C, H, W)`` with one key frame's ``kv``: spike
        features (``late``) or a stage's output before the next stage's neurons (``inline``).

        Self-attention stays within each step; cross-attention treats the ``T`` steps as more
        queries of the same key frame, so the cached keys and values are never copied.
        """
        steps, batch, _, height, width = x.shape
        h = self.proj_in(self.norm(x.flatten(0, 1)))
        h = h.flatten(2).transpose(1, 2)  # (T*B, N, inner)
        h = h + self.self_attn(self.norm1(h))
        tokens = h.unflatten(0, (steps, batch)).transpose(0, 1).flatten(1, 2)  # (B, T*N, inner)
        tokens = tokens + self.cross_attn(self.norm2(tokens), kv)
        tokens = tokens + self.ff(self.norm3(tokens))
        h = tokens.unflatten(1, (steps, height * width)).transpose(0, 1).flatten(0, 1)
        h = h.transpose(1, 2).unflatten(2, (height, width))
        return x + self.proj_out(h).unflatten(0, (steps, batch))


__all__ = [
    "GEGLU",
    "PLACEMENTS",
    "Attention",
    "FusionBlock",
    "FusionConfig",
    "KeyValue",
    "Placement",
    "ScaledDotProduct",
]
