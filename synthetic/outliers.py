"""Scenes with nobody acting in them: what an open-set rule learns to call ``no action``.

Kinds (:data:`OUTLIER_KINDS` are what a shipped checkpoint's rule is calibrated on):

- ``texture``: coloured 1/f^a noise (the power spectrum of natural images, ``a`` in 1-2) seen by
  a camera that pans, with sensor noise: a stand-in for the world outside the synthetic one.
- ``empty``: a training-family backdrop without the performer, panned and slowly zoomed: the
  synthetic world with no action in it.
- ``still``: the performer holding one pose in front of the camera, which shakes, flickers and
  adds noise as in the training clips: what someone teaching records as background.

Frames are RGB uint8 at ``config``'s size and rate; everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from respike.synthetic.classes import CLASS_NAMES, get_class
from respike.synthetic.colours import Frame
from respike.synthetic.config import SceneConfig
from respike.synthetic.motion import joint_angles
from respike.synthetic.scenes import Scene, render_background
from respike.synthetic.variation import sample_variation

OUTLIER_KINDS: tuple[str, ...] = ("texture", "empty")
KINDS: tuple[str, ...] = (*OUTLIER_KINDS, "still")
_TAG_OUTLIER = 0x0DD5


def outlier_clip(kind: str, seed: int, num_frames: int, config: SceneConfig) -> Frame:
    """``num_frames`` frames ``(N, H, W, 3)`` of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"outlier kind {kind!r}; expected one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, _TAG_OUTLIER, KINDS.index(kind)])
    w, h = config.width, config.height
    if kind == "still":
        return _still(rng, seed, num_frames, config)
    if kind == "texture":
        canvas = _pink_noise(rng, 2 * h, 2 * w, rng.uniform(1.0, 2.0))
    else:
        big = replace(config, width=2 * w, height=2 * h)
        canvas = render_background(sample_variation(seed, big))
    speed = rng.uniform(0.5, 4.0) * w / 160 / config.fps * 30  # pixels per frame at 30 fps
    angle = rng.uniform(0, 2 * np.pi)
    zoom = rng.uniform(-0.004, 0.004) if kind == "empty" else 0.0
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    centre = np.array([canvas.shape[1] / 2, canvas.shape[0] / 2])
    for i in range(num_frames):
        shift = centre + speed * i * np.array([np.cos(angle), np.sin(angle)])
        scale = 1.0 + zoom * i
        matrix = np.array(
            [[scale, 0, shift[0] - scale * w / 2], [0, scale, shift[1] - scale * h / 2]]
        )
        cv2.warpAffine(
            canvas,
            matrix,
            (w, h),
            dst=frames[i],
            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
    if config.noise > 0:
        noise = rng.normal(0.0, config.noise, frames.shape)
        frames[:] = np.clip(frames + noise, 0, 255).astype(np.uint8)
    return frames


def _still(rng: np.random.Generator, seed: int, num_frames: int, config: SceneConfig) -> Frame:
    """The seed's performer frozen in the pose of a random action at a random time."""
    scene = Scene(config, sample_variation(seed, config))
    action = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    v = scene.variation
    angles = joint_angles(action, float(rng.uniform(0, 2)), v.body, v.motion)
    held = get_class(action).held
    return np.stack([scene.render_angles(angles, held, i / config.fps) for i in range(num_frames)])


def _pink_noise(rng: np.random.Generator, h: int, w: int, exponent: float) -> Frame:
    """Colour noise with a 1/f^exponent amplitude spectrum, mixed across channels, 0-255."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)
        plane = np.fft.irfft2(spectrum / radius**exponent, s=(h, w))
        channels.append((plane - plane.mean()) / (plane.std() + 1e-9))
    image = np.stack(channels, -1) @ rng.uniform(0.2, 1.0, (3, 3))
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / (high - low + 1e-9) * 255, 0, 255).astype(np.uint8)


__all__ = ["KINDS", "OUTLIER_KINDS", "outlier_clip"]
