"""`residual`: camera frames to ReSpike residuals, emulated DVS events and key frames (numba)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from respike.nodes.base import Node, param, register
from respike.stream import kinds
from respike.stream.messages import Message

if TYPE_CHECKING:
    from respike.events.residual import ResidualFrames

log = logging.getLogger(__name__)


@register("residual")
class ResidualNode(Node):
    """Turns each RGB frame into a signed residual against its segment's key frame and/or events.

    - ``residual``: (C, h, w) float32 in [-1, 1], frame minus the key frame of its segment
      (key frames every ``stride`` frames), area-resampled to ``width`` x ``height``;
    - ``events``: an emulated DVS packet between the previous frame and this one (sub-frame
      timestamps on the capture clock), with the frame size as sensor size;
    - ``keyframes``: the RGB frame itself, every ``stride`` frames, for the key-frame ANN.

    ``checkpoint`` fits the residuals to what that model was trained on (its stride, size, colour
    and key-frame residual, read without torch), so a pipeline names the model once; a setting
    given beside it must agree with it. A frame of another size, channel count or dtype restarts
    the streams (the new frame becomes a key frame) and is counted as ``format_changes``; frames
    that are not (H, W[, 3]) uint8 or float32 are rejected with an error naming what was expected.
    """

    @dataclass(frozen=True)
    class Params:
        checkpoint: str = param(
            "", "fit the residuals to this checkpoint's input (path or shipped name)"
        )
        stride: int | None = param(
            None, "a key frame every this many frames; default: the checkpoint's, else ReSpike's 4"
        )
        width: int | None = param(
            None, "residual width; default: the checkpoint's, else the frame's"
        )
        height: int | None = param(
            None, "residual height; default: the checkpoint's, else the frame's"
        )
        color: str | None = param(
            None, "grey (1 channel) or rgb (3); default: the checkpoint's, else grey"
        )
        key_residual: str | None = param(
            None, "a key frame's residual, zero or previous; default: the checkpoint's, else zero"
        )
        residuals: bool = param(True, "publish residuals")
        events: bool = param(False, "publish emulated DVS events")
        keyframes: bool = param(True, "publish key frames")
        on_threshold: float = param(0.2, "DVS ON contrast threshold (log intensity)")
        off_threshold: float = param(0.2, "DVS OFF contrast threshold (log intensity)")
        threshold_mismatch: float = param(0.0, "per-pixel threshold spread (relative std)")
        refractory_us: int = param(0, "DVS refractory period per pixel (µs)")
        leak_rate_hz: float = param(0.0, "DVS leak events per pixel per second")
        shot_noise_rate_hz: float = param(0.0, "DVS shot-noise events per pixel per second")
        seed: int = param(0, "seed of the emulator's randomness")
        threads: int = param(0, "DVS emulation threads; 0 = the cores this node may use")

        def __post_init__(self) -> None:
            if not 0 <= self.threads <= 64:
                raise ValueError(f"threads {self.threads}; expected 0-64 (0: the node's cores)")
            if (self.width is None) != (self.height is None):
                raise ValueError("give width and height together")
            if not (self.residuals or self.events or self.keyframes):
                raise ValueError("enable at least one of residuals, events, keyframes")

    inputs = ("frames",)
    outputs = ("residual", "events", "keyframes")

    def start(self) -> None:
        from respike.events.emulator import DvsEmulator
        from respike.events.warmup import warm_up

        p = self.params
        threads = p.threads or min(64, len(os.sched_getaffinity(0)))
        if threads > 1:  # idle emulator threads sleep rather than spin on the model's core
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._residuals = fitted_residuals(p)
        self._emulator = DvsEmulator(
            on_threshold=p.on_threshold,
            off_threshold=p.off_threshold,
            threshold_mismatch=p.threshold_mismatch,
            refractory_us=p.refractory_us,
            leak_rate_hz=p.leak_rate_hz,
            shot_noise_rate_hz=p.shot_noise_rate_hz,
            channel_order="rgb",
            seed=p.seed,
            threads=threads,
        )
        kernels = (self._residuals, self._emulator) if p.events else (self._residuals,)
        log.info("%s: numba kernels ready in %.2f s", self.name, warm_up(*kernels))
        self._residual_state: Any = None
        self._dvs_state: Any = None
        self._previous_t: int | None = None
        self.frames = self.events_out = 0
        self.kernel_s = 0.0
        self.format_changes = 0
        self._last_stats = (time.monotonic(), 0)

    def on_message(self, port: str, message: Message) -> None:
        frame = message.arrays.get("frame")
        if frame is None:
            raise ValueError(
                f"{self.name}: a frame message needs arrays['frame']; got {sorted(message.arrays)}"
            )
        origin = kinds.Frame.read(message).origin()
        begin = time.perf_counter()
        residual, self._residual_state = self._residuals(frame, self._residual_state)
        if self._residual_state.format_changes != self.format_changes:
            self.format_changes = self._residual_state.format_changes
            log.warning("%s: frame format changed to %s; streams restarted", self.name, frame.shape)
            self._dvs_state = None
        events = self._emulate(frame, message.t) if self.params.events else None
        kernel_ms = (time.perf_counter() - begin) * 1000
        self.kernel_s += kernel_ms / 1000
        self.frames += 1
        latency = {"residual": round(kernel_ms, 3)}
        key_index = self._residual_state.key_index
        if self.params.keyframes and self._residual_state.is_key_frame:
            keyframe = kinds.Frame(**origin, key_index=key_index)
            self.publish("keyframes", keyframe, message.t, {"frame": frame})
        if self.params.residuals:
            step = kinds.Residual(
                **origin,
                key_index=key_index,
                key_residual=self._residuals.key_residual,
                latency_ms=latency,
            )
            self.publish("residual", step, message.t, {"residual": residual})
        if events is not None:
            height, width = frame.shape[:2]
            packet = kinds.Events(
                **origin,
                width=width,
                height=height,
                window_start=self._previous_t or message.t,
                window_end=message.t,
                key_index=key_index,
                latency_ms=latency,
            )
            self.publish("events", packet, message.t, {"events": events})
        self._previous_t = message.t

    def _emulate(self, frame: np.ndarray, t: int) -> np.ndarray:
        try:
            events, self._dvs_state = self._emulator(frame, t, self._dvs_state)
        except ValueError as exc:  # time went backwards or jumped: a new source or a restart
            log.warning("%s: restarting DVS emulation: %s", self.name, exc)
            events, self._dvs_state = self._emulator(frame, t, None)
        self.events_out += len(events)
        return events

    def stats(self) -> dict[str, float]:
        now = time.monotonic()
        last_t, last_events = self._last_stats
        self._last_stats = (now, self.events_out)
        return {
            "frames": float(self.frames),
            "events": float(self.events_out),
            "events_per_s": (self.events_out - last_events) / (now - last_t)
            if now > last_t
            else 0.0,
            "kernel_ms_mean": 1000 * self.kernel_s / self.frames if self.frames else 0.0,
            "format_changes": float(self.format_changes),
        }


def fitted_residuals(params: ResidualNode.Params) -> ResidualFrames:
    """The residual step a node with ``params`` runs on RGB frames: its checkpoint's, where it
    names one (the settings given beside it must agree), else the settings or their defaults."""
    from respike.events.residual import ResidualFrames

    given = {name: getattr(params, name) for name in FITTED}
    if params.width is not None:
        given["size"] = (params.width, params.height) if params.width else None
    del given["width"], given["height"]
    if not params.checkpoint:  # what is not given keeps the kernel's default
        return ResidualFrames(
            channel_order="rgb", **{k: v for k, v in given.items() if v is not None}
        )
    from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint

    fitted = read_checkpoint_info(resolve_checkpoint(params.checkpoint)).input_spec
    step = fitted.residual_frames("rgb")
    differ = [
        f"{name}={value!r} (it has {getattr(step, name)!r})"
        for name, value in given.items()
        if value is not None and value != getattr(step, name)
    ]
    if differ:
        raise ValueError(
            f"residual settings {', '.join(differ)} differ from what checkpoint "
            f"{params.checkpoint!r} was trained on; drop them to fit the checkpoint"
        )
    return step


FITTED = ("stride", "width", "height", "color", "key_residual")
"""The settings a ``checkpoint`` decides."""
