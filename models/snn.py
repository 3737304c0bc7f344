"""The SNN branch: a pre-activation spiking ResNet of Norse LIF-box cells with explicit state.

Shaped like ReSpike's spiking ResNet-18 (blocks ``LIF -> conv -> BN``, twice, plus a shortcut)
with widths sized for a CPU. Input per step is either 2 polarity channels of binned events or
signed residual frames (1 grey or 3 RGB channels). Every convolution after the stem sees only
spikes, so its work is accumulates (ACs), counted in :mod:`respike.models.energy`.

Stage ``i``'s *spike features* are the spikes of the LIF cell that reads stage ``i``'s output:
for stages 1-3 that is the first cell of the next stage, for the last stage a final cell. They
are what the fusion blocks and the head see.

Time runs along the first axis of a sequence (``(T, B, C, H, W)``, Norse's convention): the
convolutions and batch norms see all ``T * B`` frames at once, the LIF cells loop over ``T``.
Streaming is the ``T = 1`` case of the same code (:meth:`SpikingResNet.step`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from norse.torch.module.lif_box import LIFBoxCell
from torch import nn

from respike.models.ann import init_resnet_weights
from respike.models.motion import MotionDetectors, MotionState
from respike.models.neurons import LIFConfig, lif_step, make_lif_cell
from respike.models.quant import WEIGHT_BITS, check_bits


@dataclass(frozen=True)
class SNNConfig:
    """Shape of the spiking ResNet: channel width and block count per stage, stem stride, neuron.

    The defaults (16/32/64/128 channels, 2 blocks per stage as in ResNet-18, stride-2 stem) run a
    64x64 input at about 35 M synaptic operations per step before sparsity.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_stride: int = 2
    lif: LIFConfig = field(default_factory=LIFConfig)
    motion_shifts: tuple[int, ...] = ()
    """Shifts (input pixels) of the elementary motion detectors whose channels the stem sees
    beside the input (:mod:`respike.models.motion`); empty: none."""
    motion_delays: tuple[int, ...] = (1,)
    """Delays (steps) of the motion detectors: shift ``s`` at delay ``k`` is tuned to ``s / k``
    pixels per step."""
    head_grid: tuple[int, int] = (0, 0)
    """Rows and columns of a grid on which the motion detectors' channels, and the spikes of
    the ``grid_stages``, are averaged and handed on as more features after the stages' (where
    things move and where each stage fires, for a taught head); (0, 0): none."""
    grid_stages: tuple[int, ...] = ()
    """Stages (0-based) whose spikes are also averaged on ``head_grid``."""
    weight_bits: int | None = None
    """Integer width of the convolution weights (None: float32; see
    :mod:`respike.models.quant`, which rounds them)."""

    @property
    def feature_widths(self) -> tuple[int, ...]:
        """Channels of each feature :meth:`SpikingResNet.forward_sequence` returns: the stages',
        then (with a ``head_grid``) the detectors' and the ``grid_stages``' on the grid."""
        rows, cols = self.head_grid
        cells = rows * cols
        if not cells:
            return self.widths
        detectors = 4 * len(self.motion_shifts) * len(self.motion_delays) * cells
        grids = tuple(self.widths[s] * cells for s in self.grid_stages)
        return (*self.widths, *((detectors,) if detectors else ()), *grids)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "motion_shifts", tuple(int(s) for s in self.motion_shifts))
        if self.motion_shifts and min(self.motion_shifts) < 1:
            raise ValueError(f"SNN motion_shifts must be positive, got {self.motion_shifts}")
        object.__setattr__(self, "motion_delays", tuple(int(k) for k in self.motion_delays))
        if not self.motion_delays or min(self.motion_delays) < 1:
            raise ValueError(f"SNN motion_delays must be positive, got {self.motion_delays}")
        object.__setattr__(self, "head_grid", tuple(int(g) for g in self.head_grid))
        object.__setattr__(self, "grid_stages", tuple(int(s) for s in self.grid_stages))
        if len(self.head_grid) != 2 or min(self.head_grid) < 0:
            raise ValueError(f"SNN head_grid must be (rows, cols) >= 0, got {self.head_grid}")
        if any(self.head_grid) and not (
            min(self.head_grid) and (self.motion_shifts or self.grid_stages)
        ):
            raise ValueError(
                "an SNN head_grid needs both sides > 0 and motion detectors or grid_stages"
            )
        if self.grid_stages and not any(self.head_grid):
            raise ValueError("SNN grid_stages need a head_grid")
        if isinstance(self.lif, dict):
            object.__setattr__(self, "lif", LIFConfig(**self.lif))
        if not self.widths or len(self.widths) != len(self.blocks):
            raise ValueError(
                f"SNN widths {self.widths} and blocks {self.blocks} need one entry per stage"
            )
        if min(self.widths) < 1 or min(self.blocks) < 1:
            raise ValueError("SNN widths and block counts must be positive")
        if any(not 0 <= s < len(self.widths) for s in self.grid_stages):
            raise ValueError(
                f"SNN grid_stages {self.grid_stages} must name stages 0..{len(self.widths) - 1}"
            )
        check_bits("weight_bits", self.weight_bits, WEIGHT_BITS)
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"SNN stem_stride must be 1, 2 or 4, got {self.stem_stride}")


StageFusion = Callable[[int, torch.Tensor], torch.Tensor]
"""``fuse(stage, output)``: a stage's output ``(T, B, C, h, w)`` as the next stage should see it."""


class SNNState(NamedTuple):
    """Membrane state of every LIF cell, in :meth:`SpikingResNet.cells` order, and the motion
    detectors' memory (``None`` without them)."""

    cells: tuple[LIFBoxFeedForwardState, ...]
    motion: MotionState | None = None


def over_time(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame ``module`` to a ``(T, B, ...)`` sequence as one ``T * B`` batch."""
    out = module(x.flatten(0, 1))
    return out.unflatten(0, x.shape[:2])


def lif_sequence(
    cell: LIFBoxCell, x: torch.Tensor, state: LIFBoxFeedForwardState | None
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """Run ``cell`` over the time axis of ``x`` (``(T, ...)``), carrying its state."""
    if x.shape[0] == 1:
        z, state = lif_step(cell, x[0], state)
        return z.unsqueeze(0), state
    spikes = []
    for x_t in x.unbind(0):
        z, state = lif_step(cell, x_t, state)
        spikes.append(z)
    assert state is not None
    return torch.stack(spikes), state


class ConvBN(nn.Module):
    """A bias-free convolution followed by batch norm (``padding = kernel // 2``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self._folded_from: tuple[tuple[torch.Tensor, int, int], ...] = ()
        self._folded_weights: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.training
            or torch.is_grad_enabled()
            or self.conv._forward_hooks  # energy counting sees the convolution
            or torch.compiler.is_compiling()  # the compiler folds and fuses on its own
        ):
            return self.bn(self.conv(x))
        weight, bias = self.folded()
        return F.conv2d(x, weight, bias, self.conv.stride, self.conv.padding)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution with the batch norm's running statistics folded in: one op instead
        of two for inference. Cached until a weight or statistic changes: an optimiser step
        or ``load_state_dict`` makes a new version, ``.to()`` new memory, and loading with
        ``assign=True`` new tensors (a change made through ``.data`` makes none of these, so
        it is not seen)."""
        for tensor, memory, version in self._folded_from:  # the fast check, every step
            if tensor.data_ptr() != memory or tensor._version != version:
                break
        else:
            if self._folded_from:
                return self._folded_weights
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        self._folded_weights = (weight.detach(), shift.detach())
        sources = (self.conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        self._folded_from = tuple((t, t.data_ptr(), t._version) for t in sources if t is not None)
        return self._folded_weights

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._folded_from = ()  # ``assign=True`` puts new tensors in place of the old
        super()._load_from_state_dict(*args, **kwargs)


class PreActBlock(nn.Module):
    """``r + BN(conv(LIF(BN(conv(LIF(r))))))``; a shortcut where shapes change acts on spikes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, lif: LIFConfig) -> None:
        super().__init__()
        self.lif1 = make_lif_cell(lif)
        self.conv1 = ConvBN(in_ch, out_ch, 3, stride)
        self.lif2 = make_lif_cell(lif)
        self.conv2 = ConvBN(out_ch, out_ch, 3, 1)
        self.shortcut = ConvBN(in_ch, out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None

    def forward(
        self,
        r: torch.Tensor,
        state1: LIFBoxFeedForwardState | None,
        state2: LIFBoxFeedForwardState | None,
    ) -> tuple[torch.Tensor, torch.Tensor, LIFBoxFeedForwardState, LIFBoxFeedForwardState]:
        """Run over a ``(T, B, C, H, W)`` sequence: output, the input's spikes, both cell states."""
        s1, state1 = lif_sequence(self.lif1, r, state1)
        h = over_time(self.conv1, s1)
        s2, state2 = lif_sequence(self.lif2, h, state2)
        h = over_time(self.conv2, s2)
        skip = r if self.shortcut is None else over_time(self.shortcut, s1)
        return h + skip, s1, state1, state2


class SpikingResNet(nn.Module):
    """Pre-activation spiking ResNet returning one spike map per stage, state explicit.

    Example::

        snn = SpikingResNet(SNNConfig(), in_channels=2)
        state = None
        for frame in event_frames:            # (B, 2, 64, 64) each
            features, state = snn.step(frame, state)
        features[-1].shape                    # (B, 128, 4, 4) spikes of the last stage
    """

    def __init__(self, config: SNNConfig, in_channels: int) -> None:
        super().__init__()
        self.config = config
        self.in_channels = in_channels
        widths = config.widths
        self.motion = (
            MotionDetectors(config.motion_shifts, config.motion_delays)
            if config.motion_shifts
            else None
        )
        stem_in = in_channels + (self.motion.channels if self.motion is not None else 0)
        self.stem = ConvBN(stem_in, widths[0], 3, config.stem_stride)
        stages = []
        in_ch = widths[0]
        for index, (width, count) in enumerate(zip(widths, config.blocks, strict=True)):
            blocks = []
            for b in range(count):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(PreActBlock(in_ch, width, stride, config.lif))
                in_ch = width
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.lif_out = make_lif_cell(config.lif)
        init_resnet_weights(self)
        for conv in self.modules():  # the width the energy count reads each weight at
            if isinstance(conv, nn.Conv2d):
                conv.__dict__["weight_bits"] = config.weight_bits

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each stage's spike features."""
        return self.config.widths

    def blocks(self) -> list[list[PreActBlock]]:
        """The blocks of each stage."""
        return [[cast(PreActBlock, b) for b in cast(nn.ModuleList, s)] for s in self.stages]

    def cells(self) -> list[LIFBoxCell]:
        """Every LIF cell in state order: ``lif1, lif2`` of each block, then the final cell."""
        out: list[LIFBoxCell] = []
        for stage in self.blocks():
            for block in stage:
                out.extend([block.lif1, block.lif2])
        out.append(self.lif_out)
        return out

    def spike_driven_convs(self) -> list[nn.Conv2d]:
        """Convolutions whose input is spikes (all but the stem): their work is ACs, not MACs."""
        convs: list[nn.Conv2d] = []
        for stage in self.blocks():
            for block in stage:
                convs.extend([block.conv1.conv, block.conv2.conv])
                if block.shortcut is not None:
                    convs.append(block.shortcut.conv)
        return convs

    def forward_sequence(
        self,
        x: torch.Tensor,
        state: SNNState | None = None,
        fuse: StageFusion | None = None,
    ) -> tuple[tuple[torch.Tensor, ...], SNNState]:
        """Run ``x`` of shape ``(T, B, C, H, W)``; returns per-stage spikes ``(T, B, C_i, h, w)``.

        ``state=None`` starts every membrane at zero; the returned state continues the run.
        ``fuse(stage, output)`` (1-based stage), when given, replaces each stage's output before
        the next stage's neurons read it (in-line fusion).
        """
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"SNN input has shape {tuple(x.shape)}; expected (T, B, {self.in_channels}, H, W)"
            )
        n_cells = len(self.cells())
        if state is not None and len(state.cells) != n_cells:
            raise ValueError(f"SNN state has {len(state.cells)} cells; this network has {n_cells}")
        old: Sequence[LIFBoxFeedForwardState | None] = (
            state.cells if state is not None else [None] * n_cells
        )
        new: list[LIFBoxFeedForwardState] = []
        features: list[torch.Tensor] = []
        motion = None
        if self.motion is not None:
            channels, motion = self.motion(x, state.motion if state is not None else None)
            x = torch.cat([x, channels], dim=2)
        r = over_time(self.stem, x)
        for index, stage in enumerate(self.blocks()):
            for b, block in enumerate(stage):
                i = len(new)
                r, s1, st1, st2 = block(r, old[i], old[i + 1])
                new.extend([st1, st2])
                if b == 0 and index > 0:
                    features.append(s1)
            if fuse is not None:
                r = fuse(index + 1, r)
        spikes, st = lif_sequence(self.lif_out, r, old[len(new)])
        new.append(st)
        features.append(spikes)
        if any(self.config.head_grid):
            gridded = [channels] if self.motion is not None else []
            gridded += [features[s] for s in self.config.grid_stages]
            features.extend(self._on_grid(f) for f in gridded)
        return tuple(features), SNNState(tuple(new), motion)

    def _on_grid(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps (T, B, C, H, W)`` averaged on the head grid, as ``(T, B, C*cells, 1, 1)``."""
        steps, batch = maps.shape[:2]
        grid = F.adaptive_avg_pool2d(maps.flatten(0, 1), self.config.head_grid)
        return grid.reshape(steps, batch, -1, 1, 1)

    def step(
        self, x: torch.Tensor, state: SNNState | None = None
    ) -> tuple[tuple[torch.Tensor, ...], SNNState]:
        """One streaming step: ``x`` is ``(B, C, H, W)``; returns per-stage spikes and new state."""
        features, state = self.forward_sequence(x.unsqueeze(0), state)
        return tuple(f.squeeze(0) for f in features), state


__all__ = [
    "ConvBN",
    "PreActBlock",
    "SNNConfig",
    "SNNState",
    "SpikingResNet",
    "StageFusion",
    "lif_sequence",
    "over_time",
]
