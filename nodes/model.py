"""`model`: the hybrid SNN + key-frame ANN + fusion in one process, publishing rolling predictions.

Every residual or event message is one or more SNN steps (events are binned into steps of the
checkpoint's time bin); every key frame refreshes the ANN context; steps are paired with the key
frame of their segment (:class:`~respike.nodes.inference.KeyframeAligner`). Each step publishes a
``prediction``: the rolling label (smoothed, with hysteresis, "no action" below a threshold),
the top-k scores, the capture time ``t`` of the frame it refers to, the latency from capture to
this prediction with its per-stage parts, and the energy of the step (measured MACs and spike
ACs, plus the key frame's share).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from respike.nodes.base import Node, param, register
from respike.nodes.inference import (
    KeyframeAligner,
    PredictionParams,
    PredictionPublisher,
    StepInputs,
    keyframe_input,
    load_model,
)
from respike.stream.messages import Message


@register("model")
class ModelNode(Node):
    """Runs a checkpoint on residual/event steps and key frames; publishes per-step predictions.

    Inputs: ``steps`` takes ``residual`` messages (``arrays["residual"]`` (C, h, w) float32 at
    the model's SNN size) or ``events`` messages (``arrays["events"]`` with ``width``/``height``
    in meta); ``keyframes`` takes ``frame`` messages (RGB uint8), needed in hybrid and ann mode.
    """

    @dataclass(frozen=True)
    class Params(PredictionParams):
        compile: bool = param(False, "torch.compile the step (costs seconds at start)")
        energy: bool = param(True, "measure MACs and spike ACs per step (adds hooks to the step)")

    inputs = ("steps", "keyframes")
    optional_inputs = frozenset({"keyframes"})
    outputs = ("predictions",)

    def start(self) -> None:
        import torch

        self._torch = torch
        self.model, classes, self.spec = load_model(self.params)
        if self.params.compile:
            self.model.enable_compile()
        self._inputs = StepInputs(self.spec)
        self._predictions = PredictionPublisher(
            self, classes, self.params.smoothing(), self.spec.keyframe_interval
        )
        self._aligner: KeyframeAligner[tuple[Any, float], Message] = KeyframeAligner()
        self._hooks = contextlib.ExitStack()
        self._counter = (
            self._hooks.enter_context(self._op_counter()) if self.params.energy else None
        )
        self._state: Any = None
        self.steps = 0
        if self.model.config.mode == "snn":  # no key frames: one empty context for every step
            self._aligner.add_context(None, (self.model.encode_keyframe(None), 0.0))
        self._warm_up()

    def _op_counter(self) -> Any:
        from respike.models.energy import OpCounter

        spike_driven = self.model.snn.spike_driven_convs() if self.model.snn is not None else []
        return OpCounter(self.model, spike_driven=spike_driven)

    def _counted_pj(self) -> float:
        """Energy the op counter saw since its last reset (pJ), then reset it."""
        if self._counter is None:
            return 0.0
        energy = float(self._counter.counts().energy_pj())
        self._counter.reset()
        return energy

    def _warm_up(self) -> None:
        """Run one key frame and one step on zeros so the first real message is not slow."""
        torch, spec = self._torch, self.spec
        with torch.no_grad():
            frame = (
                None if self.model.config.mode == "snn" else torch.zeros(1, 3, *spec.keyframe_size)
            )
            state = self.model.set_keyframe(frame, None)
            self.model.step(torch.zeros(1, spec.snn_channels, *spec.snn_size), state)
        self._counted_pj()

    def on_message(self, port: str, message: Message) -> None:
        if port == "keyframes":
            if self.model.config.mode == "snn":
                return
            with self._torch.no_grad():
                context = self.model.encode_keyframe(
                    keyframe_input(message, self.spec).to(self.params.device)
                )
            ready = self._aligner.add_context(
                message.meta.get("key_index"), (context, self._counted_pj())
            )
        else:
            ready = self._aligner.add_step(message.meta.get("key_index"), message)
        for step, (context, keyframe_pj), new_segment in ready:
            self._run(step, context, keyframe_pj, new_segment)

    def _run(self, message: Message, context: Any, keyframe_pj: float, new_segment: bool) -> None:
        from respike.models.hybrid import ModelState

        torch = self._torch
        steps = self._inputs(message)
        begin = time.perf_counter()
        snn_state = self._state.snn if self._state is not None else None
        if new_segment or self._state is None:
            self._state = ModelState(snn=snn_state, context=context, head=None)
        with torch.no_grad():
            x = torch.from_numpy(steps)[None].to(self.params.device)
            logits, self._state = self.model.steps(x, self._state)
        self.steps += len(steps)
        energy_pj = self._counted_pj() / len(steps)
        probs = torch.softmax(logits[0, -1].float(), dim=0).cpu().numpy()
        self._predictions.publish(
            message, probs, (time.perf_counter() - begin) * 1000, energy_pj, keyframe_pj
        )

    def stats(self) -> dict[str, float]:
        return {"steps": float(self.steps), "dropped_steps": float(self._aligner.dropped)}

    def finish(self) -> None:
        self._hooks.close()
