"""Procedural backdrops of the synthetic scenes, one generator per family.

Each family is a pure function of a random generator and a size that returns a float32 RGB
image; the held-out families (:data:`HELDOUT_BACKGROUNDS`) let a model be tested on backdrops it
never saw in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from respike.synthetic.colours import RGB, hsv_colour


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """Smooth fractal noise in [0, 1], shape (h, w), float32."""
    total = np.zeros((h, w), np.float32)
    weight = 1.0
    cells = float(rng.uniform(2.0, 5.0))
    for _ in range(octaves):
        gh = max(2, round(cells * h / max(h, w)) + 1)
        gw = max(2, round(cells * w / max(h, w)) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        total += weight * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        weight *= 0.5
        cells *= 2.1
    total -= total.min()
    total /= max(float(total.max()), 1e-6)
    return total


def _two_tone(t: np.ndarray, a: RGB, b: RGB) -> np.ndarray:
    ca, cb = np.array(a, np.float32), np.array(b, np.float32)
    return ca + t[..., None] * (cb - ca)


def _bg_gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.tau)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    a = hsv_colour(rng, (0.05, 0.6), (0.2, 1.0))
    b = hsv_colour(rng, (0.05, 0.6), (0.2, 1.0))
    img = _two_tone(ramp, a, b)
    r = np.hypot(xx / w - 0.5, yy / h - 0.5)
    img *= (1.0 - rng.uniform(0.1, 0.45) * r * r * 2)[..., None]
    return img


def _bg_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a = hsv_colour(rng, (0.05, 0.7), (0.1, 0.9))
    b = hsv_colour(rng, (0.05, 0.7), (0.2, 1.0))
    img = _two_tone(_value_noise(rng, h, w, octaves=5), a, b)
    fine = _value_noise(rng, h, w, octaves=2)
    img *= (0.85 + 0.3 * fine)[..., None]
    return img


def _bg_stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)])
    period = max(h, w) * rng.uniform(0.03, 0.2)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / period
    wave = np.sin(math.tau * u + rng.uniform(0, math.tau))
    t = np.clip(wave * rng.uniform(1.0, 8.0), -1.0, 1.0) * 0.5 + 0.5
    img = _two_tone(
        t, hsv_colour(rng, (0.1, 0.8), (0.2, 0.9)), hsv_colour(rng, (0.1, 0.8), (0.3, 1.0))
    )
    img *= (0.9 + 0.2 * _value_noise(rng, h, w, octaves=3))[..., None]
    return img


def _bg_tiles(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    size = max(3.0, max(h, w) * rng.uniform(0.04, 0.16))
    grout = max(1, round(size * rng.uniform(0.04, 0.12)))
    a = np.array(hsv_colour(rng, (0.05, 0.6), (0.3, 1.0)), np.float32)
    b = np.array(hsv_colour(rng, (0.05, 0.6), (0.2, 0.9)), np.float32)
    checker = rng.random() < 0.5
    stagger = rng.random() < 0.4
    rows, cols = int(h / size) + 2, int(w / size) + 2
    jitter = rng.uniform(0.85, 1.15, (rows, cols)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (yy / size).astype(np.int32)
    shifted = xx / size + (0.5 * (r % 2) if stagger else 0.0)
    c = shifted.astype(np.int32)
    choose = ((r + c) % 2 == 1) if checker else np.zeros((h, w), bool)
    img = np.where(choose[..., None], b, a) * jitter[r, c][..., None]
    fy = yy - r * size
    fx = (shifted - c) * size
    line = (fy < grout) | (fx < grout)
    img[line] = np.array(hsv_colour(rng, (0.0, 0.2), (0.1, 0.9)), np.float32)
    return img


def _random_shapes(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    h, w = img.shape[:2]
    side = max(h, w)
    for _ in range(count):
        colour = tuple(float(c) for c in hsv_colour(rng, (0.0, 0.9), (0.1, 1.0)))
        kind = int(rng.integers(5))
        cx, cy = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
        size = side * rng.uniform(0.02, 0.18)
        if kind == 0:
            x0, y0 = int(cx - size), int(cy - size * rng.uniform(0.3, 1.5))
            cv2.rectangle(img, (x0, y0), (int(cx + size), int(cy + size)), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(img, (int(cx), int(cy)), max(1, int(size)), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = (max(1, int(size)), max(1, int(size * rng.uniform(0.2, 1.0))))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(img, (int(cx), int(cy)), axes, angle, 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 3:
            pts = (np.array([cx, cy]) + rng.uniform(-size, size, (3, 2))).astype(np.int32)
            cv2.fillConvexPoly(img, pts, colour, cv2.LINE_AA)
        else:
            end = (int(cx + rng.uniform(-3, 3) * size), int(cy + rng.uniform(-3, 3) * size))
            thick = max(1, int(size * rng.uniform(0.05, 0.2)))
            cv2.line(img, (int(cx), int(cy)), end, colour, thick, cv2.LINE_AA)


def _bg_props(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plain wall with a few coloured objects on it: a model must learn that a red disc in
    the background is not a held ball (the held-out ``clutter`` has many more, on another base)."""
    base = _bg_gradient(rng, h, w) if rng.random() < 0.5 else _bg_noise(rng, h, w)
    _random_shapes(rng, base, int(rng.integers(4, 16)))
    return base


def _bg_clutter(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = _two_tone(
        _value_noise(rng, h, w, octaves=3),
        hsv_colour(rng, (0.0, 0.5), (0.2, 0.8)),
        hsv_colour(rng, (0.0, 0.5), (0.3, 0.9)),
    )
    count = int(rng.integers(15, 45))
    _random_shapes(rng, base, count)
    return base


def _bg_room(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    wall = _two_tone(
        _value_noise(rng, h, w, octaves=4) * 0.35,
        hsv_colour(rng, (0.0, 0.4), (0.35, 0.95)),
        hsv_colour(rng, (0.0, 0.4), (0.1, 0.6)),
    )
    floor_y = int(h * rng.uniform(0.62, 0.85))
    floor = hsv_colour(rng, (0.1, 0.6), (0.15, 0.7))
    planks = max(2, int(h * rng.uniform(0.015, 0.04)))
    for y in range(floor_y, h, planks):
        shade = rng.uniform(0.8, 1.15)
        wall[y : y + planks] = np.array(floor, np.float32) * shade
    wall[max(0, floor_y - max(1, h // 60)) : floor_y] = np.array(
        hsv_colour(rng, (0.0, 0.2), (0.6, 1.0)), np.float32
    )
    side = max(h, w)
    for _ in range(int(rng.integers(2, 6))):
        kind = int(rng.integers(4))
        x0 = int(rng.uniform(-0.05, 0.9) * w)
        bw = int(side * rng.uniform(0.08, 0.3))
        if kind == 0:  # window with a bright sky and bars
            y0, bh = int(h * rng.uniform(0.05, 0.3)), int(h * rng.uniform(0.15, 0.35))
            sky = hsv_colour(rng, (0.1, 0.5), (0.75, 1.0))
            cv2.rectangle(wall, (x0, y0), (x0 + bw, y0 + bh), (235, 235, 230), -1)
            pad = max(1, bw // 14)
            cv2.rectangle(wall, (x0 + pad, y0 + pad), (x0 + bw - pad, y0 + bh - pad), sky, -1)
            cv2.line(wall, (x0 + bw // 2, y0), (x0 + bw // 2, y0 + bh), (235, 235, 230), pad)
            cv2.line(wall, (x0, y0 + bh // 2), (x0 + bw, y0 + bh // 2), (235, 235, 230), pad)
        elif kind == 1:  # door
            top = int(h * rng.uniform(0.1, 0.3))
            colour = hsv_colour(rng, (0.2, 0.7), (0.2, 0.7))
            cv2.rectangle(wall, (x0, top), (x0 + int(bw * 0.7), floor_y), colour, -1)
            knob = (x0 + int(bw * 0.6), (top + floor_y) // 2)
            cv2.circle(wall, knob, max(1, bw // 25), (200, 180, 90), -1, cv2.LINE_AA)
        elif kind == 2:  # framed picture
            y0, bh = int(h * rng.uniform(0.05, 0.4)), int(h * rng.uniform(0.08, 0.2))
            cv2.rectangle(wall, (x0, y0), (x0 + bw, y0 + bh), (60, 45, 30), -1)
            pad = max(1, bw // 12)
            picture = wall[y0 + pad : y0 + bh - pad, x0 + pad : x0 + bw - pad]
            if picture.size:
                art = _bg_gradient(rng, *picture.shape[:2])
                _random_shapes(rng, art, 4)
                picture[:] = art
        else:  # low cabinet or shelf standing on the floor
            bh = int(h * rng.uniform(0.1, 0.3))
            colour = hsv_colour(rng, (0.1, 0.6), (0.2, 0.8))
            cv2.rectangle(wall, (x0, floor_y - bh), (x0 + bw, floor_y + 2), colour, -1)
            for k in range(1, 3):
                y = floor_y - bh * k // 3
                cv2.line(wall, (x0, y), (x0 + bw, y), (30, 30, 30), max(1, h // 120))
    return wall


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "gradient": _bg_gradient,
    "noise": _bg_noise,
    "stripes": _bg_stripes,
    "tiles": _bg_tiles,
    "props": _bg_props,
    "clutter": _bg_clutter,
    "room": _bg_room,
}

BACKGROUND_FAMILIES: tuple[str, ...] = tuple(_BACKGROUNDS)
"""Procedural background kinds; each clip draws one from ``SceneConfig.backgrounds``."""

TRAIN_BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "tiles", "props")
HELDOUT_BACKGROUNDS: tuple[str, ...] = ("clutter", "room")
"""A split of :data:`BACKGROUND_FAMILIES` for evaluating on backgrounds never seen in training."""


def background_image(family: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A backdrop of ``family``, (height, width, 3) float32 RGB in about 0..255, drawn from ``rng``."""
    return _BACKGROUNDS[family](rng, height, width)
