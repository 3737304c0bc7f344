"""The viewer's images: frames, event counts and signed residuals as RGB, and their JPEG bytes.

Pure functions of arrays, so they can be tested and reused without a server or a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.events.images import rgb_image

IMAGE_KINDS = ("frame", "events", "residual")
"""Message kinds drawn as images; each is served as ``/<kind>.jpg``."""

ON_RGB = np.array([255, 72, 64], np.float32)
OFF_RGB = np.array([64, 144, 255], np.float32)
MIN_EVENT_LEVEL = 0.35
"""Brightness of a pixel with a single event, so sparse events stay visible at any count peak."""


def _diverging_lut() -> npt.NDArray[np.uint8]:
    """255 RGB colours from light blue (-1) through black (0, index 127) to orange (+1)."""
    stops = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    colours = np.array(
        [[110, 200, 255], [40, 110, 255], [0, 0, 0], [255, 60, 40], [255, 170, 90]], np.float64
    )
    s = np.linspace(-1.0, 1.0, 255)
    lut = np.stack([np.interp(s, stops, colours[:, c]) for c in range(3)], axis=1)
    return np.rint(lut).astype(np.uint8)


DIVERGING_LUT = _diverging_lut()


def event_image(
    packets: list[npt.NDArray[np.void]], width: int, height: int
) -> npt.NDArray[np.uint8]:
    """ON (red) and OFF (blue) event counts of ``packets`` as an (height, width, 3) RGB image.

    Brightness grows with the count up to the 99th percentile of the non-zero pixels, so one
    busy pixel does not darken the rest; events outside the sensor are left out.
    """
    size = width * height
    on = np.zeros(size, np.int64)
    off = np.zeros(size, np.int64)
    for events in packets:
        x = events["x"].astype(np.intp)
        y = events["y"].astype(np.intp)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        index = y[inside] * width + x[inside]
        is_on = events["p"][inside] > 0
        on += np.bincount(index[is_on], minlength=size)
        off += np.bincount(index[~is_on], minlength=size)
    hit = np.flatnonzero(on + off)  # events are sparse: colour only the pixels that have some
    on_hit, off_hit = on[hit], off[hit]
    peak = max(1.0, float(np.percentile(on_hit + off_hit, 99))) if hit.size else 1.0

    def level(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        scaled = MIN_EVENT_LEVEL + (1 - MIN_EVENT_LEVEL) * np.minimum(counts / peak, 1.0)
        return np.where(counts > 0, scaled, 0.0).astype(np.float32)

    rgb = np.zeros((size, 3), np.uint8)
    colours = level(on_hit)[:, None] * ON_RGB + level(off_hit)[:, None] * OFF_RGB
    rgb[hit] = np.clip(colours, 0, 255).astype(np.uint8)
    return rgb.reshape(height, width, 3)


def residual_image(residual: npt.ArrayLike, scale: float = 0.0) -> npt.NDArray[np.uint8]:
    """A signed residual (C, H, W) as a diverging RGB image: positive red, negative blue, 0 black.

    C = 1 is drawn as is, C = 3 (RGB) as its channel mean, C = 2 (OFF, ON polarity) as ON minus
    OFF. ``scale`` is the magnitude drawn at full colour; 0 takes the 99th percentile of the
    magnitudes, so faint residuals stay visible.
    """
    array = np.asarray(residual, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 2, 3) or array.size == 0:
        raise ValueError(f"residual has shape {array.shape}; expected (C, H, W) with C = 1, 2 or 3")
    if array.shape[0] == 1:
        values = array[0]
    elif array.shape[0] == 2:
        values = array[1] - array[0]
    else:
        values = array.mean(axis=0)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if scale <= 0:
        magnitude = np.abs(values[::2, ::2])  # a quarter of the pixels is plenty for a percentile
        scale = float(np.percentile(magnitude, 99)) if magnitude.size else 0.0
        scale = scale if scale > 1e-6 else max(float(magnitude.max(initial=0.0)), 1e-6)
    index = np.clip(np.rint(values * (127 / scale) + 127), 0, 254).astype(np.uint8)
    return DIVERGING_LUT[index]


def draw(
    kind: str, data: Any, info: Mapping[str, Any], residual_scale: float
) -> npt.NDArray[np.uint8]:
    """The RGB image of a panel's newest input of ``kind`` (one of :data:`IMAGE_KINDS`).

    ``data`` is a frame, a list of event packets or a residual; ``info`` gives the events'
    sensor ``width`` and ``height``; ``residual_scale`` is :func:`residual_image`'s ``scale``.
    """
    if kind == "frame":
        return rgb_image(data)
    if kind == "events":
        return event_image(data, max(1, info["width"]), max(1, info["height"]))
    return residual_image(data, residual_scale)


def encode_jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of an RGB image (OpenCV wants BGR, so the channels are swapped first)."""
    import cv2

    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {rgb.shape}")
    return bytes(data)
