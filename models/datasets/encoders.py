"""Frames or recorded events to model inputs, through the live path's own kernels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from respike.events import DvsEmulator, ResidualFrames
from respike.events.inputs import InputSpec
from respike.events.types import EventArray
from respike.models.ann import keyframe_tensor


@dataclass(frozen=True)
class FrameEncoder:
    """Frames to ``(keyframes, steps)`` through the residual or DVS kernels of the live path.

    ``spec`` decides everything: ``snn_input`` picks residuals (its
    :meth:`~respike.events.inputs.InputSpec.residual_frames`) or events (``dvs``, then its
    :meth:`~respike.events.inputs.InputSpec.event_frames` per frame interval), its sizes the
    outputs, ``time_bin_us`` the frame interval used as event time. ``channel_order`` is the
    order of the frames given (the synthetic generator renders RGB, OpenCV captures BGR);
    ``dvs.channel_order`` must match it.
    """

    spec: InputSpec
    channel_order: str = "rgb"
    dvs: DvsEmulator = field(default_factory=lambda: DvsEmulator(channel_order="rgb"))

    def __post_init__(self) -> None:
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order is {self.channel_order!r}; expected 'rgb' or 'bgr'")
        if self.dvs.channel_order != self.channel_order:
            raise ValueError(
                f"dvs.channel_order is {self.dvs.channel_order!r} but frames are "
                f"{self.channel_order!r}"
            )

    @property
    def events(self) -> bool:
        """Whether the SNN steps are binned emulator events (else residuals)."""
        return self.spec.snn_input == "events"

    @property
    def residual(self) -> ResidualFrames:
        """The residual kernel's settings for this spec."""
        return self.spec.residual_frames(self.channel_order)

    def frames_needed(self, steps: int) -> int:
        """Frames to render for ``steps`` steps (events need one more to prime the emulator)."""
        return steps + 1 if self.events else steps

    def encode(
        self, frames: npt.NDArray[np.uint8], dvs: DvsEmulator | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``keyframes (S, 3, Hk, Wk)`` and ``steps (T, C, h, w)`` of ``frames (N, H, W, 3)``.

        Residuals: ``T = N`` (a multiple of K). Events: ``T = N - 1``; frame ``i`` is taken at
        ``i * time_bin_us`` and step ``t`` holds the events between frames ``t`` and ``t + 1``;
        key frame ``s`` is frame ``1 + s * K``. ``dvs`` overrides the emulator settings (e.g.
        randomised thresholds per clip).
        """
        k = self.spec.keyframe_interval
        steps_count = len(frames) - (1 if self.events else 0)
        if steps_count < k or steps_count % k:
            raise ValueError(
                f"{len(frames)} frames give {steps_count} steps; expected a positive multiple "
                f"of K = {k} (events need one priming frame more)"
            )
        first = 1 if self.events else 0
        keyframes = np.stack(
            [
                keyframe_tensor(
                    frames[first + s],
                    (self.spec.keyframe_width, self.spec.keyframe_height),
                    self.channel_order,
                )
                for s in range(0, steps_count, k)
            ]
        )
        if self.events:
            steps = self._event_steps(frames, dvs or self.dvs)
        else:
            residual = self.residual
            state = None
            out = []
            for frame in frames:
                step, state = residual(frame, state)
                out.append(step)
            steps = np.stack(out)
        return keyframes, steps

    def _event_steps(
        self, frames: npt.NDArray[np.uint8], dvs: DvsEmulator
    ) -> npt.NDArray[np.float32]:
        if dvs.channel_order != self.channel_order:
            raise ValueError("the emulator's channel_order must match the frames'")
        height, width = frames.shape[1:3]
        binning = self.spec.event_frames((width, height))
        bin_us = self.spec.time_bin_us
        state = None
        out = []
        for i, frame in enumerate(frames):
            events, state = dvs(frame, i * bin_us, state)
            if i:
                out.append(binning(events, t_start=(i - 1) * bin_us, t_end=i * bin_us)[0])
        return np.stack(out).astype(np.float32, copy=False)


@dataclass(frozen=True)
class EventEncoder:
    """Recorded events to ``steps (T, 2, h, w)``: ``T`` bins of ``time_bin_us`` at ``snn_size``."""

    spec: InputSpec

    def encode(
        self, events: EventArray, sensor_size: tuple[int, int], t_start: int, steps: int
    ) -> npt.NDArray[np.float32]:
        """Counts of ``events`` in ``[t_start, t_start + steps * time_bin_us)`` per step."""
        if self.spec.snn_input != "events":
            raise ValueError("recorded events feed only a model whose snn_input is 'events'")
        binning = self.spec.event_frames((int(sensor_size[0]), int(sensor_size[1])), steps)
        end = int(t_start) + steps * self.spec.time_bin_us
        return np.asarray(binning(events, t_start=int(t_start), t_end=end), dtype=np.float32)


def no_keyframes(segments: int) -> torch.Tensor:
    """The ``keyframes`` of a frameless source: shape ``(S, 3, 0, 0)``."""
    return torch.zeros(segments, 3, 0, 0)
