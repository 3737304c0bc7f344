"""Motion of the synthetic actions: programs that give joint angles as functions of time.

A motion program maps motion time (seconds) to the joint angles of :mod:`~respike.synthetic.bodies`
(see its lateral angle convention); hand targets are (outward, upward) offsets from the shoulder
in units of the arm's length, reached by two-bone inverse kinematics. A class plays its program
at a sampled speed and phase, mirrored or reversed in time (:func:`joint_angles`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from respike.synthetic.bodies import BOB, HEAD, LEAN, LF, LS, LT, LU, N_ANGLES, RF, RS, RT, RU, Body
from respike.synthetic.classes import get_class
from respike.synthetic.config import SceneConfig
from respike.synthetic.seeds import TAG_MOTION, TAG_OTHER


@dataclass(frozen=True)
class Motion:
    """How an action is performed: speed factor, start phase (s), amplitude and a free seed.

    ``seed`` drives the freestyle ``other`` class; the rest scale the motion programs.
    """

    speed: float = 1.0
    phase: float = 0.0
    amplitude: float = 1.0
    seed: int = 0


def sample_motion(seed: int, config: SceneConfig) -> Motion:
    """Draw speed, phase, amplitude and the freestyle seed of one performance."""
    rng = np.random.default_rng([seed, TAG_MOTION])
    return Motion(
        speed=float(rng.uniform(*config.speed_range)),
        phase=float(rng.uniform(0.0, 10.0)),
        amplitude=float(rng.uniform(*config.amplitude_range)),
        seed=int(rng.integers(1 << 31)),
    )


_TWO_PI = 2 * math.pi


def smoothstep(x: float) -> float:
    """0 below 0, 1 above 1, a smooth S-curve between (zero slope at both ends)."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _stroke(tau: float, period: float, fast: float = 0.28) -> float:
    """0 -> 1 quickly (the first ``fast`` of the period), then back to 0 slowly."""
    x = (tau / period) % 1.0
    if x < fast:
        return smoothstep(x / fast)
    return 1.0 - smoothstep((x - fast) / (1.0 - fast))


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
    a = np.zeros(N_ANGLES)
    a[LEAN] = 0.025 * math.sin(_TWO_PI * 0.21 * tau + 0.7)
    a[BOB] = 0.004 * math.sin(_TWO_PI * 0.31 * tau)
    a[HEAD] = 0.05 * math.sin(_TWO_PI * 0.17 * tau + 1.3)
    shift = 0.012 * math.sin(_TWO_PI * 0.13 * tau)
    a[RT], a[LT] = 0.07 + shift, 0.07 - shift
    a[RS], a[LS] = 0.03 + 0.5 * shift, 0.03 - 0.5 * shift
    a[RU] = 0.14 + 0.02 * math.sin(_TWO_PI * 0.37 * tau)
    a[RF] = 0.1 + 0.03 * math.sin(_TWO_PI * 0.37 * tau + 0.5)
    a[LU] = 0.14 + 0.02 * math.sin(_TWO_PI * 0.33 * tau + 2.0)
    a[LF] = 0.1 + 0.03 * math.sin(_TWO_PI * 0.33 * tau + 2.5)
    return a


def _set_arm(a: np.ndarray, side: str, angles: tuple[float, float]) -> None:
    u, f = (RU, RF) if side == "right" else (LU, LF)
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
    a[LEAN] += 0.04
    return a


@functools.lru_cache(maxsize=512)
def _freestyle(seed: int) -> tuple[tuple[float, ...], ...]:
    """Per-arm random smooth paths of the ``other`` class: centre, amplitudes, Hz, phases."""
    rng = np.random.default_rng([seed, TAG_OTHER])
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
    m[[RU, RF, LU, LF, RT, RS, LT, LS]] = a[[LU, LF, RU, RF, LT, LS, RT, RS]]
    m[LEAN], m[HEAD] = -a[LEAN], -a[HEAD]
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
