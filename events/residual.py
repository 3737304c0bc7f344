"""ReSpike residual frames: each frame minus the key frame of its segment, signed, before any threshold.

ReSpike splits a clip into segments of K frames (stride 4 in the paper: key frames 0, 4, 8, ...);
the key frame goes to the ANN and the SNN sees residual = frame_i - key frame of i's segment. The
residual here is float32 in intensity units (uint8 frames are divided by 255, float32 frames are
already in [0, 1]), so it lies in [-1, 1] and a key frame's own residual is exactly zero.

Example::

    residuals = ResidualFrames(stride=4, size=(128, 128), color="grey")
    state = None
    for frame in frames:                      # uint8 BGR frames from OpenCV
        residual, state = residuals(frame, state)   # residual: (1, 128, 128) float32
        if state.is_key_frame:
            ...                               # send the frame to the key-frame ANN
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from respike.events.frames import (
    CHANNEL_ORDERS,
    FrameFormat,
    area_taps,
    check_size,
    continue_stream,
    grey_pixel,
    grey_reference,
    grey_weights,
    kernel,
)
from respike.events.inputs import KEY_RESIDUALS

COLORS: tuple[str, ...] = ("grey", "rgb")


class ResidualState(NamedTuple):
    """State between residual steps; ``None`` in its place starts a fresh stream.

    ``key`` is the current segment's key frame in working units, (C, h, w): uint8 when frames are
    uint8 and not resized (exact), float32 otherwise. Steps never modify a state's arrays.
    """

    key: npt.NDArray[np.generic]
    frame_index: int
    key_index: int
    frame_format: FrameFormat
    format_changes: int

    @property
    def is_key_frame(self) -> bool:
        """Whether the frame of the step that returned this state was a key frame."""
        return self.frame_index == self.key_index


class _Plan(NamedTuple):
    """What a step needs besides the frame, derived from the settings and the frame's format."""

    grey: bool
    channel_order: str
    channel_map: npt.NDArray[np.int64]
    fixed: npt.NDArray[np.int32]
    floats: npt.NDArray[np.float32]
    scale: np.float32
    out_shape: tuple[int, int, int]
    key_dtype: np.dtype[np.generic]
    taps: tuple[npt.NDArray[np.generic], ...] | None


ResidualKernel = Callable[
    [npt.NDArray[np.generic], npt.NDArray[np.generic], bool, npt.NDArray[np.float32], _Plan], None
]


@dataclass(frozen=True)
class ResidualFrames:
    """Settings of the ReSpike residual step; calling it runs the numba kernel on one frame.

    - ``stride``: a key frame every ``stride`` frames (frames 0, stride, 2 * stride, ...).
    - ``size``: (width, height) of the output, reached by area resampling (OpenCV INTER_AREA
      weights); ``None`` keeps the frame size.
    - ``color``: ``"grey"`` (one channel, BT.601 weights) or ``"rgb"`` (three channels, output
      in R, G, B order; needs 3-channel frames).
    - ``channel_order``: order of 3-channel input frames, ``"bgr"`` (OpenCV) or ``"rgb"``.
    - ``key_residual``: a key frame's residual, ``"zero"`` (ReSpike: the frame minus itself) or
      ``"previous"`` (the frame minus the previous key frame: the previous segment's residuals
      carried one step further, so that the change across a segment boundary reaches the SNN;
      zero at the first frame of a stream).

    A frame whose format (size, channel count or dtype) differs from the stream's restarts the
    stream instead of failing: it becomes frame 0 of a new stream (a key frame, residual zero)
    and ``state.format_changes`` goes up by one, so the caller can log it.
    """

    stride: int = 4
    size: tuple[int, int] | None = None
    color: str = "grey"
    channel_order: str = "bgr"
    key_residual: str = "zero"

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride is {self.stride!r}; expected an integer >= 1")
        if self.size is not None:
            check_size(self.size, "size")
        if self.color not in COLORS:
            raise ValueError(f"color is {self.color!r}; expected one of {COLORS}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"channel_order is {self.channel_order!r}; expected one of {CHANNEL_ORDERS}"
            )
        if self.key_residual not in KEY_RESIDUALS:
            raise ValueError(
                f"key_residual is {self.key_residual!r}; expected one of {KEY_RESIDUALS}"
            )

    def __call__(
        self, frame: npt.NDArray[np.generic], state: ResidualState | None = None
    ) -> tuple[npt.NDArray[np.float32], ResidualState]:
        """Residual (C, h, w) float32 of ``frame`` and the new state (numba kernel)."""
        return self._step(frame, state, _run_numba)

    def reference(
        self, frame: npt.NDArray[np.generic], state: ResidualState | None = None
    ) -> tuple[npt.NDArray[np.float32], ResidualState]:
        """Same as calling the settings, computed by the plain numpy reference."""
        return self._step(frame, state, _run_reference)

    @lru_cache(maxsize=16)  # noqa: B019 (settings are frozen and few; plans are small)
    def _plan(self, fmt: FrameFormat) -> _Plan:
        """Kernel arguments for frames of format ``fmt`` (cached: they depend on nothing else)."""
        fixed, floats = grey_weights(self.channel_order)
        if self.color == "rgb":
            if fmt.channels != 3:
                raise ValueError(
                    f"color='rgb' needs 3-channel frames; got {fmt.channels} channel(s) "
                    f"of {fmt.height}x{fmt.width}"
                )
            grey = False
            channel_map = np.array([2, 1, 0] if self.channel_order == "bgr" else [0, 1, 2])
        else:
            grey = fmt.channels == 3
            channel_map = np.array([0])
        out_w, out_h = self.size if self.size is not None else (fmt.width, fmt.height)
        resize = (out_w, out_h) != (fmt.width, fmt.height)
        taps = None
        if resize:
            ix, wx = area_taps(fmt.width, out_w)
            first = ix[:, 0].astype(np.int64)
            count = np.count_nonzero(wx, axis=1).astype(np.int64)
            taps = (*area_taps(fmt.height, out_h), first, count, wx)
        return _Plan(
            grey=grey,
            channel_order=self.channel_order,
            channel_map=channel_map.astype(np.int64),
            fixed=fixed,
            floats=floats,
            scale=np.float32(255.0 if fmt.dtype == "uint8" else 1.0),
            out_shape=(len(channel_map), out_h, out_w),
            key_dtype=np.dtype(np.float32 if resize else fmt.dtype),
            taps=taps,
        )

    def _step(
        self,
        frame: npt.NDArray[np.generic],
        state: ResidualState | None,
        run: ResidualKernel,
    ) -> tuple[npt.NDArray[np.float32], ResidualState]:
        checked, fmt, state, format_changes = continue_stream(frame, state)
        plan = self._plan(fmt)
        index = 0 if state is None else state.frame_index + 1
        is_key = state is None or index % self.stride == 0
        if is_key or state is None:
            key = np.empty(plan.out_shape, dtype=plan.key_dtype)
            key_index = index
        else:
            key, key_index = state.key, state.key_index
        out = np.empty(plan.out_shape, dtype=np.float32)
        run(checked, key, is_key, out, plan)
        if is_key and state is not None and self.key_residual == "previous":
            # Same float32 arithmetic as the kernels' (value - key) / scale.
            np.subtract(key, state.key, out=out, dtype=np.float32)
            out /= plan.scale
        return out, ResidualState(key, index, key_index, fmt, format_changes)


@kernel
def _grey_plane(src, keys, res, is_key, fixed, floats, scale):
    """Grey residual plane of interleaved 3-channel pixels ``src``."""
    if is_key:
        for i in range(res.shape[0]):
            keys[i] = grey_pixel(src[3 * i], src[3 * i + 1], src[3 * i + 2], fixed, floats)
            res[i] = 0.0
        return
    for i in range(res.shape[0]):
        value = grey_pixel(src[3 * i], src[3 * i + 1], src[3 * i + 2], fixed, floats)
        res[i] = (np.float32(value) - np.float32(keys[i])) / scale


@kernel
def _plane1(src, keys, res, is_key, scale):
    """Residual plane of a 1-channel frame."""
    if is_key:
        for i in range(res.shape[0]):
            keys[i] = src[i]
            res[i] = 0.0
        return
    for i in range(res.shape[0]):
        res[i] = (np.float32(src[i]) - np.float32(keys[i])) / scale


@kernel
def _plane3(src, keys, res, is_key, scale):
    """Residual plane of one channel of interleaved 3-channel pixels (``src`` starts at it)."""
    if is_key:
        for i in range(res.shape[0]):
            keys[i] = src[3 * i]
            res[i] = 0.0
        return
    for i in range(res.shape[0]):
        res[i] = (np.float32(src[3 * i]) - np.float32(keys[i])) / scale


@kernel
def _residual_full_kernel(frame, key, is_key, out, grey, channel_map, fixed, floats, scale):
    """Residual at frame size. On a key frame ``key`` is written and the residual is 0.0, which is
    exactly what (value - key) / scale gives there, so the reference may use the formula.

    One small kernel per plane and case, flat 1-D loops from index 0 with literal strides: the
    form LLVM vectorises (a runtime stride, an offset base index or a branch in the loop keeps
    it scalar, 5-10x slower).
    """
    pixels = frame.shape[0] * frame.shape[1]
    src = frame.reshape(-1)
    keys = key.reshape(-1)
    res = out.reshape(-1)
    for c in range(out.shape[0]):
        keys_c = keys[c * pixels : (c + 1) * pixels]
        res_c = res[c * pixels : (c + 1) * pixels]
        if grey:
            _grey_plane(src, keys_c, res_c, is_key, fixed, floats, scale)
        elif frame.shape[2] == 1:
            _plane1(src, keys_c, res_c, is_key, scale)
        else:
            _plane3(src[channel_map[c] :], keys_c, res_c, is_key, scale)


@kernel
def _accumulate_grey(row, acc_row, weight, fixed, floats):
    for x in range(acc_row.shape[0]):
        value = grey_pixel(row[3 * x], row[3 * x + 1], row[3 * x + 2], fixed, floats)
        acc_row[x] += weight * np.float32(value)


@kernel
def _accumulate1(row, acc_row, weight):
    for x in range(acc_row.shape[0]):
        acc_row[x] += weight * np.float32(row[x])


@kernel
def _horizontal1(rows, first, count, weights, work):
    """Column pass of one channel: output ox sums the ``count[ox]`` contiguous samples from
    ``first[ox]``, in tap order."""
    for ox in range(work.shape[0]):
        segment = rows[first[ox] :]
        acc = np.float32(0.0)
        for j in range(count[ox]):
            acc += weights[ox, j] * segment[j]
        work[ox] = acc


@kernel
def _horizontal3(rows, first, count, weights, work, o0, o1, o2):
    """Column pass of interleaved 3-channel rows; input channel k goes to output channel o_k.
    One tap weight serves the three channels, and a pixel's taps are contiguous in memory
    (read in memory order: a runtime channel offset here costs a factor 2)."""
    for ox in range(work.shape[1]):
        segment = rows[3 * first[ox] :]
        acc0 = np.float32(0.0)
        acc1 = np.float32(0.0)
        acc2 = np.float32(0.0)
        for j in range(count[ox]):
            weight = weights[ox, j]
            acc0 += weight * segment[3 * j]
            acc1 += weight * segment[3 * j + 1]
            acc2 += weight * segment[3 * j + 2]
        work[o0, ox] = acc0
        work[o1, ox] = acc1
        work[o2, ox] = acc2


@kernel
def _residual_area_kernel(
    frame, key, is_key, out, grey, channel_map, fixed, floats, scale, iy, wy, first, count, wx
):
    """Residual after separable area resampling: rows first (taps in order), then columns.

    Vertically, a grey frame is accumulated per pixel; an RGB or 1-channel frame row is
    accumulated as it lies in memory (interleaved), one contiguous vectorised pass per tap.
    Horizontally, output column ox sums its ``count[ox]`` contiguous source columns from
    ``first[ox]``. Zero-weight padding taps are skipped in both directions: the reference adds
    them, but adding +0.0 to a sum of non-negative terms leaves it unchanged, so the results
    stay identical.
    """
    _, width, channels = frame.shape
    n_out, out_h, out_w = out.shape
    row_len = width * channels
    src = frame.reshape(-1)
    keys = key.reshape(-1)
    res = out.reshape(-1)
    rows = np.empty(width if grey else row_len, dtype=np.float32)
    work = np.empty((n_out, out_w), dtype=np.float32)
    for oy in range(out_h):
        rows[:] = 0.0
        for k in range(iy.shape[1]):
            weight = wy[oy, k]
            if weight == 0.0:
                continue
            row = src[iy[oy, k] * row_len : (iy[oy, k] + 1) * row_len]
            if grey:
                _accumulate_grey(row, rows, weight, fixed, floats)
            else:
                _accumulate1(row, rows, weight)
        if n_out == 3:
            # channel_map, (2, 1, 0) or (0, 1, 2), is its own inverse: input k -> output map[k].
            o0, o1, o2 = channel_map[0], channel_map[1], channel_map[2]
            _horizontal3(rows, first, count, wx, work, o0, o1, o2)
        else:
            _horizontal1(rows, first, count, wx, work[0])
        for c in range(n_out):
            target = (c * out_h + oy) * out_w
            keys_c = keys[target : target + out_w]
            res_c = res[target : target + out_w]
            work_c = work[c]
            if is_key:
                keys_c[:] = work_c
            for ox in range(out_w):
                res_c[ox] = (work_c[ox] - keys_c[ox]) / scale


def _run_numba(
    frame: npt.NDArray[np.generic],
    key: npt.NDArray[np.generic],
    is_key: bool,
    out: npt.NDArray[np.float32],
    plan: _Plan,
) -> None:
    common = (plan.grey, plan.channel_map, plan.fixed, plan.floats, plan.scale)
    if plan.taps is None:
        _residual_full_kernel(frame, key, is_key, out, *common)
    else:
        _residual_area_kernel(frame, key, is_key, out, *common, *plan.taps)


def _run_reference(
    frame: npt.NDArray[np.generic],
    key: npt.NDArray[np.generic],
    is_key: bool,
    out: npt.NDArray[np.float32],
    plan: _Plan,
) -> None:
    """numpy reference: the same arithmetic in the same order, one whole-array step at a time."""
    if plan.grey:
        channels = grey_reference(frame, plan.channel_order)[None]
    else:
        channels = frame.transpose(2, 0, 1)[plan.channel_map]
    work: npt.NDArray[Any]
    if plan.taps is None:
        work = channels
    else:
        iy, wy = area_taps(frame.shape[0], plan.out_shape[1])
        ix, wx = area_taps(frame.shape[1], plan.out_shape[2])
        planes = channels.astype(np.float32)
        rows = np.zeros((planes.shape[0], iy.shape[0], planes.shape[2]), dtype=np.float32)
        for k in range(iy.shape[1]):
            rows = rows + wy[:, k][None, :, None] * planes[:, iy[:, k], :]
        work = np.zeros(plan.out_shape, dtype=np.float32)
        for j in range(ix.shape[1]):
            work = work + wx[:, j][None, None, :] * rows[:, :, ix[:, j]]
    if is_key:
        key[...] = work
    out[...] = (work.astype(np.float32) - key.astype(np.float32)) / plan.scale
