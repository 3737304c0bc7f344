"""Tests of respike.events.frames: frame checks, grey conversion, area taps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respike.events.frames import (
    area_taps,
    check_frame,
    frame_format,
    grey_pixel,
    grey_reference,
    to_grey,
)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((4, 5), dtype=np.int16), "dtype int16; expected uint8"),
        (np.zeros((4, 5), dtype=np.float64), "dtype float64; expected uint8"),
        (np.zeros((4, 5), dtype=bool), "dtype bool; expected uint8"),
        (np.zeros(5, dtype=np.uint8), "1 dimensions"),
        (np.zeros((2, 4, 5, 3), dtype=np.uint8), "4 dimensions"),
        (np.zeros((4, 5, 2), dtype=np.uint8), "2 channels"),
        (np.zeros((4, 5, 4), dtype=np.uint8), "4 channels"),
        (np.zeros((0, 5), dtype=np.uint8), "sides between 1"),
        (np.full((4, 5), np.nan, dtype=np.float32), "finite intensities in \\[0, 1\\]"),
        (np.full((4, 5), 1.5, dtype=np.float32), "finite intensities in \\[0, 1\\]"),
        (np.full((4, 5), -0.1, dtype=np.float32), "finite intensities in \\[0, 1\\]"),
        ([[1, 2], [3, 4]], "is a list; expected a numpy array"),
    ],
)
def test_check_frame_rejects_bad_frames_with_a_message(frame: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_frame(frame)


def test_check_frame_gives_contiguous_three_dimensional_arrays() -> None:
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    checked = check_frame(grey)
    assert checked.shape == (4, 5, 1), "a (H, W) frame must become (H, W, 1)"
    assert np.shares_memory(checked, grey), "a contiguous frame must not be copied"
    strided = np.zeros((8, 10, 3), dtype=np.uint8)[::2, ::2]
    assert check_frame(strided).flags.c_contiguous, "a strided frame must be made contiguous"
    assert frame_format(check_frame(strided)) == (4, 5, 3, "uint8")


def test_grey_of_uint8_frames_matches_opencv_exactly(rng: np.random.Generator) -> None:
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    checked = check_frame(frame)
    assert np.array_equal(to_grey(checked, "bgr"), expected), "numba grey != cv2.cvtColor"
    assert np.array_equal(grey_reference(checked, "bgr"), expected), "numpy grey != cvtColor"
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    assert np.array_equal(to_grey(check_frame(rgb), "rgb"), expected), "rgb order not honoured"


def test_grey_of_float32_frames_is_identical_in_numba_and_numpy(rng: np.random.Generator) -> None:
    frame = check_frame(rng.random((31, 17, 3), dtype=np.float32))
    numba_grey = to_grey(frame, "bgr")
    assert numba_grey.dtype == np.float32
    assert np.array_equal(numba_grey, grey_reference(frame, "bgr")), "float grey differs"
    opencv = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert np.allclose(numba_grey, opencv, atol=1e-6), "float grey far from OpenCV's"


def test_grey_pixel_python_fallback_agrees_with_the_kernel() -> None:
    frame = check_frame(np.array([[[10, 200, 30]]], dtype=np.uint8))
    fixed, floats = np.array([3735, 19235, 9798], np.int32), np.array([0.114, 0.587, 0.299])
    value = grey_pixel(np.uint8(10), np.uint8(200), np.uint8(30), fixed, floats.astype(np.float32))
    assert value == to_grey(frame, "bgr")[0, 0], "Python grey_pixel differs from the kernel"


@given(n_in=st.integers(1, 700), n_out=st.integers(1, 300))
@settings(max_examples=200, deadline=None)
def test_area_taps_cover_each_source_sample_once(n_in: int, n_out: int) -> None:
    index, weight = area_taps(n_in, n_out)
    assert index.shape == weight.shape and index.shape[0] == n_out
    assert np.all((index >= 0) & (index < n_in)), "tap index outside the source"
    assert np.allclose(weight.sum(axis=1), 1.0, atol=1e-6), "weights of an output must sum to 1"
    coverage = np.bincount(index.ravel(), weights=weight.ravel(), minlength=n_in)
    assert np.allclose(coverage, n_out / n_in, atol=1e-5), "each source must count n_out/n_in"


def test_area_taps_match_opencv_inter_area(rng: np.random.Generator) -> None:
    image = rng.random((48, 64), dtype=np.float32)
    for out_w, out_h in ((32, 24), (20, 15), (64, 48)):
        iy, wy = area_taps(48, out_h)
        ix, wx = area_taps(64, out_w)
        rows = sum(wy[:, k, None] * image[iy[:, k]] for k in range(iy.shape[1]))
        ours = sum(wx[None, :, j] * rows[:, ix[:, j]] for j in range(ix.shape[1]))
        opencv = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
        assert np.allclose(ours, opencv, atol=1e-5), f"area resampling to {out_w}x{out_h}"


def test_area_taps_reject_empty_sizes() -> None:
    with pytest.raises(ValueError, match="both must be >= 1"):
        area_taps(0, 3)


def test_any_frame_a_node_meets_becomes_rgb_uint8() -> None:
    from respike.events.images import check_image, rgb_image

    grey16 = np.full((2, 3), 65535, np.uint16)
    assert rgb_image(grey16).tolist() == [[[255] * 3] * 3] * 2, "16-bit grey from its full range"
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 200
    assert rgb_image(rgba)[0, 0].tolist() == [10, 0, 0], "RGBA loses its alpha"
    floats = np.array([[np.nan, 0.5]], np.float32)
    assert rgb_image(floats)[0, :, 0].tolist() == [0, 128], "NaN reads as 0"
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) RGB or \(H, W\) grey"):
        check_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype complex64"):
        check_image(np.zeros((2, 2), np.complex64))
