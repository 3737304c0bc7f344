"""The performer: body proportions and colours, the skeleton, and its forward kinematics.

A pose is a vector of :data:`N_ANGLES` joint angles (what the motion programs produce); the
forward kinematics turn it into the image positions of :data:`JOINTS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from respike.synthetic.colours import RGB, hsv_colour
from respike.synthetic.config import SceneConfig


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


def _jitter(rng: np.random.Generator, value: float, amount: float) -> float:
    return value * (1.0 + rng.uniform(-amount, amount))


def sample_body(rng: np.random.Generator, config: SceneConfig) -> Body:
    """Draw a performer: proportions jittered by ``config.proportion_jitter``, random colours."""
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
        shirt=hsv_colour(rng, (0.15, 0.9), (0.2, 0.95)),
        trousers=hsv_colour(rng, (0.1, 0.7), (0.12, 0.7)),
        shoes=hsv_colour(rng, (0.0, 0.5), (0.05, 0.5)),
        long_sleeves=bool(rng.random() < 0.5),
        long_hair=bool(rng.random() < 0.35),
    )


# The joint angles of a pose, by index: torso lean, breathing bob, head tilt, then upper arm and
# forearm of the right (RU, RF) and left (LU, LF) arm, thigh and shin of the right (RT, RS) and
# left (LT, LS) leg. Limb angles use a per-side "lateral" convention, so a left-side pose is the
# mirror image of the same numbers on the right side: 0 points straight down, +pi/2 outward (away
# from the body's midline), pi straight up, -pi/2 inward across the body.
LEAN, BOB, HEAD, RU, RF, LU, LF, RT, RS, LT, LS = range(11)
N_ANGLES = 11

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

JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINTS)}
"""Row of each joint in :func:`joint_positions`' result."""


def joint_positions(
    angles: np.ndarray, body: Body, centre_x: float, ground_y: float, figure_height: float
) -> np.ndarray:
    """Joint positions (len(JOINTS), 2) in image pixels (x right, y down) from joint angles.

    The figure stands with its feet at ``ground_y``, centred on ``centre_x``, ``figure_height``
    pixels tall (body units are fractions of that height).
    """
    lean = float(angles[LEAN])
    cos_l, sin_l = math.cos(lean), math.sin(lean)
    hip_y = body.hip_y
    pts = np.empty((len(JOINTS), 2))

    def upper(x: float, y: float) -> tuple[float, float]:
        # the torso leans about the pelvis and breathes upward
        y = y - hip_y + angles[BOB]
        return (x * cos_l - y * sin_l, hip_y + x * sin_l + y * cos_l)

    def seg(x: float, y: float, side: float, angle: float, length: float) -> tuple[float, float]:
        return (x + side * length * math.sin(angle), y - length * math.cos(angle))

    def limb_rotated(
        x: float, y: float, side: float, angle: float, length: float
    ) -> tuple[float, float]:
        dx, dy = side * length * math.sin(angle), -length * math.cos(angle)
        return (x + dx * cos_l - dy * sin_l, y + dx * sin_l + dy * cos_l)

    pts[JOINT_INDEX["pelvis"]] = (0.0, hip_y)
    neck = upper(0.0, body.shoulder_y + 0.012)
    pts[JOINT_INDEX["neck"]] = neck
    head_len = body.neck + body.head_ry
    tilt = lean + angles[HEAD]
    pts[JOINT_INDEX["head"]] = (
        neck[0] - head_len * math.sin(tilt),
        neck[1] + head_len * math.cos(tilt),
    )
    for side, prefix, u, f in ((-1.0, "r", RU, RF), (1.0, "l", LU, LF)):
        shoulder = upper(side * body.shoulder_half, body.shoulder_y)
        elbow = limb_rotated(*shoulder, side, angles[u], body.upper_arm)
        wrist = limb_rotated(*elbow, side, angles[f], body.forearm)
        hand = limb_rotated(*wrist, side, angles[f], 0.035)
        pts[JOINT_INDEX[prefix + "_shoulder"]] = shoulder
        pts[JOINT_INDEX[prefix + "_elbow"]] = elbow
        pts[JOINT_INDEX[prefix + "_wrist"]] = wrist
        pts[JOINT_INDEX[prefix + "_hand"]] = hand
    for side, prefix, th, sh in ((-1.0, "r", RT, RS), (1.0, "l", LT, LS)):
        hip = (side * body.hip_half * 0.6, hip_y)
        knee = seg(*hip, side, angles[th], body.thigh)
        ankle = seg(*knee, side, angles[sh], body.shin)
        pts[JOINT_INDEX[prefix + "_hip"]] = hip
        pts[JOINT_INDEX[prefix + "_knee"]] = knee
        pts[JOINT_INDEX[prefix + "_ankle"]] = ankle
    scale = figure_height
    pts[:, 0] = centre_x + scale * pts[:, 0]
    pts[:, 1] = ground_y - scale * pts[:, 1]
    return pts
