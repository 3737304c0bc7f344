"""The synthetic action classes: their names, groups, motions and held objects, and lookups.

Three groups (:data:`GROUPS`): ``gesture`` (DVS Gesture's 11 classes, names and order),
``appearance`` (one motion, objects of equal luma that differ in colour only) and ``temporal``
(pairs that are exact time reverses of each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Group = Literal["gesture", "appearance", "temporal"]

GROUPS: tuple[str, ...] = ("gesture", "appearance", "temporal")


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
"""Every class, in id order: the 11 DVS Gesture classes first (ids 0-10, the names and order of
:data:`respike.recorders.datasets.DVS_GESTURE_CLASSES`, which a test holds them to), then the
others."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)

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
