"""Synthetic action generator: an articulated figure acting in a procedural scene, as RGB frames.

No dataset can be downloaded here, so respike makes its own training data and its own live
source with this package. A human-like figure (head, hair, torso, upper and lower arms, hands,
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

The modules, each about one thing: ``classes`` (the classes and their groups), ``config``
(:class:`SceneConfig`), ``seeds`` (random streams and splits), ``colours``, ``bodies`` (the
performer and its skeleton), ``motion`` (motion programs), ``variation`` (what a seed decides),
``backgrounds``, ``drawing``, ``scenes`` (:class:`Scene`, clips) and ``live``
(:class:`ActionStream`).

Example::

    from respike.synthetic import ActionStream, SceneConfig, render_clip

    config = SceneConfig(width=128, height=128, fps=30)
    clip = render_clip("right_hand_wave", seed=7, num_frames=32, config=config)  # (32,128,128,3)

    stream = ActionStream(config, seed=1)          # live source: actions change every few s
    frame, label, t = stream.next_frame()          # label indexes stream.class_names

    sheet = contact_sheet(config, seed=3)          # one frame per class, labelled (docs)
"""

from __future__ import annotations

from respike.synthetic.backgrounds import (
    BACKGROUND_FAMILIES,
    HELDOUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
)
from respike.synthetic.bodies import JOINTS, Body
from respike.synthetic.classes import (
    CLASS_NAMES,
    CLASSES,
    GROUPS,
    ActionClass,
    HeldObject,
    class_id,
    class_names,
    get_class,
)
from respike.synthetic.colours import Frame, object_colour
from respike.synthetic.config import SceneConfig
from respike.synthetic.live import ActionStream, Segment
from respike.synthetic.motion import MOTIONS, Motion, joint_angles, sample_motion
from respike.synthetic.scenes import Scene, contact_sheet, pose_at, render_background, render_clip
from respike.synthetic.seeds import SPLITS, split_seed
from respike.synthetic.variation import Camera, Distractor, Variation, sample_variation

__all__ = [
    "BACKGROUND_FAMILIES",
    "CLASSES",
    "CLASS_NAMES",
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
