"""Energy accounting: MACs counted from the layers that run, SNN accumulates measured from spikes.

Convention of ReSpike's field (45 nm CMOS figures): a multiply-accumulate costs 4.6 pJ, an
accumulate 0.9 pJ. A layer whose input is real-valued does MACs: ``output elements x
(in_channels / groups) x kernel size`` for convolutions, ``output elements x in_features`` for
linear layers and ``2 x queries x keys x head_dim`` (``q k^T`` and ``attention v``) per head for
attention. A convolution fed with spikes (every SNN convolution but the stem) does one
accumulate per spike and per synapse it reaches: ``sum over nonzero inputs of fan-out``, the
fan-out at a pixel being ``out_channels / groups`` times the number of output positions whose
window covers it (fewer at the borders and with stride) — measured on the actual spikes.
Normalisation, activation, pooling and softmax are not counted (nor by the field).

Precision (:mod:`respike.models.quant`). An accumulate with integer weights is a 32-bit
integer add, 0.1 pJ (Horowitz, ISSCC 2014, 45 nm), against 0.9 pJ in float. Memory traffic is
counted apart from the arithmetic, in bits: one weight read per MAC and per accumulate at the
weight's width (an upper bound: no reuse from registers), and each LIF membrane read and
written once per step at the membrane's width; a bit costs 10/64 pJ (a 64-bit read of an 8 KB
SRAM, 10 pJ, same source). ``energy_pj`` stays the arithmetic (the field's convention);
``memory_pj`` is the traffic.

Counts are hooks on the modules (:class:`OpCounter`), so they follow whatever the model runs.
The hooks are plain Python meant for eager execution, so :func:`measure_energy` steps the model
eagerly even after ``enable_compile``.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from norse.torch.module.lif_box import LIFBoxCell
from torch import nn

from respike.models.fusion import ScaledDotProduct
from respike.models.hybrid import Clip, HybridReSpike
from respike.models.motion import MotionDetectors

ENERGY_PER_MAC_PJ = 4.6
ENERGY_PER_AC_PJ = 0.9
ENERGY_PER_INT_AC_PJ = 0.1
ENERGY_PER_BIT_PJ = 10.0 / 64.0
FLOAT_BITS = 32

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def conv_macs(module: nn.Conv1d | nn.Conv2d | nn.Conv3d, output: torch.Tensor) -> int:
    """MACs of a dense convolution that produced ``output``."""
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    """MACs of a linear layer that produced ``output``."""
    return output.numel() * module.in_features


def attention_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    """MACs of ``softmax(q k^T) v`` for ``(..., queries, d)`` and ``(..., keys, d)`` tensors."""
    return math.prod(q.shape[:-1]) * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def fan_out_map(module: nn.Conv2d, height: int, width: int) -> torch.Tensor:
    """Synapses each input pixel of one channel drives: ``(height, width)``, exact at borders."""
    kernel = module.kernel_size
    with torch.enable_grad():
        probe = torch.ones(1, 1, height, width, dtype=torch.float64, requires_grad=True)
        ones = torch.ones(1, 1, kernel[0], kernel[1], dtype=torch.float64)
        out = F.conv2d(
            probe, ones, stride=module.stride, padding=module.padding, dilation=module.dilation
        )
        (covered,) = torch.autograd.grad(out.sum(), probe)
    return covered[0, 0] * (module.out_channels // module.groups)


def spike_acs(module: nn.Conv2d, x: torch.Tensor, fan_out: torch.Tensor | None = None) -> int:
    """Accumulates of convolution ``module`` on spike input ``x`` ``(N, C, H, W)``."""
    if fan_out is None:
        fan_out = fan_out_map(module, x.shape[-2], x.shape[-1])
    active = (x != 0).sum(dim=(0, 1)).to(torch.float64)
    return round(float((active * fan_out.to(active.device)).sum()))


@dataclass(frozen=True)
class OpCounts:
    """MACs, ACs (float weights), integer-weight ACs and memory bits moved, per category
    (e.g. ``snn``, ``ann``, ``fusion``, ``head``)."""

    macs: Mapping[str, float] = field(default_factory=dict)
    acs: Mapping[str, float] = field(default_factory=dict)
    int_acs: Mapping[str, float] = field(default_factory=dict)
    memory_bits: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_macs(self) -> float:
        """MACs of every category."""
        return float(sum(self.macs.values()))

    @property
    def total_acs(self) -> float:
        """ACs of every category, float and integer weights."""
        return float(sum(self.acs.values()) + sum(self.int_acs.values()))

    def energy_pj(self) -> float:
        """The arithmetic: ``4.6 pJ x MACs + 0.9 pJ x float ACs + 0.1 pJ x integer ACs``."""
        return (
            ENERGY_PER_MAC_PJ * self.total_macs
            + ENERGY_PER_AC_PJ * sum(self.acs.values())
            + ENERGY_PER_INT_AC_PJ * sum(self.int_acs.values())
        )

    def memory_pj(self) -> float:
        """The memory traffic: ``10/64 pJ`` per bit moved."""
        return ENERGY_PER_BIT_PJ * float(sum(self.memory_bits.values()))

    def _fields(self) -> tuple[Mapping[str, float], ...]:
        return (self.macs, self.acs, self.int_acs, self.memory_bits)

    def scaled(self, factor: float) -> OpCounts:
        """Every count times ``factor`` (per sample, per step, amortised)."""
        return OpCounts(*({k: v * factor for k, v in f.items()} for f in self._fields()))

    def __add__(self, other: OpCounts) -> OpCounts:
        merged = []
        for mine, theirs in zip(self._fields(), other._fields(), strict=True):
            total = dict(mine)
            for k, v in theirs.items():
                total[k] = total.get(k, 0.0) + v
            merged.append(total)
        return OpCounts(*merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and energies."""
        return {
            "macs": dict(self.macs),
            "acs": dict(self.acs),
            "int_acs": dict(self.int_acs),
            "memory_bits": dict(self.memory_bits),
            "energy_pj": self.energy_pj(),
            "memory_pj": self.memory_pj(),
        }


def _top_level(name: str) -> str:
    return name.split(".", 1)[0] if name else "model"


class OpCounter:
    """Count MACs and ACs of ``model``'s layers while it runs, via forward hooks.

    Convolutions in ``spike_driven`` count ACs on their actual input; every other convolution,
    linear layer, :class:`~respike.models.fusion.ScaledDotProduct` and
    :class:`~respike.models.motion.MotionDetectors` count MACs. ``category``
    maps a module's qualified name to the bucket it counts into (default: the top-level child).

    Example::

        with OpCounter(net) as counter:
            net(x)
        counter.counts().macs
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        spike_driven: Iterable[nn.Module] = (),
        category: Callable[[str], str] = _top_level,
    ) -> None:
        self.model = model
        self.spike_driven = {id(m) for m in spike_driven}
        self.category = category
        self._macs: defaultdict[str, int] = defaultdict(int)
        self._acs: defaultdict[str, int] = defaultdict(int)
        self._int_acs: defaultdict[str, int] = defaultdict(int)
        self._bits: defaultdict[str, int] = defaultdict(int)
        self._fan_out: dict[tuple[int, int, int], torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> OpCounter:
        for name, module in self.model.named_modules():
            if isinstance(
                module, (*_CONVS, nn.Linear, ScaledDotProduct, MotionDetectors, LIFBoxCell)
            ):
                self._handles.append(module.register_forward_hook(self._hook(self.category(name))))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, bucket: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            weight_bits = getattr(module, "weight_bits", None)
            if isinstance(module, LIFBoxCell):  # the membrane, read and written
                bits = getattr(module, "membrane_bits", None) or FLOAT_BITS
                self._bits[bucket] += 2 * output[0].numel() * bits
            elif isinstance(module, nn.Conv2d) and id(module) in self.spike_driven:
                x = inputs[0]
                key = (id(module), x.shape[-2], x.shape[-1])
                if key not in self._fan_out:
                    self._fan_out[key] = fan_out_map(module, x.shape[-2], x.shape[-1])
                acs = spike_acs(module, x, self._fan_out[key])
                (self._acs if weight_bits is None else self._int_acs)[bucket] += acs
                self._bits[bucket] += acs * (weight_bits or FLOAT_BITS)
            elif isinstance(module, _CONVS):
                macs = conv_macs(module, output)
                self._macs[bucket] += macs
                self._bits[bucket] += macs * (weight_bits or FLOAT_BITS)
            elif isinstance(module, nn.Linear):
                macs = linear_macs(module, output)
                self._macs[bucket] += macs
                self._bits[bucket] += macs * FLOAT_BITS
            elif isinstance(module, ScaledDotProduct):
                self._macs[bucket] += attention_macs(*inputs)
            elif isinstance(module, MotionDetectors):
                x = inputs[0]
                pixels = x.shape[0] * x.shape[1] * x.shape[-2] * x.shape[-1]
                self._macs[bucket] += module.multiplies_per_pixel() * pixels

        return hook

    def counts(self) -> OpCounts:
        """Everything counted since the last :meth:`reset`."""
        return OpCounts(
            *(
                {k: float(v) for k, v in counts.items()}
                for counts in (self._macs, self._acs, self._int_acs, self._bits)
            )
        )

    def reset(self) -> None:
        """Forget the counts (the hooks stay)."""
        for counts in (self._macs, self._acs, self._int_acs, self._bits):
            counts.clear()


@dataclass(frozen=True)
class EnergyReport:
    """Per-sample operation counts of a hybrid model, measured on a clip.

    ``step``: one streaming SNN step with its fusion and head; ``keyframe``: one key-frame ANN
    pass with its key/value projections. A prediction comes every step, its key frame shared
    by ``keyframe_interval`` steps: ``prediction = step + keyframe / K``.
    """

    step: OpCounts
    keyframe: OpCounts
    keyframe_interval: int
    steps_measured: int

    @property
    def prediction(self) -> OpCounts:
        """Counts of one per-step prediction with the key frame amortised over its ``K`` steps."""
        return self.step + self.keyframe.scaled(1.0 / self.keyframe_interval)

    def clip(self, steps: int) -> OpCounts:
        """Counts of a whole clip of ``steps`` steps (ReSpike's per-clip prediction)."""
        return self.prediction.scaled(float(steps))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, energies in pJ."""
        return {
            "step": self.step.to_dict(),
            "keyframe": self.keyframe.to_dict(),
            "prediction": self.prediction.to_dict(),
            "keyframe_interval": self.keyframe_interval,
            "steps_measured": self.steps_measured,
            "pj_per_mac": ENERGY_PER_MAC_PJ,
            "pj_per_ac": ENERGY_PER_AC_PJ,
            "pj_per_int_ac": ENERGY_PER_INT_AC_PJ,
            "pj_per_memory_bit": ENERGY_PER_BIT_PJ,
        }


class EnergyMeter:
    """Energy (pJ) of a model's calls, by kind: MACs and spike ACs counted on every
    ``every``-th call of a kind and reused in between (the counting hooks cost about a tenth of
    a step). Counting runs eagerly, so a compiled model keeps its compiled graph; ``every = 0``
    never counts and every energy reads 0."""

    def __init__(self, model: HybridReSpike, every: int, *, spike_driven: bool = True) -> None:
        convs = model.snn.spike_driven_convs() if spike_driven and model.snn is not None else []
        self._model = model
        self._counter = OpCounter(model, spike_driven=convs) if every else None
        self._every = every
        self._calls: Counter[str] = Counter()
        self.last: defaultdict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def measure(self, kind: str, per: int = 1) -> Iterator[None]:
        """Count the enclosed call as ``kind`` when due; then ``last[kind]`` is its energy / ``per``."""
        due = self._counter is not None and self._calls[kind] % self._every == 0
        self._calls[kind] += 1
        if not due or self._counter is None:
            yield
            return
        self._counter.reset()
        with self._model.eager(), self._counter:
            yield
        self.last[kind] = float(self._counter.counts().energy_pj()) / per


@torch.no_grad()
def measure_energy(model: HybridReSpike, clip: Clip) -> EnergyReport:
    """Stream ``clip`` through ``model`` eagerly (train or eval mode as it is) and count its work.

    Spikes are counted as they happen, so the SNN's ACs depend on the data: measure on
    representative clips.
    """
    spike_driven = model.snn.spike_driven_convs() if model.snn is not None else []
    keyframes, inputs = clip
    k = model.keyframe_interval
    batch = inputs.shape[0]
    step_total = OpCounts()
    keyframe_total = OpCounts()
    n_steps = inputs.shape[1]
    with model.eager(), OpCounter(model, spike_driven=spike_driven) as counter:
        state = None
        for t in range(n_steps):
            if t % k == 0:
                counter.reset()
                state = model.set_keyframe(keyframes[:, t // k], state)
                keyframe_total = keyframe_total + counter.counts()
            assert state is not None
            counter.reset()
            _, state = model.step(inputs[:, t], state)
            step_total = step_total + counter.counts()
    n_keyframes = -(-n_steps // k)
    return EnergyReport(
        step=step_total.scaled(1.0 / (n_steps * batch)),
        keyframe=keyframe_total.scaled(1.0 / (n_keyframes * batch)),
        keyframe_interval=k,
        steps_measured=n_steps,
    )


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> OpCounts:
    """MACs of one ``model(*inputs)`` call, per sample of the batch."""
    with OpCounter(model) as counter, torch.no_grad():
        model(*inputs)
    return counter.counts().scaled(1.0 / inputs[0].shape[0])


def r3d18_reference(
    *, num_classes: int = 101, frames: int = 16, size: tuple[int, int] = (112, 112)
) -> OpCounts:
    """MACs of an ANN-only 3D CNN (torchvision ``r3d_18``, ``weights=None``) on one clip.

    The comparison ReSpike makes: a video CNN that sees every frame densely. Shapes are
    propagated on the ``meta`` device, so nothing is computed or allocated.
    """
    from torchvision.models.video import r3d_18

    with torch.device("meta"):
        model = r3d_18(weights=None, num_classes=num_classes)
        clip = torch.empty(1, 3, frames, *size)
    with OpCounter(model, category=lambda name: "r3d_18") as counter, torch.no_grad():
        model(clip)
    return counter.counts()


__all__ = [
    "ENERGY_PER_AC_PJ",
    "ENERGY_PER_BIT_PJ",
    "ENERGY_PER_INT_AC_PJ",
    "ENERGY_PER_MAC_PJ",
    "EnergyMeter",
    "EnergyReport",
    "OpCounter",
    "OpCounts",
    "attention_macs",
    "conv_macs",
    "count_macs",
    "fan_out_map",
    "linear_macs",
    "measure_energy",
    "r3d18_reference",
]
