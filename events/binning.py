"""Event frames: event packets binned into (T, 2, H, W) polarity counts per time step, at any size.

This is the tensor the SNN steps on and the image the viewer draws. Channel 0 counts OFF events
(p = 0), channel 1 ON events (p = 1), as in tonic's ToFrame. An event at sensor pixel (x, y)
lands in output cell (x * w // W, y * h // H): every event is counted exactly once, so the
total of the frame equals the number of events in the time window, whatever the size.

Example::

    frames = EventFrames(sensor_size=(640, 480), n_time_bins=4, size=(128, 96))
    counts = frames(events, t_start=t0, t_end=t1)    # (4, 2, 96, 128) float32
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from respike.events.frames import check_size, kernel
from respike.events.types import EVENT_DTYPE, EventArray

DTYPES: tuple[str, ...] = ("float32", "int32")
MAX_TIME_BINS = 1 << 16
MAX_WINDOW_US = 1 << 44
"""Longest time window (about 200 days); keeps (t - t_start) * n_time_bins within int64."""

BinKernel = Callable[[EventArray, npt.NDArray[np.generic], int, int, int, int], int]


@dataclass(frozen=True)
class EventFrames:
    """Settings of event binning; calling it runs the numba kernel on one packet.

    - ``sensor_size``: (width, height) of the event coordinates;
    - ``n_time_bins``: T, the number of equal time steps the window is split into;
    - ``size``: (width, height) of the output, ``None`` for the sensor size (down- or up-scaling
      maps each sensor pixel to one output cell, so counts are conserved);
    - ``dtype``: ``"float32"`` (for torch; counts exact up to 2**24 per cell) or ``"int32"``.

    Events outside the time window are left out; events outside the sensor or with a polarity
    other than 0/1 are rejected (ValueError), since they mean the packet is not what it claims.
    """

    sensor_size: tuple[int, int]
    n_time_bins: int = 1
    size: tuple[int, int] | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_size(self.sensor_size, "sensor_size")
        if self.size is not None:
            check_size(self.size, "size")
        bins = self.n_time_bins
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_TIME_BINS:
            raise ValueError(f"n_time_bins is {bins!r}; expected an integer in 1..{MAX_TIME_BINS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype is {self.dtype!r}; expected one of {DTYPES}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape (T, 2, h, w) of the frames this produces."""
        width, height = self.size if self.size is not None else self.sensor_size
        return (self.n_time_bins, 2, height, width)

    def __call__(
        self, events: EventArray, t_start: int | None = None, t_end: int | None = None
    ) -> npt.NDArray[np.generic]:
        """Counts of ``events`` with ``t_start <= t < t_end`` (default: all events) per time bin."""
        return self._bin(events, t_start, t_end, _bin_kernel)

    def reference(
        self, events: EventArray, t_start: int | None = None, t_end: int | None = None
    ) -> npt.NDArray[np.generic]:
        """Same as calling the settings, computed by the plain numpy reference."""
        return self._bin(events, t_start, t_end, _bin_reference)

    def _bin(
        self, events: EventArray, t_start: int | None, t_end: int | None, kernel: BinKernel
    ) -> npt.NDArray[np.generic]:
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
            given = events.dtype if isinstance(events, np.ndarray) else type(events).__name__
            raise ValueError(f"event packet has dtype {given}; expected respike EVENT_DTYPE")
        if events.ndim != 1:
            raise ValueError(f"event packet has shape {events.shape}; expected a 1-D array")
        out = np.zeros(self.shape, dtype=self.dtype)
        if events.shape[0] == 0 and (t_start is None or t_end is None):
            return out
        start = int(events["t"].min()) if t_start is None else _time(t_start, "t_start")
        end = int(events["t"].max()) + 1 if t_end is None else _time(t_end, "t_end")
        if not 0 < end - start <= MAX_WINDOW_US:
            raise ValueError(
                f"time window [{start}, {end}) µs is empty or longer than 2**44 µs; "
                "expected t_start < t_end"
            )
        bad = kernel(events, out, start, end, *self.sensor_size)
        if bad:
            width, height = self.sensor_size
            raise ValueError(
                f"event packet has {bad} event(s) outside the {width}x{height} sensor or with "
                "polarity other than 0/1"
            )
        return out


def _time(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} is {value!r}; expected an integer time in µs")
    return int(value)


@kernel
def _bin_kernel(events, out, t_start, t_end, sensor_w, sensor_h):
    """Add each in-window event to its cell; returns the number of invalid events (then the
    caller raises, so a partly filled ``out`` is never returned).

    Integer divisions per event are slow, so the column and row of each sensor coordinate come
    from small tables and the time bin from a table of bin boundaries.
    """
    n_bins, _, out_h, out_w = out.shape
    counts = out.reshape(-1)
    column = (np.arange(sensor_w) * out_w) // sensor_w
    row = ((np.arange(sensor_h) * out_h) // sensor_h) * out_w
    plane = out_h * out_w
    window = t_end - t_start
    # bounds[k] = first offset of bin k = ceil(k * window / n_bins); bin(offset) is the last k
    # with bounds[k] <= offset, which is (offset * n_bins) // window. Packets are sorted by t,
    # so the bin is found by stepping from the previous event's (any order stays correct).
    bounds = np.empty(n_bins + 1, dtype=np.int64)
    for k in range(n_bins + 1):
        bounds[k] = (k * window + n_bins - 1) // n_bins
    bad = 0
    b = 0
    for i in range(events.shape[0]):
        x = np.int64(events[i].x)
        y = np.int64(events[i].y)
        p = np.int64(events[i].p)
        if x >= sensor_w or y >= sensor_h or p > 1:
            bad += 1
            continue
        offset = events[i].t - t_start
        if offset < 0 or offset >= window:
            continue
        while offset >= bounds[b + 1]:
            b += 1
        while offset < bounds[b]:
            b -= 1
        counts[(b * 2 + p) * plane + row[y] + column[x]] += 1
    return bad


def _bin_reference(
    events: EventArray,
    out: npt.NDArray[np.generic],
    t_start: int,
    t_end: int,
    sensor_w: int,
    sensor_h: int,
) -> int:
    """numpy reference: the same integer cell arithmetic, counted with np.bincount."""
    n_bins, _, out_h, out_w = out.shape
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    valid = (x < sensor_w) & (y < sensor_h) & (p <= 1)
    bad = int(np.count_nonzero(~valid))
    if bad:
        return bad
    keep = (t >= t_start) & (t < t_end)
    b = ((t[keep] - t_start) * n_bins) // (t_end - t_start)
    cell = ((b * 2 + p[keep]) * out_h + (y[keep] * out_h) // sensor_h) * out_w + (
        x[keep] * out_w
    ) // sensor_w
    counts = np.bincount(cell, minlength=out.size)
    out[...] = counts.reshape(out.shape)
    return 0
