"""`model`: the hybrid SNN + key-frame ANN + fusion in one process, publishing rolling predictions.

Every residual or event message is one or more SNN steps (events are binned into steps of the
checkpoint's time bin); every key frame refreshes the ANN context; steps are paired with the key
frame of their segment (:class:`~respike.nodes.inference.KeyframeAligner`). Each step publishes a
``prediction``: the rolling label (smoothed, with hysteresis, "no action" below a threshold),
the top-k scores, the capture time ``t`` of the frame it refers to, the latency from capture to
this prediction with its per-stage parts, and the energy of the step (MACs and spike ACs measured
on every ``energy_every``-th step, plus the key frame's share).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from respike.nodes.base import Node, param, register
from respike.nodes.inference import (
    EnergyMeter,
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
        self._energy = EnergyMeter(self.model, self.params.energy_every)
        self._state: Any = None
        self.steps = 0
        if self.model.config.mode == "snn":  # no key frames: one empty context for every step
            self._aligner.add_context(None, (self.model.encode_keyframe(None), 0.0))
        self._warm_up()

    def _warm_up(self) -> None:
        """Run one key frame and one step on zeros so the first real message is not slow."""
        torch, spec = self._torch, self.spec
        with torch.no_grad():
            frame = (
                None if self.model.config.mode == "snn" else torch.zeros(1, 3, *spec.keyframe_size)
            )
            state = self.model.set_keyframe(frame, None)
            self.model.step(torch.zeros(1, spec.snn_channels, *spec.snn_size), state)

    def on_message(self, port: str, message: Message) -> None:
        if port == "keyframes":
            if self.model.config.mode == "snn":
                return
            with self._torch.no_grad(), self._energy.measure("keyframe"):
                context = self.model.encode_keyframe(
                    keyframe_input(message, self.spec).to(self.params.device)
                )
            ready = self._aligner.add_context(
                message.meta.get("key_index"), (context, self._energy.last["keyframe"])
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
        with torch.no_grad(), self._energy.measure("step", per=len(steps)):
            x = torch.from_numpy(steps)[None].to(self.params.device)
            logits, self._state = self.model.steps(x, self._state)
        self.steps += len(steps)
        probs = torch.softmax(logits[0, -1].float(), dim=0).cpu().numpy()
        self._predictions.publish(
            message,
            probs,
            (time.perf_counter() - begin) * 1000,
            self._energy.last["step"],
            keyframe_pj,
        )

    def stats(self) -> dict[str, float]:
        return {"steps": float(self.steps), "dropped_steps": float(self._aligner.dropped)}
