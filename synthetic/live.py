"""The synthetic live source: one performer switching between actions, frame after frame."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from respike.synthetic.classes import CLASS_NAMES, class_id, get_class
from respike.synthetic.colours import Frame
from respike.synthetic.config import SceneConfig
from respike.synthetic.motion import Motion, joint_angles, sample_motion, smoothstep
from respike.synthetic.scenes import Scene
from respike.synthetic.seeds import TAG_STREAM
from respike.synthetic.variation import sample_variation


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
        self._rng = np.random.default_rng([self.seed, TAG_STREAM])
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
        seed = int(np.random.default_rng([self.seed, TAG_STREAM, number]).integers(1 << 62))
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
            weight = smoothstep(since / self.transition_seconds)
            diff = (angles - old + math.pi) % math.tau - math.pi  # turn the short way round
            angles = old + weight * diff
        held = get_class(seg.name).held
        frame = self._scene.render_angles(angles, held, t)
        self._index += 1
        return frame, seg.label, t

    def __iter__(self) -> Iterator[tuple[Frame, int, float]]:
        while True:
            yield self.next_frame()
