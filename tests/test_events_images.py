"""Images in ROS's convention → pixels and RGB frames: one table for ROS 2, dora and bags."""

from __future__ import annotations

import numpy as np
import pytest

from respike.events.images import FRAME_ENCODINGS, IMAGE_ENCODINGS, image_pixels, rgb_frame


def test_each_frame_encoding_gives_the_same_rgb_frame() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    grey = rgb[:, :, 1]
    buffers = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.dstack([rgb, np.full((3, 5), 7, np.uint8)]),
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full((3, 5), 7, np.uint8)]),
    }
    for encoding, pixels in buffers.items():
        frame = rgb_frame(np.ascontiguousarray(pixels).tobytes(), 5, 3, encoding)
        assert frame.dtype == np.uint8 and frame.shape == (3, 5, 3)
        assert np.array_equal(frame, rgb), encoding
    assert np.array_equal(rgb_frame(grey.tobytes(), 5, 3, "mono8"), np.dstack([grey] * 3))
    mono16 = (grey.astype(np.uint16) * 257).astype(">u2")
    frame = rgb_frame(mono16.tobytes(), 5, 3, "mono16", bigendian=True)
    assert np.array_equal(frame[:, :, 0], grey), "16-bit grey scaled from its full range"
    assert set(FRAME_ENCODINGS) <= set(IMAGE_ENCODINGS)


def test_padded_rows_are_cut_to_the_image() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    assert np.array_equal(rgb_frame(padded.tobytes(), 3, 2, "rgb8", step=12), rgb)
    assert image_pixels(padded, 3, 2, "8UC3", step=12).shape == (2, 3, 3)


@pytest.mark.parametrize(
    ("size", "encoding", "step", "expected"),
    [
        (18, "yuv422", 0, "image encoding 'yuv422'; expected one of"),
        (18, "bayer_rggb8", 0, "image encoding 'bayer_rggb8'; expected one of rgb8"),
        (17, "rgb8", 0, "a 3x2 rgb8 image of 17 bytes with step 9; expected"),
        (18, "rgb8", 8, "step >= 9"),
    ],
)
def test_what_does_not_fit_is_named(size: int, encoding: str, step: int, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        rgb_frame(bytes(size), 3, 2, encoding, step)
