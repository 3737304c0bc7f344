"""Frame checks and the per-pixel conversions (grey, intensity level, area taps) the kernels share.

Frames are numpy arrays of shape (H, W) or (H, W, C) with C = 1 or 3, dtype uint8 (grey levels
0..255) or float32 (intensities in [0, 1]). Three-channel frames are BGR by default (what OpenCV
captures); ``channel_order="rgb"`` says they are RGB.

The grey conversion uses OpenCV's BT.601 weights. For uint8 frames it is the 15-bit fixed point
formula of OpenCV's cvtColor (checked equal on all 2**24 colours with opencv-python 5.0), so the
grey image is exact integers: identical in numba, in numpy and in ``cv2.cvtColor``. For float32 frames it is three float32 multiply-adds in a fixed order, which
numba and numpy round identically.

Numba caches each kernel by its own source file only: after editing the jitted helpers here,
delete the ``__pycache__`` folders of this package so the kernels that use them are recompiled.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import numba
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import overload

kernel: Any = partial(numba.njit, cache=True, nogil=True, error_model="numpy")
"""How every kernel of this package is compiled: cached, releasing the GIL, and with numpy's
error model (IEEE division without zero-division checks: a check per element keeps LLVM from
vectorising a loop that divides by an array, 4x slower; no kernel divides by zero)."""

ChannelOrder = Literal["bgr", "rgb"]
CHANNEL_ORDERS: tuple[str, ...] = ("bgr", "rgb")

GREY_SHIFT = 15
"""Fixed-point shift of the uint8 grey formula."""

_GREY_FIXED_RGB = (9798, 19235, 3735)
_GREY_FLOAT_RGB = (0.299, 0.587, 0.114)

LEVELS_U16 = 65535
"""float32 intensities in [0, 1] are quantised to 0..65535 before the log (see emulator)."""

MAX_SIDE = 65535
"""Largest frame side: event coordinates are uint16."""


class FrameFormat(NamedTuple):
    """What a stateful step remembers of its frames; a different format restarts the stream."""

    height: int
    width: int
    channels: int
    dtype: str


def check_size(value: object, name: str) -> None:
    """Raise ValueError unless ``value`` is a (width, height) pair of ints in 1..65535."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not all(1 <= v <= MAX_SIDE for v in value)
    ):
        raise ValueError(
            f"{name} is {value!r}; expected (width, height), integers in 1..{MAX_SIDE}"
        )


@lru_cache(maxsize=4)
def grey_weights(channel_order: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Per-input-channel grey weights: (15-bit fixed point int32, float32), in frame order.

    Cached and read-only: the kernels take them on every frame.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order is {channel_order!r}; expected one of {CHANNEL_ORDERS}")
    fixed = np.array(_GREY_FIXED_RGB, dtype=np.int32)
    floats = np.array(_GREY_FLOAT_RGB, dtype=np.float32)
    if channel_order == "bgr":
        fixed, floats = fixed[::-1].copy(), floats[::-1].copy()
    fixed.setflags(write=False)
    floats.setflags(write=False)
    return fixed, floats


def check_frame(frame: object, *, what: str = "frame") -> npt.NDArray[np.generic]:
    """Return ``frame`` as a C-contiguous (H, W, C) array, or raise ValueError saying what is wrong.

    Accepted: uint8 or float32, (H, W) or (H, W, C) with C in {1, 3}, 1 <= H, W <= 65535, and for
    float32 only finite values in [0, 1] (checked here so a NaN never reaches a kernel).
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{what} is a {type(frame).__name__}; expected a numpy array")
    if frame.dtype not in (np.uint8, np.float32):
        raise ValueError(
            f"{what} has dtype {frame.dtype}; expected uint8 (0..255) or float32 (0..1)"
        )
    if frame.ndim not in (2, 3):
        raise ValueError(
            f"{what} has {frame.ndim} dimensions (shape {frame.shape}); expected (H, W) or (H, W, C)"
        )
    height, width = frame.shape[:2]
    channels = frame.shape[2] if frame.ndim == 3 else 1
    if channels not in (1, 3):
        raise ValueError(f"{what} has {channels} channels (shape {frame.shape}); expected 1 or 3")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"{what} has shape {frame.shape}; expected sides between 1 and {MAX_SIDE}")
    if frame.dtype == np.float32:
        low, high = frame.min(), frame.max()
        if not (low >= 0.0 and high <= 1.0):
            raise ValueError(
                f"{what} holds float32 values from {low} to {high}; expected finite intensities "
                "in [0, 1]"
            )
    return np.ascontiguousarray(frame.reshape(height, width, channels))


def frame_format(frame: npt.NDArray[np.generic]) -> FrameFormat:
    """The format of a frame returned by `check_frame`."""
    height, width, channels = frame.shape
    return FrameFormat(height, width, channels, _DTYPE_NAMES[frame.dtype.char])


_DTYPE_NAMES = {np.dtype(np.uint8).char: "uint8", np.dtype(np.float32).char: "float32"}


class StreamState(Protocol):
    """What every stateful step remembers of its frames (the residual's, the emulator's)."""

    @property
    def frame_format(self) -> FrameFormat: ...

    @property
    def format_changes(self) -> int: ...


S = TypeVar("S", bound=StreamState)


def continue_stream(
    frame: object, state: S | None
) -> tuple[npt.NDArray[np.generic], FrameFormat, S | None, int]:
    """``frame`` checked, its format, the state to continue from and the format changes so far.

    A frame of another format than the stream's restarts it: the state comes back ``None`` (a
    new stream) and the count of format changes goes up by one, so the caller can say so.
    """
    checked = check_frame(frame)
    fmt = frame_format(checked)
    if state is None:
        return checked, fmt, None, 0
    if state.frame_format != fmt:
        return checked, fmt, None, state.format_changes + 1
    return checked, fmt, state, state.format_changes


def grey_pixel(
    v0: np.generic,
    v1: np.generic,
    v2: np.generic,
    fixed: npt.NDArray[np.int32],
    floats: npt.NDArray[np.float32],
) -> np.generic:
    """Grey value of one 3-channel pixel: uint8 from uint8 (fixed point), float32 from float32.

    Plain Python for scalars; inside numba kernels the overload below is compiled instead.
    """
    if isinstance(v0, np.integer):
        total = int(fixed[0]) * int(v0) + int(fixed[1]) * int(v1) + int(fixed[2]) * int(v2)
        return np.uint8((total + (1 << (GREY_SHIFT - 1))) >> GREY_SHIFT)
    return floats[0] * np.float32(v0) + floats[1] * np.float32(v1) + floats[2] * np.float32(v2)


@overload(grey_pixel)
def _grey_pixel_numba(v0, v1, v2, fixed, floats):
    if isinstance(v0, types.Integer):

        def grey_fixed(v0, v1, v2, fixed, floats):
            total = fixed[0] * np.int32(v0) + fixed[1] * np.int32(v1) + fixed[2] * np.int32(v2)
            return np.uint8((total + (1 << (GREY_SHIFT - 1))) >> GREY_SHIFT)

        return grey_fixed

    def grey_float(v0, v1, v2, fixed, floats):
        return floats[0] * v0 + floats[1] * v1 + floats[2] * v2

    return grey_float


def grey_reference(frame: npt.NDArray[np.generic], channel_order: str) -> npt.NDArray[np.generic]:
    """numpy reference of the grey conversion: (H, W, C) frame -> (H, W) uint8 or float32."""
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    fixed, floats = grey_weights(channel_order)
    if frame.dtype == np.uint8:
        wide = frame.astype(np.int32)
        total = fixed[0] * wide[:, :, 0] + fixed[1] * wide[:, :, 1] + fixed[2] * wide[:, :, 2]
        return ((total + (1 << (GREY_SHIFT - 1))) >> GREY_SHIFT).astype(np.uint8)
    return floats[0] * frame[:, :, 0] + floats[1] * frame[:, :, 1] + floats[2] * frame[:, :, 2]


@kernel
def _grey_kernel(frame, fixed, floats, out):
    height, width, channels = frame.shape
    for y in range(height):
        for x in range(width):
            if channels == 3:
                out[y, x] = grey_pixel(
                    frame[y, x, 0], frame[y, x, 1], frame[y, x, 2], fixed, floats
                )
            else:
                out[y, x] = frame[y, x, 0]
    return out


def to_grey(frame: npt.NDArray[np.generic], channel_order: str = "bgr") -> npt.NDArray[np.generic]:
    """Grey image (H, W) of a frame checked by `check_frame` (numba; same dtype as the frame)."""
    fixed, floats = grey_weights(channel_order)
    out = np.empty(frame.shape[:2], dtype=frame.dtype)
    return _grey_kernel(frame, fixed, floats, out)


@lru_cache(maxsize=64)
def area_taps(n_in: int, n_out: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Source indices and weights, each (n_out, K), of area resampling from n_in to n_out samples.

    Output sample i averages the source interval [i * n_in / n_out, (i + 1) * n_in / n_out),
    each source sample weighted by the fraction of that interval it covers (OpenCV's INTER_AREA).
    The overlaps are computed in integers, so no spurious tiny taps appear; rows with fewer than
    K taps are padded with weight 0 on a valid index. Both implementations sum the K taps in
    order, which makes their float32 results identical. The arrays are read-only (shared cache).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"area resampling from {n_in} to {n_out} samples; both must be >= 1")
    first = [(i * n_in) // n_out for i in range(n_out)]
    last = [((i + 1) * n_in - 1) // n_out for i in range(n_out)]
    n_taps = max(b - a + 1 for a, b in zip(first, last, strict=True))
    index = np.zeros((n_out, n_taps), dtype=np.int32)
    weight = np.zeros((n_out, n_taps), dtype=np.float32)
    for i in range(n_out):
        for k, j in enumerate(range(first[i], last[i] + 1)):
            overlap = min((i + 1) * n_in, (j + 1) * n_out) - max(i * n_in, j * n_out)
            index[i, k] = j
            weight[i, k] = overlap / n_in
        index[i, last[i] - first[i] + 1 :] = first[i]
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight
