"""Tests of respike.synthetic.live: the seeded stream's labels follow what it renders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from respike.synthetic import ActionStream, SceneConfig


def test_stream_labels_follow_the_rendered_class() -> None:
    config = SceneConfig(width=48, height=40, fps=10)
    stream = ActionStream(config, seed=3, segment_seconds=(1.0, 2.0), transition_seconds=0.2)
    twin = ActionStream(config, seed=3, segment_seconds=(1.0, 2.0), transition_seconds=0.2)
    labels = []
    checked = 0
    for i in range(120):
        frame, label, t = stream.next_frame()
        frame2, label2, _ = twin.next_frame()
        assert label == label2 and np.array_equal(frame, frame2), "the stream must be seeded"
        assert t == pytest.approx(i / config.fps)
        seg = stream.segment
        assert stream.class_names[label] == seg.name and seg.start <= t < seg.end
        if t - seg.start >= stream.transition_seconds:
            expected = stream.scene.render(seg.name, t, motion=seg.motion, motion_start=seg.start)
            assert np.array_equal(frame, expected), f"frame {i} is not {seg.name}"
            checked += 1
        labels.append(label)
    switches = sum(a != b for a, b in itertools.pairwise(labels))
    assert switches >= 5 and len(set(labels)) >= 4, "the stream must switch between actions"
    assert checked > 80


def test_stream_on_a_subset_labels_within_the_subset() -> None:
    config = SceneConfig(width=32, height=32, fps=5)
    names = ("swipe_left", "swipe_right")
    stream = ActionStream(config, seed=1, classes=names, new_scene_every=2)
    labels = {stream.next_frame()[1] for _ in range(60)}
    assert labels == {0, 1} and stream.class_names == names
    with pytest.raises(ValueError, match="repeat"):
        ActionStream(config, seed=1, classes=("arm_roll", "arm_roll"))
