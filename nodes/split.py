"""`snn`, `keyframe`, `fusion`: the model node cut in three, so the SNN and the ANN can run on
different hosts (the neuromorphic + edge split). Together they give the `model` node's
predictions: the fusion node pairs steps and key frames with the same aligner and runs the same
fusion and head on the features the other two send.

They follow the scene as the `model` node does (:mod:`respike.models.adaptive`): the `snn`
node holds still steps after ``idle_after`` and the `keyframe` node reuses key frames that did
not call for a pass; each sends a ``skipped`` features message instead, and the `fusion` node
repeats its last prediction or context. The `keyframe` node has no prediction to read, so only
change and ``keyframe_gap`` call for its passes (the `model` node also reads confidence).

A checkpoint with in-line fusion cannot be cut there (its SNN reads the key frame's context
inside every step): the SNN host runs a `model` node fed by the `keyframe` node's features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from respike.models.adaptive import AdaptiveSettings, IdleGate, KeyframePolicy
from respike.nodes.base import Node, param, register
from respike.nodes.inference import (
    BatchParams,
    IdleParams,
    KeyframeAligner,
    KeyframeParams,
    PredictionParams,
    PredictionPublisher,
    RuntimeParams,
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


class _CheckpointNode(Node):
    """Loads the checkpoint and counts the energy of what it runs."""

    def _load(self, *, spike_driven: bool) -> None:
        import torch

        from respike.models.energy import EnergyMeter

        self._torch = torch
        self.model, self.classes, self.spec = load_model(self.params)
        if self.model.inline and self.kind != "keyframe":
            raise ValueError(
                f"checkpoint {self.params.checkpoint!r} fuses in line (its SNN reads the key "
                "frame's features), so its SNN and fusion cannot run apart: run a `model` node "
                "with a `keyframe` node's features on its keyframes input"
            )
        self._energy = EnergyMeter(self.model, self.params.energy_every, spike_driven=spike_driven)

    def _features(
        self,
        meta: kinds.Frame | kinds.Step,
        stage_ms: float,
        energy_pj: float,
        skipped: bool = False,
    ) -> kinds.Features:
        """The meta of features made from a message with ``meta``: its origin and key index
        carried on, this stage's time added to its latencies."""
        latency = {**(getattr(meta, "latency_ms", None) or {}), self.kind: round(stage_ms, 3)}
        return kinds.Features(
            **meta.origin(),
            key_index=meta.key_index,
            energy_pj=energy_pj,
            latency_ms=latency,
            skipped=skipped,
        )


@register("snn")
class SnnNode(_CheckpointNode):
    """Steps the checkpoint's SNN on residual/event messages; publishes per-stage spikes.

    ``features`` carries ``stage1``..``stage4`` as uint8 spikes ``(T, C, h, w)`` and the spike
    ACs of the steps as ``energy_pj``; a held still step sends ``skipped`` features instead.
    """

    @dataclass(frozen=True)
    class Params(BatchParams, IdleParams):
        pass

    inputs = ("steps",)
    outputs = ("features",)

    def start(self) -> None:
        self._load(spike_driven=True)
        if self.model.snn is None:
            raise ValueError(
                f"checkpoint {self.params.checkpoint!r} has no SNN branch (mode 'ann')"
            )
        self._inputs = StepInputs(self.spec)
        self._inputs.warm_up()
        self._pending: StepQueue[tuple[Message, Any]] = StepQueue(
            self.params.batch, lambda item: len(item[1])
        )
        self._state: Any = None
        self._gate = IdleGate(adaptive_settings(self.params))

    def on_message(self, port: str, message: Message) -> None:
        self._pending.append((message, self._inputs(message)))

    def flush(self) -> None:
        """Step the SNN over the waiting messages, at most ``batch`` steps per pass; still steps
        the idle gate holds are sent as ``skipped``."""
        for batch in self._pending.batches():
            run_gated(batch, self._admit, self._run, self._hold)

    def _admit(self, item: tuple[Message, Any]) -> tuple[Message, Any] | None:
        return item if self._gate.admit(item[1], None, False, self._state is not None)[0] else None

    def _hold(self, item: tuple[Message, Any]) -> None:
        message = item[0]
        meta = self._features(kinds.read_step(message), 0.0, 0.0, skipped=True)
        self.publish("features", meta, message.t, {})

    def stats(self) -> dict[str, float]:
        return {"held_steps": float(self._gate.held)}

    def _run(self, batch: list[tuple[Message, Any]]) -> None:
        torch = self._torch
        begin = time.perf_counter()
        x = np.concatenate([steps for _, steps in batch]) if len(batch) > 1 else batch[0][1]
        with torch.no_grad(), self._energy.measure("snn", per=len(x)):
            spikes, self._state = self.model.snn.forward_sequence(
                torch.from_numpy(x)[:, None].to(self.params.device), self._state
            )
        stages = [s[:, 0].to(torch.uint8).cpu().numpy() for s in spikes]
        stage_ms = (time.perf_counter() - begin) * 1000
        offset = 0
        for message, steps in batch:
            arrays = {
                f"stage{i}": stage[offset : offset + len(steps)]
                for i, stage in enumerate(stages, start=1)
            }
            offset += len(steps)
            energy_pj = self._energy.last["snn"] * len(steps)
            meta = self._features(kinds.read_step(message), stage_ms, energy_pj)
            self.publish("features", meta, message.t, arrays)


@register("keyframe")
class KeyframeNode(_CheckpointNode):
    """Runs the checkpoint's key-frame ANN; publishes its four stage maps (float32) per key frame,
    or ``skipped`` features for a key frame that did not call for a pass."""

    @dataclass(frozen=True)
    class Params(RuntimeParams, KeyframeParams):
        idle_below: float = param(
            AdaptiveSettings.idle_below, "key frames within a quarter of this on average are still"
        )

    inputs = ("keyframes",)
    outputs = ("features",)

    def start(self) -> None:
        self._load(spike_driven=False)
        if self.model.ann is None:
            raise ValueError(
                f"checkpoint {self.params.checkpoint!r} has no ANN branch (mode 'snn')"
            )
        with self._torch.no_grad():  # the first frame should not wait for imports
            self.model.ann(keyframe_input(black_keyframe(self.spec), self.spec))
        self._policy = KeyframePolicy(adaptive_settings(self.params))

    def on_message(self, port: str, message: Message) -> None:
        begin = time.perf_counter()
        frame = keyframe_input(message, self.spec).to(self.params.device)
        if self._policy.lookup(frame) is not None:
            meta = self._features(kinds.Frame.read(message), 0.0, 0.0, skipped=True)
            self.publish("features", meta, message.t, {})
            return
        self._policy.keep(frame, True)  # the context itself lives in the fusion node
        with self._torch.no_grad(), self._energy.measure("ann"):
            maps = self.model.ann(frame)
        arrays = {f"stage{i}": m[0].float().cpu().numpy() for i, m in enumerate(maps, start=1)}
        stage_ms = (time.perf_counter() - begin) * 1000
        meta = self._features(kinds.Frame.read(message), stage_ms, self._energy.last["ann"])
        self.publish("features", meta, message.t, arrays)

    def stats(self) -> dict[str, float]:
        return {
            "ann_passes": float(self._policy.passes),
            "reused_keyframes": float(self._policy.reused),
        }


@register("fusion")
class FusionNode(_CheckpointNode):
    """Fuses SNN spike features with the key-frame ANN features; publishes rolling predictions."""

    Params = PredictionParams
    inputs = ("snn", "keyframes")
    optional_inputs = frozenset({"keyframes"})
    outputs = ("predictions",)

    def start(self) -> None:
        self._load(spike_driven=False)
        self._predictions = PredictionPublisher(
            self, self.classes, self.params.smoothing(), self.spec.keyframe_interval
        )
        self._aligner: KeyframeAligner[tuple[Any, float], Message] = KeyframeAligner()
        self._head: Any = None
        self._context: Any = None
        self._last_probs: Any = None
        self._held_segment = False
        self.held_steps = 0
        if self.model.config.mode == "snn":
            self._aligner.add_context(None, (self.model.encode_keyframe(None), 0.0))

    def on_message(self, port: str, message: Message) -> None:
        torch = self._torch
        if port == "keyframes" and (meta := kinds.Features.read(message)).skipped:
            if self._context is None:
                raise ValueError(f"{message.topic}: a skipped key frame before any computed one")
            ready = self._aligner.add_context(meta.key_index, (self._context, 0.0))
        elif port == "keyframes":
            widths = self.model.config.ann.widths
            maps = [m.to(self.params.device) for m in ann_maps(message, widths)]
            with torch.no_grad(), self._energy.measure("context"):
                context = self.model.context_from_features(maps)
            features = kinds.Features.read(message)
            keyframe_pj = features.energy_pj + self._energy.last["context"]
            self._context = context
            ready = self._aligner.add_context(features.key_index, (context, keyframe_pj))
        else:
            ready = self._aligner.add_step(kinds.Features.read(message).key_index, message)
        for step, (context, keyframe_pj), new_segment in ready:
            self._fuse(step, context, keyframe_pj, new_segment)

    def _fuse(self, message: Message, context: Any, keyframe_pj: float, new_segment: bool) -> None:
        """Fusion and head on one features message (its steps), or the last prediction again
        for a held still step, whose new segment (if it starts one) begins on the next."""
        if kinds.Features.read(message).skipped:
            if self._last_probs is None:
                raise ValueError(f"{message.topic}: a held step before any computed one")
            self.held_steps += 1
            self._held_segment = self._held_segment or new_segment
            self._predictions.publish(message, self._last_probs, 0.0, 0.0, keyframe_pj, 0)
            return
        new_segment, self._held_segment = new_segment or self._held_segment, False
        torch = self._torch
        begin = time.perf_counter()
        features = [
            torch.tensor(message.arrays[f"stage{i}"]).float()[:, None].to(self.params.device)
            for i in range(1, 5)
        ]
        steps = features[0].shape[0]
        with torch.no_grad(), self._energy.measure("fusion"):
            logits, self._head = self.model.fuse(
                features, context, None if new_segment else self._head, steps=steps
            )
        energy_pj = (kinds.Features.read(message).energy_pj + self._energy.last["fusion"]) / steps
        probs = torch.softmax(logits[-1, 0].float(), dim=0).cpu().numpy()
        self._last_probs = probs
        self._predictions.publish(
            message, probs, (time.perf_counter() - begin) * 1000, energy_pj, keyframe_pj, steps
        )

    def stats(self) -> dict[str, float]:
        return {"held_steps": float(self.held_steps)}
