"""`model`: the hybrid SNN + key-frame ANN + fusion in one process, publishing rolling predictions.

Every residual or event message is one or more SNN steps (events are binned into steps of the
checkpoint's time bin); every key frame refreshes the ANN context. Each step publishes a
``prediction``: the rolling label (smoothed, with hysteresis, "no action" below a threshold),
the top-k scores, the capture time ``t`` of the frame it refers to, the latency from capture to
this prediction with its per-stage parts, and the energy estimate of the step (its measured
MACs and spike ACs, plus the key frame's share).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from respike.nodes.base import Node, param, register
from respike.nodes.rolling import RollingState, Smoothing, roll
from respike.stream.messages import Message, now_us

log = logging.getLogger(__name__)


@register("model")
class ModelNode(Node):
    """Runs a checkpoint on residual/event steps and key frames; publishes per-step predictions.

    Inputs: ``steps`` takes ``residual`` messages (``arrays["residual"]`` (C, h, w) float32 at
    the model's SNN size) or ``events`` messages (``arrays["events"]`` with ``width``/``height``
    in meta); ``keyframes`` takes ``frame`` messages (RGB uint8), needed in hybrid mode.
    """

    @dataclass(frozen=True)
    class Params:
        checkpoint: str = param(
            "actions", "checkpoint path or shipped name (actions, gestures-dvs, nmnist)"
        )
        threads: int = param(1, "torch CPU threads")
        device: str = param("cpu", "torch device (cpu, cuda)")
        compile: bool = param(False, "torch.compile the step (costs seconds at start)")
        alpha: float = param(0.25, "smoothing: weight of the newest step's probabilities")
        enter: float = param(0.45, "a new label needs this smoothed score")
        margin: float = param(0.1, "... and must beat the current label by this much")
        threshold: float = param(0.3, "below this best score the state is `no action`")
        top_k: int = param(3, "labels with scores in each prediction")
        energy: bool = param(True, "measure MACs and spike ACs per step (adds hooks to the step)")

        def __post_init__(self) -> None:
            if self.threads < 1:
                raise ValueError("threads must be ≥ 1")
            Smoothing(self.alpha, self.enter, self.margin, self.threshold, self.top_k)

    inputs = ("steps", "keyframes")
    optional_inputs = frozenset({"keyframes"})
    outputs = ("predictions",)

    def start(self) -> None:
        import torch

        from respike.models.checkpoint import load_checkpoint, resolve_checkpoint

        torch.set_num_threads(self.params.threads)
        self._torch = torch
        loaded = load_checkpoint(
            resolve_checkpoint(self.params.checkpoint), map_location=self.params.device
        )
        self.model = loaded.model.eval()
        self.classes = loaded.class_names
        self.spec = loaded.input_spec
        self._smoothing = Smoothing(
            self.params.alpha,
            self.params.enter,
            self.params.margin,
            self.params.threshold,
            self.params.top_k,
        )
        if self.params.compile:
            self.model.enable_compile()
        self._hooks = contextlib.ExitStack()
        self._counter = (
            self._hooks.enter_context(self._make_counter()) if self.params.energy else None
        )
        self._binners: dict[tuple[int, int, int], Any] = {}
        self._keyframe_pj = 0.0
        self._reset()
        self._warm_up()

    def _reset(self) -> None:
        self._state = (
            self.model.set_keyframe(None, None) if self.model.config.mode == "snn" else None
        )
        self._rolling: RollingState | None = None
        self.steps = 0

    def _make_counter(self) -> Any:
        from respike.models.energy import OpCounter

        spike_driven = self.model.snn.spike_driven_convs() if self.model.snn is not None else []
        return OpCounter(self.model, spike_driven=spike_driven)

    def _warm_up(self) -> None:
        """Run one key frame and one step on zeros so the first real message is not slow."""
        self._counted_pj()
        torch = self._torch
        spec = self.spec
        with torch.no_grad():
            state = None
            if self.model.config.mode != "snn":
                state = self.model.set_keyframe(torch.zeros(1, 3, *spec.keyframe_size), None)
            else:
                state = self.model.set_keyframe(None, None)
            self.model.step(torch.zeros(1, spec.snn_channels, *spec.snn_size), state)

    def on_message(self, port: str, message: Message) -> None:
        if port == "keyframes":
            self._on_keyframe(message)
        elif message.kind == "residual":
            self._on_steps(message, self._residual_steps(message))
        elif message.kind == "events":
            self._on_steps(message, self._event_steps(message))
        else:
            raise ValueError(
                f"{self.name}: input {port} got a {message.kind!r} message; expected residual or events"
            )

    def _on_keyframe(self, message: Message) -> None:
        from respike.models.datasets import keyframe_tensor

        if self.model.config.mode == "snn":
            return
        width_height = (self.spec.keyframe_size[1], self.spec.keyframe_size[0])
        frame = self._torch.from_numpy(
            keyframe_tensor(message.arrays["frame"], width_height, "rgb")
        )
        self._counted_pj()
        with self._torch.no_grad():
            self._state = self.model.set_keyframe(frame[None].to(self.params.device), self._state)
        self._keyframe_pj = self._counted_pj()

    def _residual_steps(self, message: Message) -> np.ndarray:
        residual = message.arrays["residual"]
        expected = (self.spec.snn_channels, *self.spec.snn_size)
        if residual.shape != expected or residual.dtype != np.float32:
            raise ValueError(
                f"residual of shape {residual.shape} {residual.dtype}; the checkpoint expects {expected} float32 "
                "(set the residual node's size and color to the model's input)"
            )
        return residual[None]

    def _event_steps(self, message: Message) -> np.ndarray:
        from respike.events.binning import EventFrames

        events = message.arrays["events"]
        sensor = (int(message.meta["width"]), int(message.meta["height"]))
        start = int(message.meta.get("window_start", events["t"][0] if len(events) else 0))
        end = int(message.meta.get("window_end", events["t"][-1] + 1 if len(events) else start + 1))
        bins = max(1, round((end - start) / self.spec.time_bin_us))
        key = (*sensor, bins)
        if key not in self._binners:
            size = (self.spec.snn_size[1], self.spec.snn_size[0])
            self._binners[key] = EventFrames(sensor_size=sensor, n_time_bins=bins, size=size)
        return self._binners[key](events, start, end)

    def _on_steps(self, message: Message, steps: np.ndarray) -> None:
        torch = self._torch
        if self._state is None:
            return  # hybrid mode waits for its first key frame
        begin = time.perf_counter()
        self._counted_pj()
        for step in steps:
            x = torch.from_numpy(np.ascontiguousarray(step))[None].to(self.params.device)
            with torch.no_grad():
                logits, self._state = self.model.step(x, self._state)
            self.steps += 1
        step_pj = self._counted_pj() / len(steps)
        probs = torch.softmax(logits[0].float(), dim=0).cpu().numpy()
        prediction, self._rolling = roll(probs, self._rolling, self.classes, self._smoothing)
        compute_ms = (time.perf_counter() - begin) * 1000
        now = now_us()
        upstream = dict(message.meta.get("latency_ms", {}))
        latency = {
            **upstream,
            "upstream": (message.pt - message.t) / 1000,
            "hop": (now - message.pt) / 1000 - compute_ms,
            "model": compute_ms,
            "e2e": (now - message.t) / 1000,
        }
        energy_uj = (step_pj + self._keyframe_pj / self.spec.keyframe_interval) / 1e6
        self.publish(
            "predictions",
            "prediction",
            message.t,
            {"probs": probs.astype(np.float32)},
            label=prediction.label,
            topk=[list(item) for item in prediction.topk],
            raw_label=prediction.raw_label,
            state="changed" if prediction.changed else "steady",
            t=message.t,
            latency_ms={k: round(v, 3) for k, v in latency.items()},
            energy_uj=round(energy_uj, 3),
            truth=message.meta.get("action"),
        )

    def _counted_pj(self) -> float:
        """Energy the op counter saw since its last reset (pJ), then reset it."""
        if self._counter is None:
            return 0.0
        energy = float(self._counter.counts().energy_pj)
        self._counter.reset()
        return energy

    def stats(self) -> dict[str, float]:
        return {"steps": float(self.steps)}

    def finish(self) -> None:
        self._hooks.close()
