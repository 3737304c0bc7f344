"""Images as other systems send them, and as respike sends its frames on (numpy only).

ROS 2's ``sensor_msgs/msg/Image``, dora's image convention and Foxglove's ``RawImage`` name
pixel layouts the same way (``rgb8``, ``bgr8``, ``mono8``, ...) and lay rows ``step`` bytes
apart. :data:`IMAGE_ENCODINGS` is the one table of those respike reads; :func:`image_pixels`
views a buffer as pixels and :func:`rgb_frame` turns it into a frame. Frames travel as
(H, W, 3) uint8 RGB (:func:`rgb_image`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "bayer_rggb8": ("u1", 1),
    "bayer_bggr8": ("u1", 1),
    "bayer_gbrg8": ("u1", 1),
    "bayer_grbg8": ("u1", 1),
    "mono16": ("u2", 1),
    "16UC1": ("u2", 1),
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "8UC3": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "8UC4": ("u1", 4),
}
"""Image encodings respike reads, with each pixel's (numpy dtype, channels)."""

FRAME_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
"""Encodings whose colours are known, so they become frames (Bayer and ``8UC3`` are not)."""


def image_pixels(
    data: bytes | memoryview | np.ndarray,
    width: int,
    height: int,
    encoding: str,
    step: int = 0,
    bigendian: bool = False,
) -> np.ndarray:
    """The pixels of an image buffer, (H, W) or (H, W, C), in the encoding's own layout.

    ``step`` is the distance between rows in bytes (0: rows packed). Raises ValueError naming
    the encoding, the sizes and what they should be.
    """
    spec = IMAGE_ENCODINGS.get(encoding)
    if spec is None:
        raise ValueError(
            f"image encoding {encoding!r}; expected one of {', '.join(IMAGE_ENCODINGS)}"
        )
    kind, channels = spec
    dtype = np.dtype(kind).newbyteorder(">" if bigendian else "<")
    row = width * channels * dtype.itemsize
    step = step or row
    raw = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    raw = raw.reshape(-1)
    if width <= 0 or height <= 0 or step < row or raw.size != step * height:
        raise ValueError(
            f"a {width}x{height} {encoding} image of {raw.size} bytes with step {step}; expected "
            f"sides > 0, step >= {row} and {step * height} bytes"
        )
    rows = raw.reshape(height, step)[:, :row]
    pixels = np.ascontiguousarray(rows).view(dtype)
    return pixels.reshape((height, width, channels) if channels > 1 else (height, width))


def rgb_frame(
    data: bytes | memoryview | np.ndarray,
    width: int,
    height: int,
    encoding: str,
    step: int = 0,
    bigendian: bool = False,
) -> npt.NDArray[np.uint8]:
    """A frame, (H, W, 3) uint8 RGB, from an image buffer in one of :data:`FRAME_ENCODINGS`."""
    if encoding not in FRAME_ENCODINGS:
        raise ValueError(
            f"image encoding {encoding!r}; expected one of {', '.join(FRAME_ENCODINGS)}"
        )
    pixels = image_pixels(data, width, height, encoding, step, bigendian)
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    return rgb_image(pixels)


def check_image(image: np.ndarray, *, what: str = "frame") -> None:
    """Raise ValueError unless ``image`` may travel as a frame: (H, W, 3) RGB or (H, W[, 1])
    grey, integers or floats in [0, 1]. Looser than :func:`check_frame` (the kernels' input):
    recordings carry 16-bit grey, and a viewer shows what it gets."""
    shape = image.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))) or image.size == 0:
        raise ValueError(f"{what} has shape {shape}; expected (H, W, 3) RGB or (H, W) grey")
    if image.dtype.kind not in "uif":
        raise ValueError(f"{what} has dtype {image.dtype}; expected integers or floats in [0, 1]")


def rgb_image(image: np.ndarray) -> npt.NDArray[np.uint8]:
    """``image`` as (H, W, 3) uint8 RGB, to show or to send on as a frame.

    Grey (H, W) or (H, W, 1) is repeated over three channels, RGBA loses its alpha, integer
    depths other than 8 bits are scaled from their full range, floats are intensities in [0, 1]
    (NaN reads as 0).
    """
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    check_image(image)
    if image.dtype.kind == "f":
        image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        scale = 255.0 / max(1, int(np.iinfo(image.dtype).max))
        image = np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)
