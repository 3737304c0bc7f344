"""The hybrid ReSpike model: SNN branch, key-frame ANN branch, per-stage fusion and head in one.

Clip layout (what :meth:`HybridReSpike.forward` takes and a data loader yields):

- ``keyframes``: ``(B, S, 3, Hk, Wk)`` RGB key frames, ImageNet-normalised;
- ``steps``: ``(B, T, C, h, w)`` SNN inputs, ``T = S * K`` with ``K = keyframe_interval``;
  step ``t`` belongs to key frame ``t // K`` (ReSpike: key frame = the segment's first frame,
  residual step ``t`` = frame ``t`` minus that key frame).

Per-step logits: after step ``t`` the head sees the mean over the steps of the current segment
so far of the (fused) SNN features, pooled per stage and concatenated, next to the pooled ANN
stage-4 features of the segment's key frame. The last step of a segment gives ReSpike's segment
logits; the clip logits are their mean over the ``S`` segments.

Streaming runs the same code one step at a time with explicit state::

    state = model.set_keyframe(frame)              # new segment: ANN pass, keys/values cached
    logits, state = model.step(x, state)           # K times; SNN membranes carry over

:meth:`HybridReSpike.forward` is exactly that loop with ``K`` steps per call, so both give the
same logits. Modes ``hybrid``, ``snn`` and ``ann`` are this one class with branches left out:
``snn`` has no ANN and no fusion blocks, ``ann`` no SNN.

Fusion is ``late`` or ``inline`` (:attr:`FusionConfig.placement`). Late fusion reads the SNN's
spike features and never feeds the SNN, so the SNN, the ANN and the fusion can run on different
hosts as separate pipeline nodes, and the SNN can run across segments in one pass. In-line
fusion (ReSpike's code) puts each fused map in place of the SNN stage's output, so the SNN's
later stages spike on what the key frame shows: a step needs its key frame's context first.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple, cast

import torch
from torch import nn

from respike.events.inputs import InputSpec, KeyResidual, SNNInput
from respike.models.ann import ANNConfig, ResNetFeatures
from respike.models.fusion import FusionBlock, FusionConfig, KeyValue
from respike.models.open_set import OpenSetConfig, OpenSetRule, output_names
from respike.models.snn import SNNConfig, SNNState, SpikingResNet

Mode = Literal["hybrid", "snn", "ann"]
MODES: tuple[Mode, ...] = ("hybrid", "snn", "ann")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`HybridReSpike`; checkpoints store ``to_dict()``."""

    num_classes: int
    mode: Mode = "hybrid"
    input_spec: InputSpec = field(default_factory=InputSpec)
    snn: SNNConfig = field(default_factory=SNNConfig)
    ann: ANNConfig = field(default_factory=ANNConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    open_set: OpenSetConfig | None = None
    """The ``no action`` rule (:mod:`respike.models.open_set`), fitted after training."""
    head_window: int = 0
    """What the head sees of the SNN: 0, the mean of its features since the key frame
    (ReSpike); N, their mean and standard deviation over the last N steps, across key frames
    (taught models: motion that lasts longer than a segment)."""
    head_fused: bool = True
    """The head reads the SNN's features after the fusion blocks (ReSpike); False: the SNN's
    own spikes, so what a taught head sees of motion does not depend on the key frame's scene
    (the key frame reaches it only through its pooled features, when used)."""

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        bad = [s for s in self.fusion.stages if s > min(len(self.snn.widths), len(self.ann.widths))]
        if bad:
            raise ValueError(f"fusion stages {bad} do not exist in the SNN/ANN branches")
        if self.snn.motion_shifts and self.input_spec.snn_input != "residual":
            raise ValueError(
                "SNN motion detectors need residual input (events are changes already), "
                f"got snn_input={self.input_spec.snn_input!r}"
            )
        if self.fusion.placement == "inline" and not self.head_fused:
            raise ValueError("in-line fusion feeds the SNN, so the head cannot read it unfused")
        if self.head_window < 0 or (self.head_window and self.mode == "ann"):
            raise ValueError(f"head_window {self.head_window} needs an SNN and must be ≥ 0")
        rule = self.open_set
        if rule is not None:
            dims = self.stats_dims if rule.reads == "stats" else self.head_dims
            if (rule.classes, rule.dims) != (self.num_classes, dims):
                raise ValueError(
                    f"the open-set rule is for {rule.classes} classes and {rule.dims} "
                    f"{rule.reads}; the model has {self.num_classes} and {dims}"
                )

    @property
    def head_dims(self) -> int:
        """Inputs of the head per step (:attr:`ClipOutput.features`): the SNN's features (their
        mean since the key frame, or mean and spread over ``head_window`` steps) and the key
        frame's pooled ANN features."""
        snn = sum(self.snn.feature_widths) * (2 if self.head_window else 1)
        snn = snn if self.mode != "ann" else 0
        return snn + (self.ann.widths[-1] if self.mode != "snn" else 0)

    @property
    def stats_dims(self) -> int:
        """Statistics per step (:attr:`ClipOutput.stats`): the ANN's per-stage channel means
        and standard deviations, the SNN's per-stage spike rates."""
        ann = 2 * sum(self.ann.widths) if self.mode != "snn" else 0
        return ann + (sum(self.snn.feature_widths) if self.mode != "ann" else 0)

    @property
    def num_outputs(self) -> int:
        """Outputs per step: the classes, plus ``no action`` with an open-set rule."""
        return self.num_classes + (self.open_set is not None)

    def output_names(self, class_names: Sequence[str]) -> tuple[str, ...]:
        """The names of the outputs, given the class names."""
        return output_names(class_names, self.open_set)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, tuples, strings and numbers (loadable with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output, validating every field."""
        return cls(
            num_classes=int(data["num_classes"]),
            mode=data["mode"],
            input_spec=InputSpec(**data["input_spec"]),
            snn=SNNConfig(**_renamed(data["snn"], motion_grid="head_grid")),
            ann=ANNConfig(**data["ann"]),
            fusion=FusionConfig(**data["fusion"]),
            open_set=OpenSetConfig(**data["open_set"]) if data.get("open_set") else None,
            head_window=int(data.get("head_window", 0)),
            head_fused=bool(data.get("head_fused", True)),
        )


def _renamed(fields: Mapping[str, Any], **old_to_new: str) -> dict[str, Any]:
    """``fields`` with the keys earlier versions wrote under other names renamed."""
    return {old_to_new.get(key, key): value for key, value in fields.items()}


class Clip(NamedTuple):
    """A training clip: ``keyframes (B, S, 3, Hk, Wk)`` and ``steps (B, S*K, C, h, w)``."""

    keyframes: torch.Tensor
    steps: torch.Tensor


class KeyframeContext(NamedTuple):
    """What one key frame contributes until the next: fusion keys/values, pooled stage 4, and
    its per-stage channel means and standard deviations (for the open-set rule)."""

    kv: tuple[KeyValue, ...]
    pooled: torch.Tensor | None
    stats: torch.Tensor | None = None


class HeadState(NamedTuple):
    """Running sum of the pooled SNN features since the key frame, and how many steps it holds;
    with a ``head_window``, the last ``window - 1`` steps' features ``(W, B, D)`` instead."""

    feature_sum: torch.Tensor
    steps: torch.Tensor
    history: torch.Tensor | None = None


class ModelState(NamedTuple):
    """Streaming state: SNN membranes, current key-frame context, segment average of features."""

    snn: SNNState | None
    context: KeyframeContext | None
    head: HeadState | None


class ClipOutput(NamedTuple):
    """``step_logits (B, T, outputs)``, clip ``logits (B, outputs)``, the state after the clip,
    each step's statistics ``stats (B, T, stats_dims)`` (what an open-set rule reads) and
    ``features (B, T, head inputs)`` (what the head reads: a new head is fitted on them).

    With an open-set rule the logits are log-probabilities of the classes and ``no action``.
    """

    step_logits: torch.Tensor
    logits: torch.Tensor
    state: ModelState
    stats: torch.Tensor
    features: torch.Tensor


class Fused(NamedTuple):
    """What :meth:`HybridReSpike.fuse_with_stats` gives for ``T`` steps (time-major)."""

    logits: torch.Tensor
    head: HeadState | None
    stats: torch.Tensor | None
    features: torch.Tensor


StepFn = Callable[[torch.Tensor, ModelState], tuple[torch.Tensor, ModelState]]


class HybridReSpike(nn.Module):
    """ReSpike's hybrid SNN/ANN action recogniser, trainable on clips and runnable as a stream.

    Build it through :func:`respike.models.get_model` or from a :class:`ModelConfig`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        spec = config.input_spec
        self.snn = (
            SpikingResNet(config.snn, in_channels=spec.snn_channels)
            if config.mode != "ann"
            else None
        )
        self.ann = ResNetFeatures(config.ann) if config.mode != "snn" else None
        self.fusion = nn.ModuleDict()
        if config.mode == "hybrid":
            for stage in config.fusion.stages:
                self.fusion[str(stage)] = FusionBlock(
                    config.snn.widths[stage - 1], config.ann.widths[stage - 1], config.fusion
                )
        self.head = nn.Linear(config.head_dims, config.num_classes)
        self.open_set = OpenSetRule(config.open_set) if config.open_set is not None else None
        self._step_fn: StepFn = self._steps_impl

    @property
    def mode(self) -> Mode:
        """``hybrid``, ``snn`` or ``ann``."""
        return self.config.mode

    @property
    def inline(self) -> bool:
        """Whether fusion feeds the SNN (``inline``), so its steps need the key frame's context."""
        return self.config.fusion.placement == "inline" and bool(self.fusion)

    @property
    def keyframe_interval(self) -> int:
        """``K``: SNN steps per key frame."""
        return self.config.input_spec.keyframe_interval

    def rebuilt(self, config: ModelConfig, *, fresh: Sequence[str] = ()) -> HybridReSpike:
        """A new model of ``config`` (eval mode) with this one's weights, except the parts named
        by the ``fresh`` prefixes (e.g. ``"head."``, ``"open_set."``), which start anew; this
        model is left as it was."""
        result = HybridReSpike(config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(tuple(fresh))}
        missing, unexpected = result.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(tuple(fresh)) for k in missing):
            raise ValueError(f"{config} does not fit this model's weights: {missing or unexpected}")
        return result.eval()

    def enable_compile(self, enabled: bool = True, **compile_kwargs: Any) -> None:
        """Run :meth:`step`/:meth:`steps` through ``torch.compile`` (off by default).

        The first calls cost seconds of compilation (one graph per input shape and per state
        layout: fresh, mid-segment); training through :meth:`forward` is unaffected.
        """
        if enabled:
            compile_kwargs.setdefault("dynamic", False)
            self._step_fn = cast(StepFn, torch.compile(self._steps_impl, **compile_kwargs))
        else:
            self._step_fn = self._steps_impl

    def use_steps(self, step_fn: StepFn | None) -> None:
        """Run :meth:`step`/:meth:`steps` through ``step_fn`` (time-major ``x``, as
        ``_steps_impl`` takes it), e.g. a :class:`~respike.models.compiled.CompiledStep`;
        ``None`` goes back to the eager path. Training through :meth:`forward` is unaffected."""
        self._step_fn = step_fn if step_fn is not None else self._steps_impl

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Inside the block :meth:`step` runs eagerly (module hooks fire); a compiled step stays."""
        saved = self._step_fn
        self._step_fn = self._steps_impl
        try:
            yield
        finally:
            self._step_fn = saved

    def encode_keyframe(self, frames: torch.Tensor | None) -> KeyframeContext:
        """ANN pass over key frames ``(B, 3, Hk, Wk)``: cached fusion keys/values, pooled stage 4.

        In ``snn`` mode there is no ANN; ``frames`` may be ``None`` and the context is empty.
        """
        if self.ann is None:
            return KeyframeContext((), None, None)
        if frames is None or frames.dim() != 4 or frames.shape[1] != 3:
            shape = None if frames is None else tuple(frames.shape)
            raise ValueError(f"key frames have shape {shape}; expected (B, 3, H, W)")
        return self.context_from_features(self.ann(frames))

    def context_from_features(self, ann_features: Sequence[torch.Tensor]) -> KeyframeContext:
        """Key-frame context from the ANN's 4 stage maps (as a split ``keyframe`` node sends)."""
        kv = tuple(
            cast(FusionBlock, block).context(ann_features[int(stage) - 1])
            for stage, block in self.fusion.items()
            if self.config.head_fused
        )
        stats = torch.cat(
            [
                torch.cat([f.mean(dim=(-2, -1)), f.std(dim=(-2, -1), correction=0)], -1)
                for f in ann_features
            ],
            -1,
        )
        return KeyframeContext(kv, ann_features[-1].mean(dim=(-2, -1)), stats)

    def set_keyframe(
        self, frame: torch.Tensor | None, state: ModelState | None = None
    ) -> ModelState:
        """Start a segment at key frame ``frame`` (``(B, 3, Hk, Wk)``; ``None`` in ``snn`` mode).

        SNN membranes carry over; the segment average of SNN features restarts.
        """
        return self._segment(state, self.encode_keyframe(frame))

    def _segment(self, state: ModelState | None, context: KeyframeContext) -> ModelState:
        """``state`` at the start of a segment on ``context``: membranes carried over."""
        snn_state = state.snn if state is not None else None
        head = self._segment_start(state.head if state is not None else None)
        return ModelState(snn=snn_state, context=context, head=head)

    def step(self, x: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """One streaming step: ``x`` is ``(B, C, h, w)``; returns logits ``(B, classes)``."""
        logits, state = self.steps(x.unsqueeze(1), state)
        return logits.squeeze(1), state

    def steps(self, x: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """Several steps of one segment: ``x`` ``(B, T, C, h, w)`` to logits ``(B, T, classes)``."""
        return self._run(self._step_fn, x, state)

    def steps_across(
        self,
        x: torch.Tensor,
        state: ModelState | None,
        new_segments: Mapping[int, KeyframeContext],
    ) -> tuple[torch.Tensor, ModelState]:
        """Steps ``x`` ``(B, T, C, h, w)`` that may span segments: logits ``(B, T, classes)``.

        ``new_segments`` maps a step index to the context of the key frame that starts a new
        segment there (as :meth:`set_keyframe` would). The result equals :meth:`set_keyframe`
        and :meth:`steps` segment by segment, but the SNN runs over all ``T`` steps in one pass
        (fusion is late, so the SNN never needs the context): a node that fell behind catches up
        with one batched convolution per layer instead of ``T``. A single segment goes through
        the (possibly compiled) step path, and so does each segment with in-line fusion (the
        SNN needs each segment's context).
        """
        new_segments = dict(new_segments)
        context = new_segments.pop(0, None)
        if context is not None:
            state = self._segment(state, context)
        if state is None or state.context is None:
            raise RuntimeError("no key frame yet: the first step needs a context in new_segments")
        if not new_segments:
            return self.steps(x, state)
        self._check_steps(x)
        steps = x.shape[1]
        if not all(0 < t < steps for t in new_segments):
            raise ValueError(f"segment starts {sorted(new_segments)} outside steps 1..{steps - 1}")
        bounds = [0, *sorted(new_segments), steps]
        if self.inline:
            return self._steps_per_segment(x, state, new_segments, bounds)
        features, snn_state = None, state.snn
        if self.snn is not None:
            features, snn_state = self.snn.forward_sequence(x.transpose(0, 1), snn_state)
        context, head = state.context, state.head
        logits = []
        for begin, end in itertools.pairwise(bounds):
            if begin in new_segments:
                context, head = new_segments[begin], self._segment_start(head)
            part = None if features is None else [f[begin:end] for f in features]
            segment_logits, head = self.fuse(part, context, head, steps=end - begin)
            logits.append(segment_logits)
        return torch.cat(logits).transpose(0, 1), ModelState(snn_state, context, head)

    def _steps_per_segment(
        self,
        x: torch.Tensor,
        state: ModelState,
        new_segments: Mapping[int, KeyframeContext],
        bounds: Sequence[int],
    ) -> tuple[torch.Tensor, ModelState]:
        """:meth:`steps_across` one segment at a time (in-line fusion: the SNN needs each
        segment's context)."""
        logits = []
        for begin, end in itertools.pairwise(bounds):
            if begin in new_segments:
                state = self._segment(state, new_segments[begin])
            segment_logits, state = self.steps(x[:, begin:end], state)
            logits.append(segment_logits)
        return torch.cat(logits, dim=1), state

    def _run(
        self, fn: StepFn, x: torch.Tensor, state: ModelState
    ) -> tuple[torch.Tensor, ModelState]:
        if state.context is None:
            raise RuntimeError("no key frame yet: call set_keyframe(frame, state) before step()")
        self._check_steps(x)
        logits, state = fn(x.transpose(0, 1), state)
        return logits.transpose(0, 1), state

    def _check_steps(self, x: torch.Tensor) -> None:
        expected = (self.config.input_spec.snn_channels, *self.config.input_spec.snn_size)
        if x.dim() != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(f"SNN input has shape {tuple(x.shape)}; expected (B, T, *{expected})")

    def _steps_impl(self, x: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """The one code path of every mode: time-major ``x (T, B, C, h, w)`` to ``(T, B, n)``."""
        assert state.context is not None
        features, snn_state = self._snn(x, state.snn, state.context)
        logits, head = self.fuse(features, state.context, state.head, steps=x.shape[0])
        return logits, ModelState(snn=snn_state, context=state.context, head=head)

    def _snn(
        self, x: torch.Tensor, state: SNNState | None, context: KeyframeContext
    ) -> tuple[tuple[torch.Tensor, ...] | None, SNNState | None]:
        """The SNN over time-major ``x`` (fused in line with ``context`` when so configured):
        its per-stage spike features and new state; ``(None, state)`` without an SNN."""
        if self.snn is None:
            return None, state
        if not self.inline:
            return self.snn.forward_sequence(x, state)
        fused = self._fusion_blocks(context)

        def fuse(stage: int, output: torch.Tensor) -> torch.Tensor:
            if stage not in fused:
                return output
            block, kv = fused[stage]
            return block(output, kv)

        return self.snn.forward_sequence(x, state, fuse)

    def _fusion_blocks(self, context: KeyframeContext) -> dict[int, tuple[FusionBlock, KeyValue]]:
        """Each fused stage's block and its keys/values from ``context``."""
        return {
            int(key): (cast(FusionBlock, block), kv)
            for (key, block), kv in zip(self.fusion.items(), context.kv, strict=True)
        }

    def fuse(
        self,
        features: Sequence[torch.Tensor] | None,
        context: KeyframeContext,
        head: HeadState | None = None,
        *,
        steps: int = 1,
    ) -> tuple[torch.Tensor, HeadState | None]:
        """Fusion and head on SNN spike features: logits ``(T, B, outputs)`` and the head state.

        ``features`` are the SNN's per-stage spikes, time-major ``(T, B, C_i, h_i, w_i)`` (a
        split ``fusion`` node adds ``T = 1`` to what the ``snn`` node sends); ``None`` in ``ann``
        mode, where ``steps`` gives ``T``. ``head`` carries the segment's running feature sum.
        With in-line fusion the SNN fused them already, and only the head runs here. With an
        open-set rule the logits are its log-probabilities (classes, then no action).
        """
        out = self.fuse_with_stats(features, context, head, steps=steps)
        return out.logits, out.head

    def fuse_with_stats(
        self,
        features: Sequence[torch.Tensor] | None,
        context: KeyframeContext,
        head: HeadState | None = None,
        *,
        steps: int = 1,
    ) -> Fused:
        """:meth:`fuse`, plus the head's inputs ``(T, B, D)`` and each step's statistics
        ``(T, B, stats_dims)`` when an open-set rule reads them (``None`` without a rule)."""
        rule = self.open_set
        reads_stats = rule is not None and rule.config.reads == "stats"
        stats = self.statistics(features, context, steps) if reads_stats else None
        parts: list[torch.Tensor] = []
        if features is not None:
            late = self.config.head_fused and not self.inline
            fused = self._fusion_blocks(context) if late else {}
            pooled = []
            for stage, f in enumerate(features, start=1):
                if stage in fused:
                    block, kv = fused[stage]
                    f = block(f, kv)
                pooled.append(f.mean(dim=(-2, -1)))
            current = torch.cat(pooled, dim=-1)  # (T, B, D)
            steps = current.shape[0]
            if self.config.head_window:
                windowed, head = self._windowed(current, head)
                parts.append(windowed)
            else:
                running = current.cumsum(0)
                counts = torch.arange(1, steps + 1, dtype=current.dtype, device=current.device)
                if head is not None:
                    running = running + head.feature_sum
                    counts = counts + head.steps
                parts.append(running / counts.view(-1, 1, 1))
                head = HeadState(running[-1], counts[-1])
        if context.pooled is not None:
            parts.append(context.pooled.expand(steps, *context.pooled.shape))
        head_inputs = torch.cat(parts, dim=-1)
        logits = self.head(head_inputs)
        if rule is not None:
            rule_input = stats if stats is not None else head_inputs
            logits = rule(rule_input, logits)
        return Fused(logits, head, stats, head_inputs)

    def _segment_start(self, head: HeadState | None) -> HeadState | None:
        """The head state a new segment starts from: nothing, or a windowed head's history."""
        return head if self.config.head_window else None

    def _windowed(
        self, current: torch.Tensor, head: HeadState | None
    ) -> tuple[torch.Tensor, HeadState]:
        """Mean and standard deviation of ``current (T, B, D)`` over the last ``head_window``
        steps at each step (fewer at the start of a stream), and the history to carry on."""
        window = self.config.head_window
        history = head.history if head is not None and head.history is not None else None
        seq = current if history is None else torch.cat([history, current])
        before = seq.shape[0] - current.shape[0]
        zero = seq.new_zeros(1, *seq.shape[1:])
        sums = torch.cat([zero, seq.cumsum(0)])
        squares = torch.cat([zero, (seq * seq).cumsum(0)])
        ends = torch.arange(before + 1, seq.shape[0] + 1, device=seq.device)
        starts = (ends - window).clamp(min=0)
        counts = (ends - starts).to(seq.dtype).view(-1, 1, 1)
        mean = (sums[ends] - sums[starts]) / counts
        var = ((squares[ends] - squares[starts]) / counts - mean * mean).clamp(min=0)
        kept = seq[-(window - 1) :] if window > 1 else seq[:0]
        empty = seq.new_zeros(())
        return torch.cat([mean, var.sqrt()], dim=-1), HeadState(empty, empty, kept)

    def statistics(
        self, features: Sequence[torch.Tensor] | None, context: KeyframeContext, steps: int = 1
    ) -> torch.Tensor:
        """Per-step statistics ``(T, B, stats_dims)``: the key frame's per-stage channel means
        and standard deviations, then the SNN's per-stage spike rates (before fusion)."""
        parts = []
        if context.stats is not None:
            steps = features[0].shape[0] if features is not None else steps
            parts.append(context.stats.expand(steps, *context.stats.shape))
        if features is not None:
            parts.append(torch.cat([f.mean(dim=(-2, -1)) for f in features], dim=-1))
        return torch.cat(parts, dim=-1)

    def forward(self, clip: Clip, state: ModelState | None = None) -> ClipOutput:
        """Run a clip (see the module doc for its layout), BPTT-ready; ``state`` continues a run.

        All key frames go through the ANN as one batch, then each segment's ``K`` steps through
        the SNN and :meth:`fuse_with_stats`, as :meth:`steps` does (always eager, even after
        :meth:`enable_compile`).
        """
        keyframes, inputs = clip
        k = self.keyframe_interval
        batch, n_steps = inputs.shape[:2]
        segments = keyframes.shape[1]
        if keyframes.shape[0] != batch or n_steps != segments * k:
            raise ValueError(
                f"clip has {segments} key frames and {n_steps} steps for batch {batch}; "
                f"expected (B, S, 3, H, W) key frames and (B, S*{k}, C, h, w) steps"
            )
        self._check_steps(inputs)
        contexts = self._segment_contexts(keyframes)
        snn_state = state.snn if state is not None else None
        step_logits, step_stats, step_features = [], [], []
        head: HeadState | None = None
        for s in range(segments):
            x = inputs[:, s * k : (s + 1) * k].transpose(0, 1)
            features, snn_state = self._snn(x, snn_state, contexts[s])
            out = self.fuse_with_stats(features, contexts[s], self._segment_start(head), steps=k)
            stats = (
                out.stats if out.stats is not None else self.statistics(features, contexts[s], k)
            )
            head = out.head
            step_logits.append(out.logits.transpose(0, 1))
            step_stats.append(stats.transpose(0, 1))
            step_features.append(out.features.transpose(0, 1))
        all_logits = torch.cat(step_logits, dim=1)
        clip_logits = all_logits[:, k - 1 :: k].mean(dim=1)
        final = ModelState(snn=snn_state, context=contexts[-1], head=head)
        return ClipOutput(
            all_logits,
            clip_logits,
            final,
            torch.cat(step_stats, dim=1),
            torch.cat(step_features, dim=1),
        )

    def _segment_contexts(self, keyframes: torch.Tensor) -> list[KeyframeContext]:
        """Contexts of all ``S`` key frames from one batched ANN pass."""
        batch, segments = keyframes.shape[:2]
        if self.ann is None:
            return [KeyframeContext((), None, None)] * segments
        context = self.encode_keyframe(keyframes.flatten(0, 1))

        def pick(t: torch.Tensor, s: int) -> torch.Tensor:
            return t.unflatten(0, (batch, segments))[:, s]

        return [
            KeyframeContext(
                tuple(KeyValue(pick(kv.key, s), pick(kv.value, s)) for kv in context.kv),
                pick(context.pooled, s) if context.pooled is not None else None,
                pick(context.stats, s) if context.stats is not None else None,
            )
            for s in range(segments)
        ]


__all__ = [
    "MODES",
    "Clip",
    "ClipOutput",
    "HeadState",
    "HybridReSpike",
    "InputSpec",
    "KeyResidual",
    "KeyframeContext",
    "Mode",
    "ModelConfig",
    "ModelState",
    "SNNInput",
]
