"""Drawing of the synthetic scenes: the performer, held objects and distractors, with OpenCV.

Every shape is an anti-aliased OpenCV primitive at sub-pixel precision (fixed-point
coordinates with 4 fractional bits), so frames of any size come out smooth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from respike.synthetic.bodies import BOB, HEAD, JOINT_INDEX, JOINTS, LEAN
from respike.synthetic.classes import HeldObject
from respike.synthetic.colours import RGB, Frame, object_colour, shade, tint
from respike.synthetic.variation import Variation

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


def draw_held(img: Frame, held: HeldObject, pts: np.ndarray, v: Variation) -> None:
    """Draw ``held`` in the performer's hand(s); ``pts`` are the joint positions in the frame."""
    fh = v.figure_height
    rgb = object_colour(held.colour, v.object_luma, v.object_chroma)
    if held.shape == "ball":
        wrist, hand = pts[JOINT_INDEX["r_wrist"]], pts[JOINT_INDEX["r_hand"]]
        d = hand - wrist
        d = d / max(float(np.hypot(*d)), 1e-6)
        radius = 0.05 * fh * v.object_size
        centre = hand + d * radius * 0.7
        _ellipse(img, centre, (radius, radius), 0.0, shade(rgb, 0.72))
        _ellipse(img, centre - radius * 0.12, (radius * 0.86, radius * 0.86), 0.0, rgb)
        glint = centre - radius * 0.38
        _ellipse(img, glint, (radius * 0.22, radius * 0.22), 0.0, tint(rgb, 0.45))
        _capsule(img, wrist, hand, 0.018 * fh, 0.02 * fh, v.body.skin)
    else:
        right, left = pts[JOINT_INDEX["r_hand"]], pts[JOINT_INDEX["l_hand"]]
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
        cv2.fillConvexPoly(img, poly, _colour(shade(rgb, 0.7)), cv2.LINE_AA, _SHIFT)
        for hand in (right, left):
            _ellipse(img, hand, (0.022 * fh, 0.022 * fh), 0.0, v.body.skin)


def draw_figure(img: Frame, pts: np.ndarray, angles: np.ndarray, v: Variation) -> None:
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
    lean = float(angles[LEAN])
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
    top = b.shoulder_y - b.hip_y + float(angles[BOB]) + 0.02
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
        _colour(shade(b.trousers, 0.6)),
        cv2.LINE_AA,
        _SHIFT,
    )
    for s in ("r", "l"):
        _ellipse(img, p[s + "_shoulder"], (0.034 * limb, 0.034 * limb), 0.0, b.shirt)
    # head: long hair behind, neck, face, hair cap, eyes
    head, neck = p["head"], p["neck"]
    tilt = lean + float(angles[HEAD])
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
        shade(b.skin, 0.9),
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
                shade(b.skin, 0.6),
            )
    # arms, in front of the torso
    sleeve = b.shirt if b.long_sleeves else b.skin
    for s in ("r", "l"):
        _capsule(img, p[s + "_shoulder"], p[s + "_elbow"], 0.033 * limb, 0.027 * limb, b.shirt)
        _capsule(img, p[s + "_elbow"], p[s + "_wrist"], 0.026 * limb, 0.02 * limb, sleeve)
        if not b.long_sleeves:
            _ellipse(img, p[s + "_elbow"], (0.027 * limb, 0.027 * limb), 0.0, b.skin)
        _capsule(img, p[s + "_wrist"], p[s + "_hand"], 0.019 * fh, 0.024 * fh, b.skin)


def draw_distractors(img: Frame, v: Variation, t: float, dx: int, dy: int) -> None:
    """Draw the variation's distractors at time ``t``, the camera displaced by (dx, dy)."""
    for d in v.distractors:
        s = math.tau * d.frequency * t + d.phase
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
