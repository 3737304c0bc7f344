"""Colours of the synthetic scenes: the RGB types, random hues, shading and equal-luma objects.

The appearance classes rest on :func:`object_colour`: hues of one BT.601 grey level, so that the
grey image of a red and of a green object is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
"""An RGB frame, shape (H, W, 3), dtype uint8."""

RGB = tuple[int, int, int]


def _luma(colour: Sequence[float]) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def hsv_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> RGB:
    """A random RGB colour: any hue, saturation and value drawn from the given ranges (0..1)."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.uint8
    )
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return (int(r), int(g), int(b))


def shade(rgb: RGB, factor: float) -> RGB:
    """``rgb`` scaled by ``factor`` (a shadow below 1), clipped at 255."""
    return (
        min(255, round(rgb[0] * factor)),
        min(255, round(rgb[1] * factor)),
        min(255, round(rgb[2] * factor)),
    )


def tint(rgb: RGB, amount: float) -> RGB:
    """``rgb`` moved ``amount`` of the way to white (a highlight; keeps equal lumas equal)."""
    r, g, b = (round(c + (255 - c) * amount) for c in rgb)
    return (r, g, b)


def contrasting(rgb: RGB, backdrop: float, margin: float = 60.0) -> RGB:
    """``rgb`` made lighter or darker until its grey level is ``margin`` away from ``backdrop``."""
    luma = _luma(rgb)
    if abs(luma - backdrop) >= margin:
        return rgb
    target = backdrop - margin if backdrop >= 128 else backdrop + margin
    c = np.array(rgb, np.float64)
    if target < luma:
        c *= max(target, 0.0) / max(luma, 1e-6)
    else:
        c += (255.0 - c) * (target - luma) / max(255.0 - luma, 1e-6)
    r, g, b = np.clip(np.round(c), 0, 255).astype(int)
    return (int(r), int(g), int(b))


_OBJECT_HUES: dict[str, tuple[float, float, float]] = {
    # chroma directions of zero BT.601 luma: adding them changes hue, never grey level
    "red": (1.0, -0.299 / 0.701, -0.299 / 0.701),
    "green": (-0.587 / 0.413, 1.0, -0.587 / 0.413),
    "blue": (-0.114 / 0.886, -0.114 / 0.886, 1.0),
}


def object_colour(colour: str, luma: float, chroma: float) -> RGB:
    """An RGB colour of hue ``colour`` with BT.601 grey level ``luma``.

    ``chroma`` in (0, 1] is the fraction of the largest saturation that keeps every channel
    within 0..205.
    Every hue at one luma gives the same grey image: the appearance classes differ in colour only.
    """
    direction = _OBJECT_HUES[colour]
    # channels stay below 205 so that exposure and flicker gains do not clip them (clipping one
    # channel would change the grey level of one hue and not of the other)
    room = min(((205.0 - luma) / c) if c > 0 else (luma / -c) for c in direction)
    k = chroma * room
    return (
        round(luma + k * direction[0]),
        round(luma + k * direction[1]),
        round(luma + k * direction[2]),
    )
