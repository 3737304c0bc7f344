"""Settings of the synthetic generator: what to render and how much each clip may vary."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from respike.synthetic.backgrounds import BACKGROUND_FAMILIES

Framing = Literal["full", "upper"]


@dataclass(frozen=True)
class SceneConfig:
    """What to render and how much to vary it; every range is sampled per clip from its seed.

    Size is in pixels, ``fps`` sets the frame times ``i / fps``. ``framing="full"`` shows the
    whole body; ``"upper"`` frames the waist up, like DVS Gesture. Jitters are relative
    (``scale_jitter=0.1``: figure height within ±10%); ``shake`` is the largest camera shake as a
    fraction of the shorter side, ``flicker`` the largest relative lighting fluctuation,
    ``noise`` the largest sensor-noise standard deviation in grey levels. Set a nuisance to 0 to
    switch it off.
    """

    width: int = 128
    height: int = 128
    fps: float = 30.0
    framing: Framing = "full"
    backgrounds: tuple[str, ...] = BACKGROUND_FAMILIES
    scale_jitter: float = 0.1
    position_jitter: float = 0.12
    proportion_jitter: float = 0.08
    speed_range: tuple[float, float] = (0.8, 1.25)
    amplitude_range: tuple[float, float] = (0.85, 1.15)
    exposure_range: tuple[float, float] = (0.8, 1.15)
    shake: float = 0.01
    flicker: float = 0.06
    noise: float = 3.0
    max_distractors: int = 2

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
                raise ValueError(f"{name} must be an int in 1..8192, got {value!r}")
        if not (isinstance(self.fps, int | float) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps!r}")
        if self.framing not in ("full", "upper"):
            raise ValueError(f"framing must be 'full' or 'upper', got {self.framing!r}")
        if not self.backgrounds:
            raise ValueError("backgrounds must name at least one family")
        unknown = [b for b in self.backgrounds if b not in BACKGROUND_FAMILIES]
        if unknown:
            raise ValueError(
                f"unknown background(s) {unknown}; known: {', '.join(BACKGROUND_FAMILIES)}"
            )
        for name, high in (
            ("scale_jitter", 0.5),
            ("position_jitter", 0.5),
            ("proportion_jitter", 0.3),
            ("shake", 0.2),
            ("flicker", 0.5),
            ("noise", 64.0),
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= high:
                raise ValueError(f"{name} must lie in [0, {high}], got {value!r}")
        for name in ("speed_range", "amplitude_range", "exposure_range"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 4.0:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 4")
        if not 0 <= self.max_distractors <= 16:
            raise ValueError(f"max_distractors must lie in 0..16, got {self.max_distractors}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.width, self.height)

    def clean(self) -> SceneConfig:
        """The same config without camera shake, flicker, exposure change, noise or distractors."""
        return replace(
            self, shake=0.0, flicker=0.0, noise=0.0, max_distractors=0, exposure_range=(1.0, 1.0)
        )
