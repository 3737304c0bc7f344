"""What a seed decides about a clip: performer, placement, backdrop, camera and distractors.

:func:`sample_variation` is a pure function of the seed and the config and does not depend on
the action, so classes rendered with one variation differ only in what the class does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from respike.synthetic.bodies import Body, sample_body
from respike.synthetic.colours import RGB, hsv_colour
from respike.synthetic.config import Framing, SceneConfig
from respike.synthetic.motion import Motion, sample_motion
from respike.synthetic.seeds import TAG_BODY, TAG_SCENE


@dataclass(frozen=True)
class Distractor:
    """A shape moving behind the performer along a smooth periodic path (pixels, Hz)."""

    kind: Literal["disc", "box", "bar"]
    colour: RGB
    size: float
    centre: tuple[float, float]
    sweep: tuple[float, float]
    frequency: float
    phase: float


@dataclass(frozen=True)
class Camera:
    """Camera nuisances: shake (px, Hz), exposure, lighting flicker and sensor noise."""

    shake_px: float = 0.0
    shake_frequencies: tuple[float, ...] = ()
    shake_phases: tuple[float, ...] = ()
    exposure: float = 1.0
    flicker: float = 0.0
    flicker_frequencies: tuple[float, ...] = ()
    flicker_phases: tuple[float, ...] = ()
    noise: float = 0.0

    def offset(self, t: float) -> tuple[int, int]:
        """Whole-pixel camera displacement (dx, dy) at time ``t``; the scene moves the other way."""
        if self.shake_px <= 0.0:
            return (0, 0)
        k = len(self.shake_frequencies) // 2
        if k == 0:
            return (0, 0)
        dx = dy = 0.0
        for i in range(k):
            dx += math.sin(2 * math.pi * self.shake_frequencies[i] * t + self.shake_phases[i])
            dy += math.sin(
                2 * math.pi * self.shake_frequencies[k + i] * t + self.shake_phases[k + i]
            )
        return (round(self.shake_px * dx / k), round(self.shake_px * dy / k))

    def gain(self, t: float) -> float:
        """Overall brightness factor at time ``t`` (exposure times flicker)."""
        wave = 0.0
        for f, p in zip(self.flicker_frequencies, self.flicker_phases, strict=True):
            wave += math.sin(2 * math.pi * f * t + p)
        if self.flicker_frequencies:
            wave /= len(self.flicker_frequencies)
        return self.exposure * (1.0 + self.flicker * wave)


@dataclass(frozen=True)
class Variation:
    """Everything a seed decides about a clip, independent of the action, in pixels.

    Two classes rendered with the same variation share performer, scene, camera and timing,
    which is what makes the appearance-only and time-only pairs exact.
    """

    seed: int
    width: int
    height: int
    framing: Framing
    body: Body
    motion: Motion
    centre_x: float
    ground_y: float
    figure_height: float
    background: str
    camera: Camera
    distractors: tuple[Distractor, ...] = ()
    object_luma: float = 110.0
    object_chroma: float = 0.9
    object_size: float = 1.0


def sample_variation(seed: int, config: SceneConfig) -> Variation:
    """Draw everything a clip's seed decides (performer, placement, scene, camera, timing).

    A pure function: the same seed and config always give the same variation, whatever the
    action, so classes rendered with one seed differ only by their motion or held object.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    w, h = config.width, config.height
    rng = np.random.default_rng([seed, TAG_SCENE])
    background = config.backgrounds[int(rng.integers(len(config.backgrounds)))]
    s = config.scale_jitter
    if config.framing == "full":
        figure_height = min(h * 0.7, w * 1.05) * (1.0 + rng.uniform(-s, s))
        ground_y = h * rng.uniform(0.93, 0.98)
    else:
        figure_height = min(h * 1.45, w * 1.6) * (1.0 + rng.uniform(-s, s))
        ground_y = h * rng.uniform(0.1, 0.2) + figure_height
    centre_x = w * (0.5 + rng.uniform(-1, 1) * config.position_jitter)
    side = min(w, h)
    camera = Camera(
        shake_px=float(config.shake * side * rng.uniform(0.4, 1.0)),
        shake_frequencies=tuple(float(f) for f in rng.uniform(0.6, 5.0, 6)),
        shake_phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 6)),
        exposure=float(rng.uniform(*config.exposure_range)),
        flicker=float(config.flicker * rng.uniform(0.3, 1.0)),
        flicker_frequencies=tuple(float(f) for f in rng.uniform(0.3, 6.0, 2)),
        flicker_phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 2)),
        noise=float(config.noise * rng.uniform(0.3, 1.0)),
    )
    moving = np.random.default_rng([seed, TAG_SCENE, 2])  # own stream: count varies by config
    distractors = tuple(
        Distractor(
            kind=("disc", "box", "bar")[int(moving.integers(3))],
            colour=hsv_colour(moving, (0.0, 0.5), (0.2, 0.95)),
            size=float(side * moving.uniform(0.04, 0.12)),
            centre=(float(w * moving.uniform(0.1, 0.9)), float(h * moving.uniform(0.1, 0.6))),
            sweep=(float(w * moving.uniform(0.05, 0.35)), float(h * moving.uniform(0.0, 0.15))),
            frequency=float(moving.uniform(0.1, 0.6)),
            phase=float(moving.uniform(0, 2 * math.pi)),
        )
        for _ in range(int(moving.integers(config.max_distractors + 1)))
    )
    object_luma = float(rng.uniform(80, 125))
    object_chroma = float(rng.uniform(0.75, 1.0))
    object_size = float(rng.uniform(0.85, 1.15))
    body = sample_body(np.random.default_rng([seed, TAG_BODY]), config)
    return Variation(
        seed=seed,
        width=w,
        height=h,
        framing=config.framing,
        body=body,
        motion=sample_motion(seed, config),
        centre_x=float(centre_x),
        ground_y=float(ground_y),
        figure_height=float(figure_height),
        background=background,
        camera=camera,
        distractors=distractors,
        object_luma=object_luma,
        object_chroma=object_chroma,
        object_size=object_size,
    )
