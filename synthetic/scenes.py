"""Scenes of the synthetic generator: one performer placed in a backdrop, rendered at any time.

A :class:`Scene` pre-renders what stays fixed (backdrop, sensor-noise bank) and renders a frame
for any action at any time; :func:`render_clip` and :func:`contact_sheet` build on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from respike.synthetic.backgrounds import background_image
from respike.synthetic.bodies import joint_positions
from respike.synthetic.classes import CLASS_NAMES, HeldObject, class_id, get_class
from respike.synthetic.colours import Frame, contrasting
from respike.synthetic.config import SceneConfig
from respike.synthetic.drawing import draw_distractors, draw_figure, draw_held
from respike.synthetic.motion import Motion, joint_angles
from respike.synthetic.seeds import TAG_BACKGROUND, TAG_SCENE, hash_time
from respike.synthetic.variation import Variation, sample_variation


def render_background(variation: Variation, margin: int = 0) -> Frame:
    """The static backdrop of a clip (with ``margin`` extra pixels on each side for shake)."""
    h, w = variation.height + 2 * margin, variation.width + 2 * margin
    rng = np.random.default_rng([variation.seed, TAG_BACKGROUND])
    img = background_image(variation.background, rng, h, w)
    if variation.framing == "full":  # a soft contact shadow where the performer stands
        shadow = np.zeros((h, w), np.float32)
        centre = (variation.centre_x + margin, variation.ground_y + margin)
        axes = (variation.figure_height * 0.17, variation.figure_height * 0.03)
        cv2.ellipse(shadow, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1.0, -1, cv2.LINE_AA)
        blur = max(1, round(variation.figure_height * 0.02)) * 2 + 1
        img *= (1.0 - 0.45 * cv2.GaussianBlur(shadow, (blur, blur), 0))[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _visible_clothes(v: Variation, background: Frame, margin: int) -> Variation:
    """The variation with shirt and trousers set apart from the backdrop behind them.

    A camera operator would not film a performer who vanishes into the wall; the grey level of
    the backdrop around the torso and legs decides how far the clothes are lightened or darkened.
    """
    fh, x = v.figure_height, v.centre_x + margin
    grey = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape

    def mean_grey(top: float, bottom: float) -> float:
        y0, y1 = int(max(0, min(h - 1, top))), int(max(1, min(h, bottom)))
        x0, x1 = int(max(0, min(w - 1, x - 0.15 * fh))), int(max(1, min(w, x + 0.15 * fh)))
        patch = grey[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
        return float(patch.mean()) if patch.size else 128.0

    ground = v.ground_y + margin
    body = v.body
    shirt = contrasting(body.shirt, mean_grey(ground - 0.85 * fh, ground - 0.5 * fh))
    trousers = contrasting(body.trousers, mean_grey(ground - 0.5 * fh, ground), 45.0)
    return replace(v, body=replace(body, shirt=shirt, trousers=trousers))


def _place(angles: np.ndarray, v: Variation) -> np.ndarray:
    """Joint positions in image pixels of the variation's performer where it stands."""
    return joint_positions(angles, v.body, v.centre_x, v.ground_y, v.figure_height)


def pose_at(action: str | int, t: float, variation: Variation) -> np.ndarray:
    """Joint positions (len(JOINTS), 2) in image pixels of ``action`` at ``t`` seconds.

    The performer's own motion in the scene, without camera shake (which moves the whole image
    at render time). Equal for appearance-only pairs; time-reversed for temporal pairs.
    """
    return _place(joint_angles(action, t, variation.body, variation.motion), variation)


class Scene:
    """One performer in one scene, ready to render any action at any time.

    Construction draws the static background (with a margin for camera shake) and a bank of
    sensor noise once; :meth:`render` then costs only the drawing of the figure, the distractors
    and the camera effects. Shirt and trousers are lightened or darkened where they would vanish
    into the backdrop (:attr:`variation` holds the colours used). Immutable after construction,
    so one scene may render several classes, as the appearance and temporal pairs are.
    """

    def __init__(self, config: SceneConfig, variation: Variation) -> None:
        if (variation.width, variation.height) != config.size:
            raise ValueError(
                f"variation drawn for {variation.width}x{variation.height}, config is "
                f"{config.width}x{config.height}"
            )
        self.config = config
        self._margin = math.ceil(variation.camera.shake_px) + 1
        self._background = render_background(variation, self._margin)
        self._background.setflags(write=False)
        self.variation = _visible_clothes(variation, self._background, self._margin)
        h, w = config.height, config.width
        self._noise: tuple[np.ndarray, np.ndarray] | None = None
        if variation.camera.noise > 0:
            size = h * w * 3
            rng = np.random.default_rng([variation.seed, TAG_SCENE, 1])
            extra = max(size // 4, 3 * 4096)
            sample = rng.standard_normal(size + extra, dtype=np.float32) * variation.camera.noise
            sample = np.round(sample)
            pos = np.clip(sample, 0, 255).astype(np.uint8)
            neg = np.clip(-sample, 0, 255).astype(np.uint8)
            pos.setflags(write=False)
            neg.setflags(write=False)
            self._noise = (pos, neg)
            self._noise_span = extra

    def pose(self, action: str | int, t: float, motion: Motion | None = None) -> np.ndarray:
        """Joint positions of ``action`` at ``t`` (see :func:`pose_at`), with another motion."""
        v = self.variation
        return _place(joint_angles(action, t, v.body, motion or v.motion), v)

    def render(
        self,
        action: str | int,
        t: float,
        *,
        motion: Motion | None = None,
        motion_start: float = 0.0,
        out: Frame | None = None,
    ) -> Frame:
        """The RGB frame of ``action`` at time ``t`` seconds.

        The action is performed with ``motion`` (default: the variation's), started at
        ``motion_start``; the camera (shake, flicker, noise) and distractors follow ``t`` itself.
        ``out`` receives the frame when given (shape (H, W, 3), uint8).
        """
        v = self.variation
        angles = joint_angles(action, t - motion_start, v.body, motion or v.motion)
        return self.render_angles(angles, get_class(action).held, t, out=out)

    def render_angles(
        self, angles: np.ndarray, held: HeldObject | None, t: float, *, out: Frame | None = None
    ) -> Frame:
        """Render joint angles (from :func:`joint_angles`, or a blend of two) at time ``t``."""
        v, cam = self.variation, self.variation.camera
        h, w = self.config.height, self.config.width
        dx, dy = cam.offset(t)
        m = self._margin
        crop = self._background[m + dy : m + dy + h, m + dx : m + dx + w]
        if out is None:
            frame = crop.copy()
        else:
            if out.shape != (h, w, 3) or out.dtype != np.uint8:
                raise ValueError(f"out must be a ({h}, {w}, 3) uint8 array")
            np.copyto(out, crop)
            frame = out
        if v.distractors:
            draw_distractors(frame, v, t, dx, dy)
        pts = _place(angles, v)
        pts[:, 0] -= dx
        pts[:, 1] -= dy
        draw_figure(frame, pts, angles, v)
        if held is not None:
            draw_held(frame, held, pts, v)
        gain = cam.gain(t)
        if abs(gain - 1.0) > 1e-6:
            cv2.convertScaleAbs(frame, frame, gain)
        if self._noise is not None:
            pos, neg = self._noise
            start = hash_time(v.seed, t) % self._noise_span
            n = h * w * 3
            cv2.add(frame, pos[start : start + n].reshape(h, w, 3), frame)
            cv2.subtract(frame, neg[start : start + n].reshape(h, w, 3), frame)
        return frame


def render_clip(
    action: str | int,
    seed: int,
    num_frames: int,
    config: SceneConfig,
    *,
    start: float = 0.0,
) -> Frame:
    """Render ``num_frames`` frames of ``action`` at ``config.fps`` from ``start`` seconds.

    Returns an array of shape (num_frames, H, W, 3), uint8 RGB. Deterministic: the same
    arguments always give the same frames; the seed decides performer, scene, camera and timing
    (:func:`sample_variation`), so two classes with one seed differ only by what the class does.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    scene = Scene(config, sample_variation(seed, config))
    clip = np.empty((num_frames, config.height, config.width, 3), np.uint8)
    for i in range(num_frames):
        scene.render(action, start + i / config.fps, out=clip[i])
    return clip


def contact_sheet(
    config: SceneConfig,
    seed: int = 0,
    t: float = 0.5,
    classes: Sequence[str | int] | None = None,
    columns: int = 5,
) -> Frame:
    """One labelled frame per class on a grid (RGB), to see what the classes look like.

    Each class is rendered with its own seed (``seed + id``) at ``t`` seconds.
    The docs' picture is ``contact_sheet(SceneConfig(width=160, height=120, noise=0.0), seed=3)``
    (without sensor noise, which PNG cannot compress).
    """
    ids = [class_id(c) for c in (classes if classes is not None else CLASS_NAMES)]
    rows = -(-len(ids) // columns)
    label_h = 14
    h, w = config.height, config.width
    sheet = np.full((rows * (h + label_h), columns * w, 3), 255, np.uint8)
    for k, cid in enumerate(ids):
        r, c = divmod(k, columns)
        y0, x0 = r * (h + label_h), c * w
        sheet[y0 : y0 + h, x0 : x0 + w] = render_clip(cid, seed + cid, 1, config, start=t)[0]
        text = f"{cid}: {CLASS_NAMES[cid]}"
        cv2.putText(
            sheet,
            text,
            (x0 + 2, y0 + h + 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.3,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return sheet
