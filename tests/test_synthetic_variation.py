"""Tests of what a seed and a SceneConfig decide: validation, splits, backdrops, nuisances."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from respike.synthetic import (
    BACKGROUND_FAMILIES,
    HELDOUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    SceneConfig,
    render_clip,
    sample_variation,
    split_seed,
)

SMALL = SceneConfig(width=64, height=48, fps=30)


def test_config_is_validated_once() -> None:
    with pytest.raises(ValueError, match="width"):
        SceneConfig(width=0)
    with pytest.raises(ValueError, match="fps"):
        SceneConfig(fps=0)
    with pytest.raises(ValueError, match="unknown background"):
        SceneConfig(backgrounds=("space",))
    with pytest.raises(ValueError, match="speed_range"):
        SceneConfig(speed_range=(1.5, 1.0))


def test_seeds_of_splits_and_held_out_backgrounds_are_disjoint() -> None:
    train = {split_seed("train", i) for i in range(100)}
    test = {split_seed("test", i) for i in range(100)}
    assert not train & test
    assert set(TRAIN_BACKGROUNDS).isdisjoint(HELDOUT_BACKGROUNDS)
    assert set(TRAIN_BACKGROUNDS) | set(HELDOUT_BACKGROUNDS) == set(BACKGROUND_FAMILIES)
    held_out = replace(SMALL, backgrounds=HELDOUT_BACKGROUNDS)
    assert {sample_variation(s, held_out).background for s in test} == set(HELDOUT_BACKGROUNDS)
    with pytest.raises(ValueError, match="unknown split"):
        split_seed("holdout", 0)


def test_every_background_family_renders() -> None:
    for family in BACKGROUND_FAMILIES:
        config = replace(SMALL, backgrounds=(family,))
        assert sample_variation(1, config).background == family
        frame = render_clip("hand_clapping", 1, 1, config)[0]
        assert frame.std() > 3, f"{family} background is blank"


def test_nuisances_change_the_image() -> None:
    noisy = SceneConfig(width=64, height=48, fps=30, noise=8.0, flicker=0.3, shake=0.05)
    clip = render_clip("air_guitar", 9, 8, noisy)
    clean = render_clip("air_guitar", 9, 8, noisy.clean())
    assert not np.array_equal(clip, clean)
    v = sample_variation(9, noisy)
    assert v.camera.noise > 0 and v.camera.flicker > 0 and v.camera.shake_px > 0
    # noise differs from frame to frame even where nothing moves (the top row, above the figure)
    assert not np.array_equal(clip[0, 0], clip[1, 0])
