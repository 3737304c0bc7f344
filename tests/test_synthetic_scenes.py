"""Tests of respike.synthetic.scenes: deterministic clips of every class, the contact sheet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.synthetic import CLASS_NAMES, CLASSES, SceneConfig, contact_sheet, render_clip

SMALL = SceneConfig(width=64, height=48, fps=30)


def test_same_seed_same_frames_and_different_seeds_differ() -> None:
    a = render_clip("air_drums", 5, 6, SMALL)
    b = render_clip("air_drums", 5, 6, SMALL)
    c = render_clip("air_drums", 6, 6, SMALL)
    assert a.shape == (6, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b), "the same seed must give identical frames"
    assert np.abs(a.astype(int) - c).mean() > 5, "different seeds must give different clips"
    assert not np.array_equal(a[0], a[5]), "the performer must move"


@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_every_class_renders_at_odd_sizes_and_low_rates(fps: float) -> None:
    for framing in ("full", "upper"):
        config = SceneConfig(width=97, height=61, fps=fps, framing=framing)
        for cid, name in enumerate(CLASS_NAMES):
            clip = render_clip(name, 100 + cid, 2, config)
            assert clip.shape == (2, 61, 97, 3) and clip.dtype == np.uint8, name
            assert clip.std() > 3, f"{name} rendered an empty frame"


def test_contact_sheet_shows_every_class(tmp_path: Path) -> None:
    config = SceneConfig(width=40, height=30)
    sheet = contact_sheet(config, seed=2, columns=5)
    rows = -(-len(CLASSES) // 5)
    assert sheet.shape == (rows * (30 + 14), 5 * 40, 3) and sheet.dtype == np.uint8
    path = tmp_path / "sheet.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
