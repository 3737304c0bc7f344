"""Synthetic action generator: an articulated figure acting in a procedural scene, as RGB frames.

No dataset can be downloaded here, so respike makes its own training data and its own live
source with this module. A human-like figure (head, hair, torso, upper and lower arms, hands,
legs, shoes) performs one of :data:`CLASSES` in front of a textured, cluttered background, seen by
a camera that shakes, flickers and adds sensor noise while distractors move behind the performer.
Everything is drawn with OpenCV's anti-aliased primitives at sub-pixel precision, so frames of
any size and any frame rate come out smooth; it imports only numpy, OpenCV and the standard
library (no torch), so the demo's source node can use it while staying light.

The classes come in three groups (:data:`GROUPS`):

- ``gesture``: the 11 DVS Gesture classes, with DVS Gesture's names and order (ids 0-10, so
  ``CLASSES[i]`` is DVS Gesture label ``i + 1``; its class 11 is ``other``). As in DVS Gesture,
  "right"/"left" and "clockwise" are the performer's: the performer faces the camera, so the
  right arm is on the image's left and ``right_arm_clockwise`` turns counter-clockwise on screen
  (checked against the real recordings in ``../shared/data/dvs_gesture10``).
- ``appearance``: the same motion holding objects that differ only in colour, at equal luma
  (BT.601 grey) and equal shape, so the grey image, events and grey residuals of the two classes
  are identical and only an RGB key frame tells them apart.
- ``temporal``: pairs that are exact time reverses of each other (``swipe_left`` is
  ``swipe_right`` played backwards: a fast stroke one way and a slow return), so both classes
  visit the very same poses and any single frame is ambiguous; only the order of frames (the
  residual or event stream) tells them apart. The clockwise/counter-clockwise gestures are such
  pairs too; the left/right gestures are mirror images.

Everything is a pure function of a seed and of time in seconds: ``sample_variation(seed,
config)`` draws the performer, scene and camera; ``pose_at`` gives the joint positions at time
``t``; a :class:`Scene` pre-renders what stays fixed (background, sensor-noise bank) and renders a
frame for any action at any ``t``. Motion depends on seconds, not frame indices, so a clip at
30 fps and one at 60 fps show the same action. For a held-out evaluation, draw test clips with
seeds from :func:`split_seed` and, for unseen backgrounds too, a ``SceneConfig(backgrounds=
HELDOUT_BACKGROUNDS)`` while training on ``TRAIN_BACKGROUNDS``.

Example::

    from respike.models.synthetic import ActionStream, SceneConfig, render_clip

    config = SceneConfig(width=128, height=128, fps=30)
    clip = render_clip("right_hand_wave", seed=7, num_frames=32, config=config)  # (32,128,128,3)

    stream = ActionStream(config, seed=1)          # live source: actions change every few s
    frame, label, t = stream.next_frame()          # label indexes stream.class_names

    sheet = contact_sheet(config, seed=3)          # one frame per class, labelled (docs)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKGROUND_FAMILIES",
    "CLASSES",
    "CLASS_NAMES",
    "DVS_GESTURE_CLASSES",
    "GROUPS",
    "HELDOUT_BACKGROUNDS",
    "JOINTS",
    "MOTIONS",
    "SPLITS",
    "TRAIN_BACKGROUNDS",
    "ActionClass",
    "ActionStream",
    "Body",
    "Camera",
    "Distractor",
    "Frame",
    "HeldObject",
    "Motion",
    "Scene",
    "SceneConfig",
    "Segment",
    "Variation",
    "class_id",
    "class_names",
    "contact_sheet",
    "get_class",
    "joint_angles",
    "object_colour",
    "pose_at",
    "render_background",
    "render_clip",
    "sample_motion",
    "sample_variation",
    "split_seed",
]

Frame = npt.NDArray[np.uint8]
"""An RGB frame, shape (H, W, 3), dtype uint8."""

RGB = tuple[int, int, int]
Group = Literal["gesture", "appearance", "temporal"]
Framing = Literal["full", "upper"]

GROUPS: tuple[str, ...] = ("gesture", "appearance", "temporal")

BACKGROUND_FAMILIES: tuple[str, ...] = (
    "gradient",
    "noise",
    "stripes",
    "tiles",
    "props",
    "clutter",
    "room",
)
"""Procedural background kinds; each clip draws one from ``SceneConfig.backgrounds``."""

TRAIN_BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "tiles", "props")
HELDOUT_BACKGROUNDS: tuple[str, ...] = ("clutter", "room")
"""A split of :data:`BACKGROUND_FAMILIES` for evaluating on backgrounds never seen in training."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_SPAN = 1 << 40


# --------------------------------------------------------------------------------------------
# Classes


@dataclass(frozen=True)
class HeldObject:
    """An object the performer holds: its shape, colour name and which hand(s) hold it."""

    shape: Literal["ball", "box"]
    colour: Literal["red", "green", "blue"]
    hands: Literal["right", "both"]


@dataclass(frozen=True)
class ActionClass:
    """One action: its name, group, and how its motion derives from a motion program.

    ``motion`` names a motion program; ``mirror`` swaps the performer's sides (left-hand
    versions of right-hand gestures); ``reverse`` plays the program backwards in time.
    """

    name: str
    group: Group
    motion: str
    mirror: bool = False
    reverse: bool = False
    held: HeldObject | None = None


CLASSES: tuple[ActionClass, ...] = (
    ActionClass("hand_clapping", "gesture", "clap"),
    ActionClass("right_hand_wave", "gesture", "wave"),
    ActionClass("left_hand_wave", "gesture", "wave", mirror=True),
    ActionClass("right_arm_clockwise", "gesture", "circle"),
    ActionClass("right_arm_counter_clockwise", "gesture", "circle", reverse=True),
    ActionClass("left_arm_clockwise", "gesture", "circle", mirror=True, reverse=True),
    ActionClass("left_arm_counter_clockwise", "gesture", "circle", mirror=True),
    ActionClass("arm_roll", "gesture", "roll"),
    ActionClass("air_drums", "gesture", "drums"),
    ActionClass("air_guitar", "gesture", "guitar"),
    ActionClass("other", "gesture", "other"),
    ActionClass("shake_red_ball", "appearance", "shake", held=HeldObject("ball", "red", "right")),
    ActionClass(
        "shake_green_ball", "appearance", "shake", held=HeldObject("ball", "green", "right")
    ),
    ActionClass("lift_red_box", "appearance", "lift", held=HeldObject("box", "red", "both")),
    ActionClass("lift_blue_box", "appearance", "lift", held=HeldObject("box", "blue", "both")),
    ActionClass("swipe_right", "temporal", "swipe_horizontal"),
    ActionClass("swipe_left", "temporal", "swipe_horizontal", reverse=True),
    ActionClass("swipe_up", "temporal", "swipe_vertical"),
    ActionClass("swipe_down", "temporal", "swipe_vertical", reverse=True),
)
"""Every class, in id order: the 11 DVS Gesture classes first (ids 0-10), then the others."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
DVS_GESTURE_CLASSES: tuple[str, ...] = CLASS_NAMES[:11]
"""DVS Gesture's 11 classes in its label order (label ``k`` is ``DVS_GESTURE_CLASSES[k - 1]``)."""

_ALIASES = {"other_gestures": "other"}  # tonic's and the original mapping file's spelling
_BY_NAME = {c.name: i for i, c in enumerate(CLASSES)}


def class_names(*groups: str) -> tuple[str, ...]:
    """Names of the classes in ``groups`` (all classes when none is given), in id order."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    return tuple(c.name for c in CLASSES if not groups or c.group in groups)


def class_id(action: str | int) -> int:
    """The id (index into :data:`CLASSES`) of a class given by name or id."""
    if isinstance(action, bool) or not isinstance(action, int | str):
        raise TypeError(f"a class is a name or an int id, not {type(action).__name__}")
    if isinstance(action, int):
        if not 0 <= action < len(CLASSES):
            raise ValueError(f"class id {action} out of range 0..{len(CLASSES) - 1}")
        return action
    name = _ALIASES.get(action, action)
    if name not in _BY_NAME:
        raise ValueError(f"unknown class {action!r}; known: {', '.join(CLASS_NAMES)}")
    return _BY_NAME[name]


def get_class(action: str | int) -> ActionClass:
    """The :class:`ActionClass` of a class given by name or id."""
    return CLASSES[class_id(action)]


def split_seed(split: str, index: int) -> int:
    """Seed number ``index`` of ``split``; the splits' seeds never overlap.

    Training, validation and test clips drawn with ``split_seed("train", i)``,
    ``split_seed("val", i)`` and ``split_seed("test", i)`` never share a performer, scene or
    background instance.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not 0 <= index < _SPLIT_SPAN:
        raise ValueError(f"seed index {index} out of range 0..{_SPLIT_SPAN - 1}")
    return SPLITS.index(split) * _SPLIT_SPAN + index


# --------------------------------------------------------------------------------------------
# Settings and sampled variation


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


@dataclass(frozen=True)
class Body:
    """The performer: proportions in units of body height, clothing and skin colours (RGB)."""

    shoulder_y: float
    shoulder_half: float
    hip_y: float
    hip_half: float
    neck: float
    head_rx: float
    head_ry: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    limb: float
    skin: RGB
    hair: RGB
    shirt: RGB
    trousers: RGB
    shoes: RGB
    long_sleeves: bool
    long_hair: bool

    @property
    def arm(self) -> float:
        """Shoulder-to-wrist length."""
        return self.upper_arm + self.forearm


@dataclass(frozen=True)
class Motion:
    """How an action is performed: speed factor, start phase (s), amplitude and a free seed.

    ``seed`` drives the freestyle ``other`` class; the rest scale the motion programs.
    """

    speed: float = 1.0
    phase: float = 0.0
    amplitude: float = 1.0
    seed: int = 0


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


_TAG_BODY, _TAG_MOTION, _TAG_SCENE, _TAG_BACKGROUND, _TAG_STREAM, _TAG_OTHER = range(1, 7)

_SKIN_TONES: tuple[RGB, ...] = (
    (255, 224, 196),
    (241, 194, 160),
    (224, 172, 128),
    (198, 134, 95),
    (161, 102, 68),
    (111, 70, 45),
    (84, 52, 36),
)
_HAIR: tuple[RGB, ...] = (
    (20, 16, 14),
    (58, 38, 26),
    (110, 72, 40),
    (178, 140, 86),
    (150, 60, 30),
    (128, 128, 128),
    (225, 215, 190),
)


def _luma(colour: Sequence[float]) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _hsv_colour(
    rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]
) -> RGB:
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.uint8
    )
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return (int(r), int(g), int(b))


def _jitter(rng: np.random.Generator, value: float, amount: float) -> float:
    return value * (1.0 + rng.uniform(-amount, amount))


def _sample_body(rng: np.random.Generator, config: SceneConfig) -> Body:
    j = config.proportion_jitter
    return Body(
        shoulder_y=_jitter(rng, 0.815, j * 0.15),
        shoulder_half=_jitter(rng, 0.118, j),
        hip_y=_jitter(rng, 0.5, j * 0.2),
        hip_half=_jitter(rng, 0.095, j),
        neck=_jitter(rng, 0.035, j),
        head_rx=_jitter(rng, 0.058, j * 0.6),
        head_ry=_jitter(rng, 0.072, j * 0.6),
        upper_arm=_jitter(rng, 0.17, j * 0.5),
        forearm=_jitter(rng, 0.145, j * 0.5),
        thigh=_jitter(rng, 0.235, j * 0.3),
        shin=_jitter(rng, 0.23, j * 0.3),
        limb=_jitter(rng, 1.0, j * 2),
        skin=_SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))],
        hair=_HAIR[int(rng.integers(len(_HAIR)))],
        shirt=_hsv_colour(rng, (0.15, 0.9), (0.2, 0.95)),
        trousers=_hsv_colour(rng, (0.1, 0.7), (0.12, 0.7)),
        shoes=_hsv_colour(rng, (0.0, 0.5), (0.05, 0.5)),
        long_sleeves=bool(rng.random() < 0.5),
        long_hair=bool(rng.random() < 0.35),
    )


def sample_motion(seed: int, config: SceneConfig) -> Motion:
    """Draw speed, phase, amplitude and the freestyle seed of one performance."""
    rng = np.random.default_rng([seed, _TAG_MOTION])
    return Motion(
        speed=float(rng.uniform(*config.speed_range)),
        phase=float(rng.uniform(0.0, 10.0)),
        amplitude=float(rng.uniform(*config.amplitude_range)),
        seed=int(rng.integers(1 << 31)),
    )


def sample_variation(seed: int, config: SceneConfig) -> Variation:
    """Draw everything a clip's seed decides (performer, placement, scene, camera, timing).

    A pure function: the same seed and config always give the same variation, whatever the
    action, so classes rendered with one seed differ only by their motion or held object.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    w, h = config.width, config.height
    rng = np.random.default_rng([seed, _TAG_SCENE])
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
    moving = np.random.default_rng([seed, _TAG_SCENE, 2])  # own stream: count varies by config
    distractors = tuple(
        Distractor(
            kind=("disc", "box", "bar")[int(moving.integers(3))],
            colour=_hsv_colour(moving, (0.0, 0.5), (0.2, 0.95)),
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
    body = _sample_body(np.random.default_rng([seed, _TAG_BODY]), config)
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


# --------------------------------------------------------------------------------------------
# Motion programs: joint angles as functions of motion time (seconds)
#
# Angles use a per-side "lateral" convention, so a left-side pose is the mirror image of the
# same numbers on the right side: 0 points straight down, +pi/2 outward (away from the body's
# midline), pi straight up, -pi/2 inward across the body. Hand targets are (outward, upward)
# offsets from the shoulder in units of the arm's length.

_LEAN, _BOB, _HEAD, _RU, _RF, _LU, _LF, _RT, _RS, _LT, _LS = range(11)
_N_ANGLES = 11
_TWO_PI = 2 * math.pi


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _stroke(tau: float, period: float, fast: float = 0.28) -> float:
    """0 -> 1 quickly (the first ``fast`` of the period), then back to 0 slowly."""
    x = (tau / period) % 1.0
    if x < fast:
        return _smoothstep(x / fast)
    return 1.0 - _smoothstep((x - fast) / (1.0 - fast))


def _ik(
    out: float, up: float, upper_share: float, pole: tuple[float, float]
) -> tuple[float, float]:
    """Two-bone inverse kinematics: lateral angles of upper arm and forearm reaching a target.

    Of the two elbow positions, the one nearer ``pole`` (a lateral direction) is taken.
    """
    l1, l2 = upper_share, 1.0 - upper_share
    r = math.hypot(out, up)
    reach = min(max(r, abs(l1 - l2) + 1e-3), 1.0 - 1e-4)
    base = math.atan2(up, out) if r > 1e-9 else -math.pi / 2
    cos_a = (l1 * l1 + reach * reach - l2 * l2) / (2 * l1 * reach)
    spread = math.acos(min(max(cos_a, -1.0), 1.0))
    ex, ey = max(
        ((l1 * math.cos(theta), l1 * math.sin(theta)) for theta in (base + spread, base - spread)),
        key=lambda e: e[0] * pole[0] + e[1] * pole[1],
    )
    hx, hy = reach * math.cos(base), reach * math.sin(base)
    return (math.atan2(ex, -ey), math.atan2(hx - ex, -(hy - ey)))


_DOWN_OUT = (0.55, -0.85)


def _idle(tau: float) -> np.ndarray:
    """Standing still but alive: sway, breathing, head movement and weight shift."""
    a = np.zeros(_N_ANGLES)
    a[_LEAN] = 0.025 * math.sin(_TWO_PI * 0.21 * tau + 0.7)
    a[_BOB] = 0.004 * math.sin(_TWO_PI * 0.31 * tau)
    a[_HEAD] = 0.05 * math.sin(_TWO_PI * 0.17 * tau + 1.3)
    shift = 0.012 * math.sin(_TWO_PI * 0.13 * tau)
    a[_RT], a[_LT] = 0.07 + shift, 0.07 - shift
    a[_RS], a[_LS] = 0.03 + 0.5 * shift, 0.03 - 0.5 * shift
    a[_RU] = 0.14 + 0.02 * math.sin(_TWO_PI * 0.37 * tau)
    a[_RF] = 0.1 + 0.03 * math.sin(_TWO_PI * 0.37 * tau + 0.5)
    a[_LU] = 0.14 + 0.02 * math.sin(_TWO_PI * 0.33 * tau + 2.0)
    a[_LF] = 0.1 + 0.03 * math.sin(_TWO_PI * 0.33 * tau + 2.5)
    return a


def _set_arm(a: np.ndarray, side: str, angles: tuple[float, float]) -> None:
    u, f = (_RU, _RF) if side == "right" else (_LU, _LF)
    a[u], a[f] = angles


def _motion_clap(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Both hands meet in front of the chest and part again, about twice a second."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    gap = 0.5 * (1.0 - math.cos(_TWO_PI * tau / 0.55))
    share = body.upper_arm / body.arm
    target = (-w + 0.07 + amp * 0.36 * gap, -0.38 + 0.04 * gap)
    for side in ("right", "left"):
        _set_arm(a, side, _ik(*target, share, _DOWN_OUT))
    return a


def _motion_wave(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Upper arm raised to the side, the forearm swinging to and fro above it."""
    a = _idle(tau)
    swing = math.sin(_TWO_PI * tau / 0.75)
    _set_arm(a, "right", (1.95 + 0.08 * swing, math.pi - 0.05 + amp * 0.5 * swing))
    return a


def _motion_circle(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """The straight right arm turns full circles (clockwise as the performer sees it)."""
    a = _idle(tau)
    angle = -_TWO_PI * tau / 1.0
    _set_arm(a, "right", (angle, angle - 0.12 * amp))
    return a


def _motion_roll(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Forearms in front of the chest rolling round each other, hands in opposite phase."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    share = body.upper_arm / body.arm
    s = _TWO_PI * tau / 0.55
    for side, offset in (("right", 0.0), ("left", math.pi)):
        out = -w + 0.3 + amp * 0.07 * math.cos(s + offset)
        up = -0.42 + amp * 0.12 * math.sin(s + offset)
        _set_arm(a, side, _ik(out, up, share, _DOWN_OUT))
    return a


def _motion_drums(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Both hands beat up and down in turn in front of the belly."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    share = body.upper_arm / body.arm
    s = _TWO_PI * tau / 0.5
    for side, offset in (("right", 0.0), ("left", math.pi)):
        beat = math.sin(s + offset) + 0.25 * math.sin(2 * (s + offset))
        _set_arm(a, side, _ik(-w + 0.42, -0.55 + amp * 0.16 * beat, share, _DOWN_OUT))
    return a


def _motion_guitar(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Right hand strumming at the hip, left hand out on an invisible neck."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    share = body.upper_arm / body.arm
    strum = math.sin(_TWO_PI * tau / 0.32)
    _set_arm(a, "right", _ik(-w + 0.32, -0.82 + amp * 0.13 * strum, share, _DOWN_OUT))
    fret = 0.03 * math.sin(_TWO_PI * tau / 1.7)
    _set_arm(a, "left", _ik(0.42 + fret, -0.5 + 0.5 * fret, share, (0.2, -1.0)))
    a[_LEAN] += 0.04
    return a


@functools.lru_cache(maxsize=512)
def _freestyle(seed: int) -> tuple[tuple[float, ...], ...]:
    """Per-arm random smooth paths of the ``other`` class: centre, amplitudes, Hz, phases."""
    rng = np.random.default_rng([seed, _TAG_OTHER])
    arms = []
    for _ in range(2):
        active = rng.random() < 0.75
        centre = (rng.uniform(-0.5, 0.6), rng.uniform(-0.85, 0.45)) if active else (0.12, -0.95)
        amps = rng.uniform(0.08, 0.3, 4) if active else np.full(4, 0.02)
        freqs = rng.uniform(0.12, 0.7, 4)
        phases = rng.uniform(0, _TWO_PI, 4)
        arms.append(
            (
                float(centre[0]),
                float(centre[1]),
                *map(float, amps),
                *map(float, freqs),
                *map(float, phases),
            )
        )
    return tuple(arms)


def _motion_other(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Freestyle: each arm follows its own smooth random path (from the motion's seed)."""
    a = _idle(tau)
    share = body.upper_arm / body.arm
    for side, p in zip(("right", "left"), _freestyle(seed), strict=True):
        cx, cy, amps, freqs, phases = p[0], p[1], p[2:6], p[6:10], p[10:14]
        out = cx + sum(
            amps[k] * math.sin(_TWO_PI * freqs[k] * tau + phases[k]) for k in range(0, 4, 2)
        )
        up = cy + sum(
            amps[k] * math.sin(_TWO_PI * freqs[k] * tau + phases[k]) for k in range(1, 4, 2)
        )
        _set_arm(a, side, _ik(out, up, share, _DOWN_OUT))
    return a


def _motion_shake(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Right hand holding something up beside the head and shaking it."""
    a = _idle(tau)
    share = body.upper_arm / body.arm
    s = _TWO_PI * tau / 0.36
    target = (0.3 + 0.025 * math.cos(s), 0.3 + amp * 0.08 * math.sin(s))
    _set_arm(a, "right", _ik(*target, share, _DOWN_OUT))
    return a


def _motion_lift(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Both hands lift something from the waist to above the head and lower it again."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    share = body.upper_arm / body.arm
    lift = 0.5 * (1.0 - math.cos(_TWO_PI * tau / 2.2))
    target = (-w + 0.3, -0.85 + amp * 1.6 * lift)
    for side in ("right", "left"):
        _set_arm(a, side, _ik(*target, share, _DOWN_OUT))
    return a


def _motion_swipe_horizontal(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Right hand sweeps fast outward across the chest, then drifts slowly back."""
    a = _idle(tau)
    w = body.shoulder_half / body.arm
    share = body.upper_arm / body.arm
    p = _stroke(tau, 1.3)
    out = -w - 0.3 + amp * 1.05 * p
    up = -0.32 + 0.12 * math.sin(math.pi * p)
    _set_arm(a, "right", _ik(out, up, share, _DOWN_OUT))
    return a


def _motion_swipe_vertical(tau: float, body: Body, amp: float, seed: int) -> np.ndarray:
    """Right hand sweeps fast upward in front of the body, then sinks slowly back."""
    a = _idle(tau)
    share = body.upper_arm / body.arm
    p = _stroke(tau, 1.3)
    out = 0.05 + 0.08 * math.sin(math.pi * p)
    up = -0.85 + amp * 1.25 * p
    _set_arm(a, "right", _ik(out, up, share, _DOWN_OUT))
    return a


_MotionProgram = Callable[[float, Body, float, int], np.ndarray]

MOTIONS: dict[str, _MotionProgram] = {
    "clap": _motion_clap,
    "wave": _motion_wave,
    "circle": _motion_circle,
    "roll": _motion_roll,
    "drums": _motion_drums,
    "guitar": _motion_guitar,
    "other": _motion_other,
    "shake": _motion_shake,
    "lift": _motion_lift,
    "swipe_horizontal": _motion_swipe_horizontal,
    "swipe_vertical": _motion_swipe_vertical,
}
"""Motion programs by name: ``program(tau, body, amplitude, seed) -> joint angles``."""


def _mirror(a: np.ndarray) -> np.ndarray:
    m = a.copy()
    m[[_RU, _RF, _LU, _LF, _RT, _RS, _LT, _LS]] = a[[_LU, _LF, _RU, _RF, _LT, _LS, _RT, _RS]]
    m[_LEAN], m[_HEAD] = -a[_LEAN], -a[_HEAD]
    return m


def joint_angles(action: str | int, t: float, body: Body, motion: Motion) -> np.ndarray:
    """Joint angles of ``action`` at ``t`` seconds into the performance (the motion's state).

    Motion time is ``motion.speed * t + motion.phase``; a ``reverse`` class runs its program at
    minus that time, a ``mirror`` class swaps the performer's sides.
    """
    spec = get_class(action)
    tau = motion.speed * t + motion.phase
    if spec.reverse:
        tau = -tau
    angles = MOTIONS[spec.motion](tau, body, motion.amplitude, motion.seed)
    return _mirror(angles) if spec.mirror else angles


# --------------------------------------------------------------------------------------------
# Forward kinematics

JOINTS: tuple[str, ...] = (
    "head",
    "neck",
    "pelvis",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "r_hand",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "l_hand",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
)
"""Joint names of :func:`pose_at`'s rows; ``r_``/``l_`` are the performer's right and left."""

_J = {name: i for i, name in enumerate(JOINTS)}


def _forward(angles: np.ndarray, body: Body, variation: Variation) -> np.ndarray:
    """Joint positions in image pixels (x right, y down) from joint angles."""
    lean = float(angles[_LEAN])
    cos_l, sin_l = math.cos(lean), math.sin(lean)
    hip_y = body.hip_y
    pts = np.empty((len(JOINTS), 2))

    def upper(x: float, y: float) -> tuple[float, float]:
        # the torso leans about the pelvis and breathes upward
        y = y - hip_y + angles[_BOB]
        return (x * cos_l - y * sin_l, hip_y + x * sin_l + y * cos_l)

    def seg(x: float, y: float, side: float, angle: float, length: float) -> tuple[float, float]:
        return (x + side * length * math.sin(angle), y - length * math.cos(angle))

    def limb_rotated(
        x: float, y: float, side: float, angle: float, length: float
    ) -> tuple[float, float]:
        dx, dy = side * length * math.sin(angle), -length * math.cos(angle)
        return (x + dx * cos_l - dy * sin_l, y + dx * sin_l + dy * cos_l)

    pts[_J["pelvis"]] = (0.0, hip_y)
    neck = upper(0.0, body.shoulder_y + 0.012)
    pts[_J["neck"]] = neck
    head_len = body.neck + body.head_ry
    tilt = lean + angles[_HEAD]
    pts[_J["head"]] = (neck[0] - head_len * math.sin(tilt), neck[1] + head_len * math.cos(tilt))
    for side, prefix, u, f in ((-1.0, "r", _RU, _RF), (1.0, "l", _LU, _LF)):
        shoulder = upper(side * body.shoulder_half, body.shoulder_y)
        elbow = limb_rotated(*shoulder, side, angles[u], body.upper_arm)
        wrist = limb_rotated(*elbow, side, angles[f], body.forearm)
        hand = limb_rotated(*wrist, side, angles[f], 0.035)
        pts[_J[prefix + "_shoulder"]] = shoulder
        pts[_J[prefix + "_elbow"]] = elbow
        pts[_J[prefix + "_wrist"]] = wrist
        pts[_J[prefix + "_hand"]] = hand
    for side, prefix, th, sh in ((-1.0, "r", _RT, _RS), (1.0, "l", _LT, _LS)):
        hip = (side * body.hip_half * 0.6, hip_y)
        knee = seg(*hip, side, angles[th], body.thigh)
        ankle = seg(*knee, side, angles[sh], body.shin)
        pts[_J[prefix + "_hip"]] = hip
        pts[_J[prefix + "_knee"]] = knee
        pts[_J[prefix + "_ankle"]] = ankle
    scale = variation.figure_height
    pts[:, 0] = variation.centre_x + scale * pts[:, 0]
    pts[:, 1] = variation.ground_y - scale * pts[:, 1]
    return pts


def pose_at(action: str | int, t: float, variation: Variation) -> np.ndarray:
    """Joint positions (len(JOINTS), 2) in image pixels of ``action`` at ``t`` seconds.

    The performer's own motion in the scene, without camera shake (which moves the whole image
    at render time). Equal for appearance-only pairs; time-reversed for temporal pairs.
    """
    return _forward(
        joint_angles(action, t, variation.body, variation.motion), variation.body, variation
    )


# --------------------------------------------------------------------------------------------
# Backgrounds


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
    angle = rng.uniform(0, _TWO_PI)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    a = _hsv_colour(rng, (0.05, 0.6), (0.2, 1.0))
    b = _hsv_colour(rng, (0.05, 0.6), (0.2, 1.0))
    img = _two_tone(ramp, a, b)
    r = np.hypot(xx / w - 0.5, yy / h - 0.5)
    img *= (1.0 - rng.uniform(0.1, 0.45) * r * r * 2)[..., None]
    return img


def _bg_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a = _hsv_colour(rng, (0.05, 0.7), (0.1, 0.9))
    b = _hsv_colour(rng, (0.05, 0.7), (0.2, 1.0))
    img = _two_tone(_value_noise(rng, h, w, octaves=5), a, b)
    fine = _value_noise(rng, h, w, octaves=2)
    img *= (0.85 + 0.3 * fine)[..., None]
    return img


def _bg_stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)])
    period = max(h, w) * rng.uniform(0.03, 0.2)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / period
    wave = np.sin(_TWO_PI * u + rng.uniform(0, _TWO_PI))
    t = np.clip(wave * rng.uniform(1.0, 8.0), -1.0, 1.0) * 0.5 + 0.5
    img = _two_tone(
        t, _hsv_colour(rng, (0.1, 0.8), (0.2, 0.9)), _hsv_colour(rng, (0.1, 0.8), (0.3, 1.0))
    )
    img *= (0.9 + 0.2 * _value_noise(rng, h, w, octaves=3))[..., None]
    return img


def _bg_tiles(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    size = max(3.0, max(h, w) * rng.uniform(0.04, 0.16))
    grout = max(1, round(size * rng.uniform(0.04, 0.12)))
    a = np.array(_hsv_colour(rng, (0.05, 0.6), (0.3, 1.0)), np.float32)
    b = np.array(_hsv_colour(rng, (0.05, 0.6), (0.2, 0.9)), np.float32)
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
    img[line] = np.array(_hsv_colour(rng, (0.0, 0.2), (0.1, 0.9)), np.float32)
    return img


def _random_shapes(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    h, w = img.shape[:2]
    side = max(h, w)
    for _ in range(count):
        colour = tuple(float(c) for c in _hsv_colour(rng, (0.0, 0.9), (0.1, 1.0)))
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
        _hsv_colour(rng, (0.0, 0.5), (0.2, 0.8)),
        _hsv_colour(rng, (0.0, 0.5), (0.3, 0.9)),
    )
    count = int(rng.integers(15, 45))
    _random_shapes(rng, base, count)
    return base


def _bg_room(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    wall = _two_tone(
        _value_noise(rng, h, w, octaves=4) * 0.35,
        _hsv_colour(rng, (0.0, 0.4), (0.35, 0.95)),
        _hsv_colour(rng, (0.0, 0.4), (0.1, 0.6)),
    )
    floor_y = int(h * rng.uniform(0.62, 0.85))
    floor = _hsv_colour(rng, (0.1, 0.6), (0.15, 0.7))
    planks = max(2, int(h * rng.uniform(0.015, 0.04)))
    for y in range(floor_y, h, planks):
        shade = rng.uniform(0.8, 1.15)
        wall[y : y + planks] = np.array(floor, np.float32) * shade
    wall[max(0, floor_y - max(1, h // 60)) : floor_y] = np.array(
        _hsv_colour(rng, (0.0, 0.2), (0.6, 1.0)), np.float32
    )
    side = max(h, w)
    for _ in range(int(rng.integers(2, 6))):
        kind = int(rng.integers(4))
        x0 = int(rng.uniform(-0.05, 0.9) * w)
        bw = int(side * rng.uniform(0.08, 0.3))
        if kind == 0:  # window with a bright sky and bars
            y0, bh = int(h * rng.uniform(0.05, 0.3)), int(h * rng.uniform(0.15, 0.35))
            sky = _hsv_colour(rng, (0.1, 0.5), (0.75, 1.0))
            cv2.rectangle(wall, (x0, y0), (x0 + bw, y0 + bh), (235, 235, 230), -1)
            pad = max(1, bw // 14)
            cv2.rectangle(wall, (x0 + pad, y0 + pad), (x0 + bw - pad, y0 + bh - pad), sky, -1)
            cv2.line(wall, (x0 + bw // 2, y0), (x0 + bw // 2, y0 + bh), (235, 235, 230), pad)
            cv2.line(wall, (x0, y0 + bh // 2), (x0 + bw, y0 + bh // 2), (235, 235, 230), pad)
        elif kind == 1:  # door
            top = int(h * rng.uniform(0.1, 0.3))
            colour = _hsv_colour(rng, (0.2, 0.7), (0.2, 0.7))
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
            colour = _hsv_colour(rng, (0.1, 0.6), (0.2, 0.8))
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


def render_background(variation: Variation, margin: int = 0) -> Frame:
    """The static backdrop of a clip (with ``margin`` extra pixels on each side for shake)."""
    h, w = variation.height + 2 * margin, variation.width + 2 * margin
    rng = np.random.default_rng([variation.seed, _TAG_BACKGROUND])
    img = _BACKGROUNDS[variation.background](rng, h, w)
    if variation.framing == "full":  # a soft contact shadow where the performer stands
        shadow = np.zeros((h, w), np.float32)
        centre = (variation.centre_x + margin, variation.ground_y + margin)
        axes = (variation.figure_height * 0.17, variation.figure_height * 0.03)
        cv2.ellipse(shadow, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1.0, -1, cv2.LINE_AA)
        blur = max(1, round(variation.figure_height * 0.02)) * 2 + 1
        img *= (1.0 - 0.45 * cv2.GaussianBlur(shadow, (blur, blur), 0))[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Drawing

_SHIFT = 4
_ONE = 1 << _SHIFT
_ARC = np.linspace(-math.pi / 2, math.pi / 2, 7)


def _fixed(x: float) -> int:
    return round(x * _ONE)


def _point(p: Sequence[float]) -> tuple[int, int]:
    return (round(p[0] * _ONE), round(p[1] * _ONE))


def _colour(rgb: Sequence[float]) -> tuple[float, float, float]:
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


def _capsule(img: Frame, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, rgb: RGB) -> None:
    """A limb: a tapered segment with round ends, one anti-aliased convex polygon."""
    r0, r1 = max(r0, 0.5), max(r1, 0.5)
    theta = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
    ang = theta + _ARC
    cos, sin = np.cos(ang), np.sin(ang)
    pts = np.concatenate(
        [
            np.stack([p1[0] + r1 * cos, p1[1] + r1 * sin], 1),
            np.stack([p0[0] - r0 * cos, p0[1] - r0 * sin], 1),
        ]
    )
    cv2.fillConvexPoly(
        img, np.round(pts * _ONE).astype(np.int32), _colour(rgb), cv2.LINE_AA, _SHIFT
    )


def _ellipse(
    img: Frame, centre: Sequence[float], axes: tuple[float, float], angle: float, rgb: RGB
) -> None:
    cv2.ellipse(
        img,
        _point(centre),
        (max(1, _fixed(axes[0])), max(1, _fixed(axes[1]))),
        angle,
        0,
        360,
        _colour(rgb),
        -1,
        cv2.LINE_AA,
        _SHIFT,
    )


def _shade(rgb: RGB, factor: float) -> RGB:
    return (
        min(255, round(rgb[0] * factor)),
        min(255, round(rgb[1] * factor)),
        min(255, round(rgb[2] * factor)),
    )


def _tint(rgb: RGB, amount: float) -> RGB:
    """``rgb`` moved ``amount`` of the way to white (a highlight; keeps equal lumas equal)."""
    r, g, b = (round(c + (255 - c) * amount) for c in rgb)
    return (r, g, b)


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


def _draw_held(img: Frame, held: HeldObject, pts: np.ndarray, v: Variation) -> None:
    fh = v.figure_height
    rgb = object_colour(held.colour, v.object_luma, v.object_chroma)
    if held.shape == "ball":
        wrist, hand = pts[_J["r_wrist"]], pts[_J["r_hand"]]
        d = hand - wrist
        d = d / max(float(np.hypot(*d)), 1e-6)
        radius = 0.05 * fh * v.object_size
        centre = hand + d * radius * 0.7
        _ellipse(img, centre, (radius, radius), 0.0, _shade(rgb, 0.72))
        _ellipse(img, centre - radius * 0.12, (radius * 0.86, radius * 0.86), 0.0, rgb)
        glint = centre - radius * 0.38
        _ellipse(img, glint, (radius * 0.22, radius * 0.22), 0.0, _tint(rgb, 0.45))
        _capsule(img, wrist, hand, 0.018 * fh, 0.02 * fh, v.body.skin)
    else:
        right, left = pts[_J["r_hand"]], pts[_J["l_hand"]]
        centre = 0.5 * (right + left)
        half_w = 0.5 * float(np.hypot(*(left - right))) + 0.005 * fh
        half_h = 0.065 * fh * v.object_size
        angle = math.atan2(left[1] - right[1], left[0] - right[0])
        ux = np.array([math.cos(angle), math.sin(angle)])
        uy = np.array([-ux[1], ux[0]])
        corners = [
            centre + sx * half_w * ux + sy * half_h * uy
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        poly = np.round(np.array(corners) * _ONE).astype(np.int32)
        cv2.fillConvexPoly(img, poly, _colour(rgb), cv2.LINE_AA, _SHIFT)
        band = [
            centre + sx * half_w * ux + sy * 0.18 * half_h * uy
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        poly = np.round(np.array(band) * _ONE).astype(np.int32)
        cv2.fillConvexPoly(img, poly, _colour(_shade(rgb, 0.7)), cv2.LINE_AA, _SHIFT)
        for hand in (right, left):
            _ellipse(img, hand, (0.022 * fh, 0.022 * fh), 0.0, v.body.skin)


def _draw_figure(img: Frame, pts: np.ndarray, angles: np.ndarray, v: Variation) -> None:
    """Draw the performer from its joint positions, back to front."""
    b, fh = v.body, v.figure_height
    limb = b.limb * fh
    p = {name: pts[i] for i, name in enumerate(JOINTS)}
    # legs and shoes
    for s in ("r", "l"):
        _capsule(img, p[s + "_hip"], p[s + "_knee"], 0.048 * limb, 0.038 * limb, b.trousers)
        _capsule(img, p[s + "_knee"], p[s + "_ankle"], 0.038 * limb, 0.03 * limb, b.trousers)
        foot = p[s + "_ankle"] + np.array([(-1 if s == "r" else 1) * 0.02 * fh, 0.012 * fh])
        _ellipse(img, foot, (0.045 * fh, 0.022 * fh), 0.0, b.shoes)
    # torso: trousers block, shirt trapezoid, neck
    lean = float(angles[_LEAN])
    cos_l, sin_l = math.cos(lean), math.sin(lean)
    pelvis = p["pelvis"]

    def body_point(x: float, y: float) -> np.ndarray:
        # (x, y) in body units relative to the pelvis, y up, rotated by the lean
        return pelvis + fh * np.array([x * cos_l - y * sin_l, -(x * sin_l + y * cos_l)])

    hips = [
        body_point(sx * b.hip_half, dy)
        for sx, dy in ((-1, 0.04), (1, 0.04), (1, -0.06), (-1, -0.06))
    ]
    cv2.fillConvexPoly(
        img,
        np.round(np.array(hips) * _ONE).astype(np.int32),
        _colour(b.trousers),
        cv2.LINE_AA,
        _SHIFT,
    )
    top = b.shoulder_y - b.hip_y + float(angles[_BOB]) + 0.02
    shirt = [
        body_point(-b.shoulder_half * 1.02, top),
        body_point(b.shoulder_half * 1.02, top),
        body_point(b.shoulder_half * 0.98, top - 0.06),
        body_point(b.hip_half * 1.02, 0.03),
        body_point(-b.hip_half * 1.02, 0.03),
        body_point(-b.shoulder_half * 0.98, top - 0.06),
    ]
    cv2.fillConvexPoly(
        img,
        np.round(np.array(shirt) * _ONE).astype(np.int32),
        _colour(b.shirt),
        cv2.LINE_AA,
        _SHIFT,
    )
    belt = [
        body_point(sx * b.hip_half * 1.02, dy)
        for sx, dy in ((-1, 0.045), (1, 0.045), (1, 0.025), (-1, 0.025))
    ]
    cv2.fillConvexPoly(
        img,
        np.round(np.array(belt) * _ONE).astype(np.int32),
        _colour(_shade(b.trousers, 0.6)),
        cv2.LINE_AA,
        _SHIFT,
    )
    for s in ("r", "l"):
        _ellipse(img, p[s + "_shoulder"], (0.034 * limb, 0.034 * limb), 0.0, b.shirt)
    # head: long hair behind, neck, face, hair cap, eyes
    head, neck = p["head"], p["neck"]
    tilt = lean + float(angles[_HEAD])
    tilt_deg = -math.degrees(tilt)
    rx, ry = b.head_rx * fh, b.head_ry * fh
    up = np.array([-math.sin(tilt), -math.cos(tilt)])
    right = np.array([up[1] * -1, up[0]])
    if b.long_hair:
        _capsule(img, head, head - up * ry * 1.15, rx * 1.1, rx * 0.9, b.hair)
    _capsule(
        img,
        neck - up * 0.01 * fh,
        head - up * ry * 0.5,
        0.022 * limb,
        0.024 * limb,
        _shade(b.skin, 0.9),
    )
    _ellipse(img, head + up * ry * 0.06, (rx * 1.06, ry * 1.04), tilt_deg, b.hair)
    _ellipse(img, head - up * ry * 0.1, (rx * 0.95, ry * 0.9), tilt_deg, b.skin)
    if rx >= 6.0:  # smaller faces read better without features
        eye = rx * 0.1
        for sx in (-1.0, 1.0):
            _ellipse(
                img, head + right * sx * rx * 0.38 - up * ry * 0.02, (eye, eye), 0.0, (30, 25, 25)
            )
        if rx >= 8.0:
            mouth = head - up * ry * 0.45
            _capsule(
                img,
                mouth - right * rx * 0.22,
                mouth + right * rx * 0.22,
                rx * 0.04,
                rx * 0.04,
                _shade(b.skin, 0.6),
            )
    # arms, in front of the torso
    sleeve = b.shirt if b.long_sleeves else b.skin
    for s in ("r", "l"):
        _capsule(img, p[s + "_shoulder"], p[s + "_elbow"], 0.033 * limb, 0.027 * limb, b.shirt)
        _capsule(img, p[s + "_elbow"], p[s + "_wrist"], 0.026 * limb, 0.02 * limb, sleeve)
        if not b.long_sleeves:
            _ellipse(img, p[s + "_elbow"], (0.027 * limb, 0.027 * limb), 0.0, b.skin)
        _capsule(img, p[s + "_wrist"], p[s + "_hand"], 0.019 * fh, 0.024 * fh, b.skin)


def _draw_distractors(img: Frame, v: Variation, t: float, dx: int, dy: int) -> None:
    for d in v.distractors:
        s = _TWO_PI * d.frequency * t + d.phase
        centre = (
            d.centre[0] + d.sweep[0] * math.sin(s) - dx,
            d.centre[1] + d.sweep[1] * math.sin(2 * s) - dy,
        )
        if d.kind == "disc":
            _ellipse(img, centre, (d.size, d.size), 0.0, d.colour)
        elif d.kind == "box":
            box = (
                (centre[0], centre[1]),
                (2 * d.size, 1.4 * d.size),
                math.degrees(0.3 * math.sin(s)),
            )
            pts = cv2.boxPoints(box)
            cv2.fillConvexPoly(
                img, np.round(pts * _ONE).astype(np.int32), _colour(d.colour), cv2.LINE_AA, _SHIFT
            )
        else:
            angle = s * 2.0
            tip = np.array([math.cos(angle), math.sin(angle)]) * d.size * 1.6
            c = np.array(centre)
            _capsule(img, c - tip, c + tip, d.size * 0.18, d.size * 0.18, d.colour)


# --------------------------------------------------------------------------------------------
# Rendering


def _hash_time(seed: int, t: float) -> int:
    """A well-mixed 64-bit number from a seed and a time (splitmix64 of both)."""
    x = (seed * 0x9E3779B97F4A7C15 + round(t * 1e6) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _contrasting(rgb: RGB, backdrop: float, margin: float = 60.0) -> RGB:
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
    shirt = _contrasting(body.shirt, mean_grey(ground - 0.85 * fh, ground - 0.5 * fh))
    trousers = _contrasting(body.trousers, mean_grey(ground - 0.5 * fh, ground), 45.0)
    return replace(v, body=replace(body, shirt=shirt, trousers=trousers))


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
            rng = np.random.default_rng([variation.seed, _TAG_SCENE, 1])
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
        return _forward(joint_angles(action, t, v.body, motion or v.motion), v.body, v)

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
            _draw_distractors(frame, v, t, dx, dy)
        pts = _forward(angles, v.body, v)
        pts[:, 0] -= dx
        pts[:, 1] -= dy
        _draw_figure(frame, pts, angles, v)
        if held is not None:
            _draw_held(frame, held, pts, v)
        gain = cam.gain(t)
        if abs(gain - 1.0) > 1e-6:
            cv2.convertScaleAbs(frame, frame, gain)
        if self._noise is not None:
            pos, neg = self._noise
            start = _hash_time(v.seed, t) % self._noise_span
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


# --------------------------------------------------------------------------------------------
# Live source


class Segment(NamedTuple):
    """One stretch of an :class:`ActionStream`: which class, when, and how it is performed."""

    label: int
    name: str
    start: float
    end: float
    motion: Motion


class ActionStream:
    """An endless, seeded live source: one performer switching between actions every few seconds.

    Each call of :meth:`next_frame` returns the next frame at ``config.fps``, the ground-truth
    label of that frame (an index into :attr:`class_names`) and its time in seconds. Segments
    last ``segment_seconds`` (uniform in the range), pick their class at random (never the same
    class twice in a row when there is a choice) and their own speed, phase and amplitude; the
    pose blends from the old action into the new one over ``transition_seconds``, while the
    label switches at the segment's start. With ``new_scene_every=n`` the performer and scene
    change every ``n`` segments.
    """

    def __init__(
        self,
        config: SceneConfig,
        seed: int,
        *,
        classes: Sequence[str | int] | None = None,
        segment_seconds: tuple[float, float] = (2.0, 4.0),
        transition_seconds: float = 0.3,
        new_scene_every: int = 0,
    ) -> None:
        ids = [class_id(c) for c in (classes if classes is not None else CLASS_NAMES)]
        if not ids:
            raise ValueError("classes must name at least one class")
        if len(set(ids)) != len(ids):
            raise ValueError("classes must not repeat")
        low, high = segment_seconds
        if not 0 < low <= high:
            raise ValueError("segment_seconds must be (low, high) with 0 < low <= high")
        if not 0 <= transition_seconds <= low:
            raise ValueError("transition_seconds must lie in [0, segment_seconds[0]]")
        if new_scene_every < 0:
            raise ValueError("new_scene_every must be >= 0")
        self.config = config
        self.seed = int(seed)
        self.class_names: tuple[str, ...] = tuple(CLASS_NAMES[i] for i in ids)
        self.segment_seconds = (float(low), float(high))
        self.transition_seconds = float(transition_seconds)
        self.new_scene_every = new_scene_every
        self._ids = ids
        self._rng = np.random.default_rng([self.seed, _TAG_STREAM])
        self._index = 0
        self._number = 0
        self._scene = self._make_scene(0)
        self._previous: Segment | None = None
        self._segment = self._draw_segment(0.0, None)

    @property
    def scene(self) -> Scene:
        """The scene being rendered now."""
        return self._scene

    @property
    def segment(self) -> Segment:
        """The segment of the most recent frame (the next one before the first call)."""
        return self._segment

    @property
    def frame_index(self) -> int:
        """How many frames have been returned."""
        return self._index

    def _make_scene(self, number: int) -> Scene:
        seed = int(np.random.default_rng([self.seed, _TAG_STREAM, number]).integers(1 << 62))
        return Scene(self.config, sample_variation(seed, self.config))

    def _draw_segment(self, start: float, previous: Segment | None) -> Segment:
        choices = [k for k in range(len(self._ids)) if previous is None or k != previous.label]
        label = int(choices[int(self._rng.integers(len(choices)))]) if choices else 0
        duration = float(self._rng.uniform(*self.segment_seconds))
        motion = sample_motion(int(self._rng.integers(1 << 62)), self.config)
        return Segment(label, self.class_names[label], start, start + duration, motion)

    def next_frame(self) -> tuple[Frame, int, float]:
        """The next frame (H, W, 3) RGB uint8, its label and its time in seconds."""
        t = self._index / self.config.fps
        while t >= self._segment.end:
            self._previous = self._segment
            self._segment = self._draw_segment(self._segment.end, self._segment)
            self._number += 1
            if self.new_scene_every and self._number % self.new_scene_every == 0:
                self._scene = self._make_scene(self._number // self.new_scene_every)
                self._previous = None  # a new scene is a cut: nothing to blend from
        seg = self._segment
        body = self._scene.variation.body
        angles = joint_angles(seg.name, t - seg.start, body, seg.motion)
        since = t - seg.start
        previous = self._previous
        if previous is not None and since < self.transition_seconds:
            old = joint_angles(previous.name, t - previous.start, body, previous.motion)
            weight = _smoothstep(since / self.transition_seconds)
            diff = (angles - old + math.pi) % _TWO_PI - math.pi  # turn the short way round
            angles = old + weight * diff
        held = get_class(seg.name).held
        frame = self._scene.render_angles(angles, held, t)
        self._index += 1
        return frame, seg.label, t

    def __iter__(self) -> Iterator[tuple[Frame, int, float]]:
        while True:
            yield self.next_frame()
