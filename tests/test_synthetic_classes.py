"""Tests of respike.synthetic.classes: the class list, lookups and the groups' guarantees."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.recorders.datasets import DVS_GESTURE_CLASSES
from respike.synthetic import (
    CLASS_NAMES,
    CLASSES,
    JOINTS,
    Scene,
    SceneConfig,
    class_id,
    class_names,
    get_class,
    object_colour,
    pose_at,
    sample_variation,
)

CLEAN = SceneConfig(width=96, height=72, fps=30).clean()

APPEARANCE_PAIRS = [
    (a.name, b.name)
    for i, a in enumerate(CLASSES)
    for b in CLASSES[i + 1 :]
    if a.group == b.group == "appearance" and a.motion == b.motion
]
TEMPORAL_PAIRS = [
    (a.name, b.name)
    for a in CLASSES
    for b in CLASSES
    if a.motion == b.motion and a.mirror == b.mirror and not a.reverse and b.reverse
]


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.int16)


def test_class_list_groups_and_dvs_gesture_names(shared_data: Path) -> None:
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES), "class names must be unique"
    assert {c.group for c in CLASSES} == {"gesture", "appearance", "temporal"}
    assert class_names("gesture") == DVS_GESTURE_CLASSES == CLASS_NAMES[:11]
    with (shared_data / "dvs_gesture10" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        label = int(row["class_id"])
        assert DVS_GESTURE_CLASSES[label - 1] == row["class_name"], f"DVS label {label} differs"
    assert DVS_GESTURE_CLASSES[10] == "other"
    assert class_id("other_gestures") == class_id("other") == 10
    assert len(APPEARANCE_PAIRS) >= 2 and len(TEMPORAL_PAIRS) >= 4
    assert {n for pair in TEMPORAL_PAIRS for n in pair} >= set(class_names("temporal"))
    assert {n for pair in APPEARANCE_PAIRS for n in pair} == set(class_names("appearance"))


def test_class_lookup_errors_name_the_known_classes() -> None:
    assert class_id(3) == 3 and get_class("arm_roll").name == "arm_roll"
    with pytest.raises(ValueError, match="hand_clapping"):
        class_id("jump")
    with pytest.raises(ValueError, match="out of range"):
        class_id(len(CLASSES))
    with pytest.raises(ValueError, match="unknown group"):
        class_names("dance")


def test_object_colours_share_one_grey_level() -> None:
    for luma in (85.0, 110.0, 140.0):
        greys = {
            colour: 0.299 * r + 0.587 * g + 0.114 * b
            for colour in ("red", "green", "blue")
            for r, g, b in [object_colour(colour, luma, 1.0)]
        }
        assert all(abs(v - luma) < 1.0 for v in greys.values()), greys


@pytest.mark.parametrize(("first", "second"), APPEARANCE_PAIRS)
def test_appearance_pairs_differ_only_in_the_colour_of_the_held_object(
    first: str, second: str
) -> None:
    v = sample_variation(11, CLEAN)
    for t in np.linspace(0.0, 3.0, 13):
        assert np.array_equal(pose_at(first, t, v), pose_at(second, t, v)), "motion must match"
    scene = Scene(CLEAN, v)
    held = get_class(first).held
    assert held is not None
    for t in (0.2, 0.9):
        a, b = scene.render(first, t), scene.render(second, t)
        assert np.abs(grey(a) - grey(b)).max() <= 3, "the grey images must be the same"
        changed = np.abs(a.astype(int) - b).max(axis=2) > 30
        assert changed.sum() > 10, "the held objects must differ in colour"
        pose = pose_at(first, t, v)
        hands = [pose[JOINTS.index("r_hand")]]
        if held.hands == "both":
            hands.append(pose[JOINTS.index("l_hand")])
        centre = np.mean(hands, axis=0)
        reach = 0.12 * v.figure_height + 0.5 * float(np.ptp(np.array(hands)[:, 0]))
        ys, xs = np.nonzero(np.abs(a.astype(int) - b).max(axis=2) > 2)
        distance = np.hypot(xs - centre[0], ys - centre[1])
        assert distance.max() <= reach, "pixels changed away from the held object"


@pytest.mark.parametrize(("forward", "backward"), TEMPORAL_PAIRS)
def test_temporal_pairs_are_the_same_motion_played_backwards(forward: str, backward: str) -> None:
    v = sample_variation(4, CLEAN)
    m = v.motion
    for t in np.linspace(0.0, 2.0, 9):
        mirror_t = -t - 2.0 * m.phase / m.speed  # the time whose motion time is minus t's
        assert np.allclose(pose_at(backward, t, v), pose_at(forward, mirror_t, v)), t
    # whole clips: the backward clip equals the forward clip, reversed
    n = 12
    span = (n - 1) / CLEAN.fps
    scene = Scene(CLEAN, v)
    reversed_motion = replace(m, phase=-m.phase - m.speed * span)
    back = [scene.render(backward, k / CLEAN.fps) for k in range(n)]
    fwd = [scene.render(forward, k / CLEAN.fps, motion=reversed_motion) for k in range(n)]
    for k in range(n):
        assert np.array_equal(back[k], fwd[n - 1 - k]), f"frame {k} is not the reversed one"
    assert not np.array_equal(back[0], back[n // 2]), "the clip must move"
