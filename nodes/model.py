"""`model`: the hybrid SNN + key-frame ANN + fusion in one process, publishing rolling predictions.

Every residual or event message is one or more SNN steps (events are binned into steps of the
checkpoint's time bin); every key frame refreshes the ANN context; steps are paired with the key
frame of their segment (:class:`~respike.nodes.inference.KeyframeAligner`). Each step publishes a
``prediction``: the rolling label (smoothed, with hysteresis, "no action" below a threshold),
the top-k scores, the capture time ``t`` of the frame it refers to, the latency from capture to
this prediction with its per-stage parts, and the energy of the step (MACs and spike ACs measured
on every ``energy_every``-th step, plus the key frame's share).

Steps are queued by :meth:`ModelNode.on_message` and run by :meth:`ModelNode.flush`, which the
runtime calls once no more input is waiting: live, that is one message at a time; behind (a
replay as fast as possible, a burst), up to ``batch`` steps run in one SNN pass
(:meth:`~respike.models.hybrid.HybridReSpike.steps_across`), so the per-step Python overhead
of a small network is paid once per batch.

Its work follows the scene (:mod:`respike.models.adaptive`): after ``idle_after`` still steps
it stops computing steps and repeats the last prediction until the input changes, and it runs
the ANN on a key frame only when the frame changed, the prediction lost confidence or
``keyframe_gap`` segments passed (``keyframe_gap = 1``: every key frame that is not still).
Each prediction says how many SNN steps and ANN passes it took; the stats count them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from respike.models.adaptive import AdaptiveSettings, IdleGate, KeyframePolicy
from respike.nodes.base import Node, param, register
from respike.nodes.inference import (
    BatchParams,
    CheckpointWatch,
    IdleParams,
    KeyframeAligner,
    KeyframeParams,
    PredictionParams,
    PredictionPublisher,
    StepInputs,
    StepQueue,
    adaptive_settings,
    ann_maps,
    black_keyframe,
    keyframe_input,
    load_model,
    run_gated,
)
from respike.stream import kinds
from respike.stream.messages import Message

if TYPE_CHECKING:
    from respike.models.compiled import StepCompiler

log = logging.getLogger(__name__)


@register("model")
class ModelNode(Node):
    """Runs a checkpoint on residual/event steps and key frames; publishes per-step predictions.

    Inputs: ``steps`` takes ``residual`` messages (``arrays["residual"]`` (C, h, w) float32 at
    the model's SNN size) or ``events`` messages (``arrays["events"]`` with ``width``/``height``
    in meta); ``keyframes`` takes ``frame`` messages (RGB uint8), needed in hybrid and ann mode,
    or a ``keyframe`` node's ``features`` (the ANN on another host: how a checkpoint with in-line
    fusion is split, the SNN and fusion here).
    """

    @dataclass(frozen=True)
    class Params(PredictionParams, BatchParams, IdleParams, KeyframeParams):
        compile: bool = param(False, "torch.compile the step (costs seconds at start)")
        compiled_step: str = param(
            "auto",
            "the step as an AOTInductor artifact cached on disk: auto (load it, or build it in "
            "the background once), cached (load only), build (build at start), off; "
            "RESPIKE_COMPILED_STEP replaces auto",
        )
        reload: bool = param(
            True, "swap in the checkpoint when its file changes (a model taught while running)"
        )
        watch: str = param(
            "", "switch to this checkpoint file whenever it is written (the viewer's Teach panel)"
        )
        keyframe_confidence: float = param(
            AdaptiveSettings.keyframe_confidence,
            "a prediction less confident than this calls for an ANN pass",
        )

        def __post_init__(self) -> None:
            super().__post_init__()
            adaptive_settings(self)

    inputs = ("steps", "keyframes")
    optional_inputs = frozenset({"keyframes"})
    outputs = ("predictions",)
    tick_interval = 1.0

    def start(self) -> None:
        import torch

        from respike.models.checkpoint import resolve_checkpoint

        self._torch = torch
        self._checkpoint = str(resolve_checkpoint(self.params.checkpoint))
        watched = Path(self.params.watch) if self.params.watch else Path(self._checkpoint)
        self._watch = CheckpointWatch(watched)
        self._compiler: StepCompiler | None = None
        self._load()
        self._inputs = StepInputs(self.spec)
        self._inputs.warm_up()
        self.steps = 0
        self.batches = 0
        self.swaps = 0
        self._warm_up()

    def _load(self) -> None:
        """Load the checkpoint and reset what depends on it (at start and on a swap)."""
        from respike.models.compiled import StepCompiler
        from respike.models.energy import EnergyMeter

        self.model, classes, self.spec = load_model(
            dataclasses.replace(self.params, checkpoint=self._checkpoint)
        )
        if self._compiler is not None:
            self._compiler.close()
        self._compiler = StepCompiler(
            "off" if self.params.compile else self.params.compiled_step,
            Path(self._checkpoint),
            name=self.name,
        )
        if self.params.compile:
            self.model.enable_compile()
        self._compiler.attach(self.model)
        self._batch = 1 if self.params.compile else self.params.batch  # one graph per shape
        self._predictions = PredictionPublisher(
            self, classes, self.params.smoothing(), self.spec.keyframe_interval
        )
        self._aligner: KeyframeAligner[tuple[Any, float, int], Message] = KeyframeAligner()
        self._energy = EnergyMeter(self.model, self.params.energy_every)
        self._pending: StepQueue[_Ready] = StepQueue(self._batch, lambda item: len(item.steps))
        self._state: Any = None
        self._gate = IdleGate(adaptive_settings(self.params))
        self._keyframes = KeyframePolicy(adaptive_settings(self.params))
        self._last_probs: np.ndarray | None = None
        self._remote: Any = None  # the last context from a keyframe node's features
        if self.model.config.mode == "snn":  # no key frames: one empty context for every step
            self._aligner.add_context(None, (self.model.encode_keyframe(None), 0.0, 0))

    def tick(self) -> None:
        """Swap in the checkpoint when its file changed; the pipeline keeps running.

        The new model must take the same inputs; until its first key frame arrives, steps wait
        (as at start). A file that cannot be loaded, or takes other inputs, is logged and the
        running model stays.
        """
        assert self._compiler is not None
        self._compiler.poll(self.model)
        if not (self.params.reload or self.params.watch) or not self._watch.changed():
            return
        from respike.models.checkpoint import read_checkpoint_info

        try:
            spec = read_checkpoint_info(self._watch.path).input_spec
            if spec != self.spec:
                raise ValueError(f"it takes other inputs ({spec}; running {self.spec})")
            previous, self._checkpoint = self._checkpoint, str(self._watch.path)
            try:
                self._load()
            except ValueError:
                self._checkpoint = previous
                raise
        except ValueError as error:  # CheckpointError included
            log.warning("%s: kept the running model: %s", self.name, error)
            return
        self.swaps += 1
        log.info(
            "%s: swapped in %s (%s)", self.name, self._watch, ", ".join(self._predictions.classes)
        )

    def _warm_up(self) -> None:
        """Run one key frame and one step on zeros so the first real message is not slow."""
        torch, spec = self._torch, self.spec
        with torch.no_grad():
            frame = (
                None
                if self.model.config.mode == "snn"
                else keyframe_input(black_keyframe(spec), spec).to(self.params.device)
            )
            state = self.model.set_keyframe(frame, None)
            self.model.step(torch.zeros(1, spec.snn_channels, *spec.snn_size), state)

    def on_message(self, port: str, message: Message) -> None:
        if port == "keyframes" and message.kind == kinds.Features.KIND:
            ready = self._remote_keyframe(message)
        elif port == "keyframes":
            if self.model.config.mode == "snn":
                return
            frame = keyframe_input(message, self.spec).to(self.params.device)
            confidence = None if self._last_probs is None else float(self._last_probs.max())
            kept = self._keyframes.lookup(frame, confidence)
            if kept is None:
                with self._torch.no_grad(), self._energy.measure("keyframe"):
                    context = self.model.encode_keyframe(frame)
                kept = (context, self._energy.last["keyframe"], 1)  # counted as the block ends
                self._keyframes.keep(frame, kept)
            else:
                kept = (kept[0], 0.0, 0)  # no ANN pass for this one
            ready = self._aligner.add_context(kinds.Frame.read(message).key_index, kept)
        else:
            ready = self._aligner.add_step(kinds.read_step(message).key_index, message)
        errors = []
        for step, (context, keyframe_pj, passes), new_segment in ready:
            try:  # a bad step is counted; the good ones released with it still run
                self._pending.append(
                    _Ready(
                        step,
                        self._inputs(step),
                        context,
                        keyframe_pj,
                        new_segment,
                        passes if new_segment else 0,
                    )
                )
            except ValueError as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def _remote_keyframe(self, message: Message) -> list[tuple[Message, Any, bool]]:
        """A key frame whose ANN ran on another host (a ``keyframe`` node's ``features``): its
        context from the maps, paired with the steps that waited for it."""
        meta = kinds.Features.read(message)
        if meta.skipped:  # the keyframe node reused its last pass
            if self._remote is None:
                raise ValueError(f"{message.topic}: a skipped key frame before any computed one")
            kept = (self._remote, 0.0, 0)
        else:
            widths = self.model.config.ann.widths
            maps = [m.to(self.params.device) for m in ann_maps(message, widths)]
            with self._torch.no_grad(), self._energy.measure("context"):
                self._remote = self.model.context_from_features(maps)
            kept = (self._remote, meta.energy_pj + self._energy.last["context"], 1)
        return self._aligner.add_context(meta.key_index, kept)

    def flush(self) -> None:
        """Run the waiting steps, at most ``batch`` at a time, and publish their predictions;
        steps the idle gate holds repeat the last prediction instead."""
        for batch in self._pending.batches():
            run_gated(batch, self._admit, self._run, self._hold)

    def _admit(self, item: _Ready) -> _Ready | None:
        """``item`` to compute (continuing the segment the gate says), or None to hold it."""
        run, context, new_segment = self._gate.admit(
            item.steps, item.context, item.new_segment, self._last_probs is not None
        )
        return item._replace(context=context, new_segment=new_segment) if run else None

    def _hold(self, item: _Ready) -> None:
        """A held still step: the last prediction again, no step computed."""
        assert self._last_probs is not None
        self._predictions.publish(
            item.message, self._last_probs, 0.0, 0.0, item.keyframe_pj, 0, item.ann_passes
        )

    def _run(self, batch: list[_Ready]) -> None:
        torch = self._torch
        begin = time.perf_counter()
        new_segments, ends, offset = {}, [], 0
        for item in batch:
            if item.new_segment:
                new_segments[offset] = item.context
            offset += len(item.steps)
            ends.append(offset - 1)
        x = np.concatenate([item.steps for item in batch]) if len(batch) > 1 else batch[0].steps
        with torch.no_grad(), self._energy.measure("step", per=offset):
            logits, self._state = self.model.steps_across(
                torch.from_numpy(x)[None].to(self.params.device), self._state, new_segments
            )
        self.steps += offset
        self.batches += 1
        probs = torch.softmax(logits[0, ends].float(), dim=-1).cpu().numpy()
        self._last_probs = probs[-1]
        compute_ms = (time.perf_counter() - begin) * 1000
        for item, item_probs in zip(batch, probs, strict=True):
            self._predictions.publish(
                item.message,
                item_probs,
                compute_ms,
                self._energy.last["step"],
                item.keyframe_pj,
                len(item.steps),
                item.ann_passes,
            )

    def finish(self) -> None:
        if self._compiler is not None:
            self._compiler.close(keep_building=True)  # the next start finds the package

    def stats(self) -> dict[str, float]:
        compiled = self._compiler.step if self._compiler is not None else None
        return {
            "steps": float(self.steps),
            "compiled_steps": float(compiled.calls if compiled is not None else 0),
            "steps_per_batch": self.steps / self.batches if self.batches else 0.0,
            "dropped_steps": float(self._aligner.dropped),
            "swaps": float(self.swaps),
            "held_steps": float(self._gate.held),
            "ann_passes": float(self._keyframes.passes),
            "reused_keyframes": float(self._keyframes.reused),
        }


class _Ready(NamedTuple):
    """A step message paired with its key frame's context, converted and waiting for flush."""

    message: Message
    steps: Any
    context: Any
    keyframe_pj: float
    new_segment: bool
    ann_passes: int
    """ANN passes to report with this step (its segment's, on its first step)."""
