"""DVS emulation: frames in, events out, from a per-pixel log-intensity reference (v2e/ESIM style).

Model, per pixel, between the previous frame (time t0) and this one (t1):

- intensity -> log intensity with v2e's lin-log curve (linear below ``linear_below`` grey levels,
  log above, continuous), looked up in a table; float32 frames are first quantised to 16 bits
  (1/65535, far finer than any contrast threshold), so both implementations share the table;
  the table values and the thresholds are multiples of ``LOG_STEP`` (2**-18, see below);
- the pixel remembers a reference log intensity; the log intensity is taken to move linearly
  from the previous frame's value to this frame's; each time it has risen by the ON threshold
  above the reference an ON event is emitted (or fallen by the OFF threshold: OFF) and the
  reference moves by one threshold, so one frame can give several events per pixel;
- each event's time is where that crossing lies on the straight line between the two frames,
  floored to the µs, in [t0, t1): the events of consecutive steps never overlap in time;
- a crossing counts when the change reaches the threshold exactly (>=), also in float32: as
  table values and thresholds lie on one grid (``LOG_STEP``), the reference and its offsets are
  computed without rounding (without leak), so a pixel that comes back to an earlier level
  gives back every event it gave (a change of exactly k thresholds gives k events, the last at
  t1 - 1 µs), where off-grid values lost about one such crossing in two, for good;
- options, all seeded and off by default: per-pixel threshold mismatch (Gaussian, relative std
  ``threshold_mismatch``, drawn once per stream), a refractory period (a pixel that fired stays
  silent for ``refractory_us``; suppressed crossings still move the reference), leak events
  (the reference drifts down by ``leak_rate_hz`` ON thresholds per second, which makes static
  pixels fire ON events at about that rate) and shot noise (Poisson events at
  ``shot_noise_rate_hz`` per pixel, uniform in time and position, random polarity, independent
  of the reference and of the refractory period).

Events come out as one packet of ``EVENT_DTYPE`` sorted by t; among equal t, signal events in
raster order (row, column, then crossing number), then noise events in the order drawn. The
numba kernel and the numpy reference give identical packets: they compute the same float32/
float64 operations in the same order, and all random draws come from numpy generators seeded
by (seed, stream, frame index) outside the kernels.

Example::

    dvs = DvsEmulator(on_threshold=0.2, off_threshold=0.2, seed=1)
    state = None
    for frame, t_us in frames:
        events, state = dvs(frame, t_us, state)   # first frame: empty packet
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import overload

from respike.events.frames import (
    CHANNEL_ORDERS,
    LEVELS_U16,
    FrameFormat,
    continue_stream,
    grey_pixel,
    grey_reference,
    grey_weights,
    kernel,
)
from respike.events.types import EVENT_DTYPE, EventArray, empty_events

NEVER = np.iinfo(np.int64).min
"""``last_event_t`` of a pixel that has not fired in this stream."""

MAX_ABS_TIME_US = 1 << 61
"""Frame times must lie within +-2**61 µs (73 000 years) so time differences cannot overflow."""

CHUNK = 4096
"""Pixels per chunk of the kernel: its scratch buffers stay in the L1/L2 cache."""

MAX_INTERVAL_US = 1 << 30
"""Longest frame interval (about 18 minutes): event keys pack the time offset in 30 bits."""

LOG_STEP = 2.0**-18
"""Grid of the log table and the thresholds (3.8e-6, a 0.0004 % intensity change).

On it, every float32 sum and multiple the model forms (reference +- n thresholds, log value
minus reference) is exact while under 64 in size: 24 significant bits hold 64 / 2**-18. Log
values are under 5.6 and thresholds at most 10 (more only with extreme mismatch), so ties are
decided exactly and a reference that goes up and down by thresholds comes back to its start.
Leak moves the reference off the grid (a drift, where ties have no meaning).
"""

MAX_EVENTS = 1 << 27
"""Most events one step may give (2 GiB of packet): more means settings or input gone wrong,
and a clear ValueError beats running out of memory."""


class DvsState(NamedTuple):
    """State between emulator steps; ``None`` in its place starts a fresh stream.

    Arrays are flat (H * W,) in raster order. ``levels`` holds the previous frame's intensity
    levels (uint8 for uint8 frames, uint16 for float32 frames). ``last_event_t`` is empty when
    the refractory period is off; the threshold arrays have one element when there is no
    mismatch. ``frame`` is a copy of the previous frame: a next frame equal to it gives no
    events (without leak or noise, no crossing is pending after a step), so it is recognised
    by one comparison and skips the per-pixel work. Steps never modify a state's arrays: each
    returns new ones (or shares the unchanged ones).
    """

    log_ref: npt.NDArray[np.float32]
    levels: npt.NDArray[np.unsignedinteger]
    last_event_t: npt.NDArray[np.int64]
    on_thresholds: npt.NDArray[np.float32]
    off_thresholds: npt.NDArray[np.float32]
    t: int
    frame_index: int
    frame_format: FrameFormat
    format_changes: int
    frame: npt.NDArray[np.generic]


class _Step(NamedTuple):
    """One frame pair's inputs, shared by the numba kernel and the numpy reference."""

    levels: npt.NDArray[np.unsignedinteger]
    old_levels: npt.NDArray[np.unsignedinteger]
    lut: npt.NDArray[np.float32]
    log_ref: npt.NDArray[np.float32]
    on_thresholds: npt.NDArray[np.float32]
    off_thresholds: npt.NDArray[np.float32]
    leak: np.float32
    last_event_t: npt.NDArray[np.int64]
    refractory_us: int
    t0: int
    t1: int
    width: int
    noise_index: npt.NDArray[np.int64]
    noise_offset: npt.NDArray[np.int64]
    noise_polarity: npt.NDArray[np.uint8]


StepResult = tuple[EventArray, npt.NDArray[np.float32], npt.NDArray[np.int64]]
StepKernel = Callable[[_Step], StepResult]


@lru_cache(maxsize=8)
def log_table(linear_below: float, levels: int) -> npt.NDArray[np.float32]:
    """Lin-log response of ``levels`` intensity levels (256 for uint8, 65536 for float32 frames).

    Level q stands for grey value g = 255 q / (levels - 1); the response is log(g) above
    ``linear_below`` and g * log(linear_below) / linear_below below it (v2e's lin-log). Values
    are rounded to multiples of ``LOG_STEP`` (changes of at most 1.9e-6; neighbouring 16-bit
    levels still differ by 4 steps or more). The table is read-only (shared cache).
    """
    grey = np.arange(levels, dtype=np.float64) * (255.0 / (levels - 1))
    knee = float(linear_below)
    with np.errstate(divide="ignore"):
        table = np.where(
            grey >= knee, np.log(np.maximum(grey, knee)), grey * (math.log(knee) / knee)
        )
    out = (np.round(table / LOG_STEP) * LOG_STEP).astype(np.float32)
    out.setflags(write=False)
    return out


def grid_thresholds(thresholds: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Thresholds as the emulator uses them: rounded up to a multiple of ``LOG_STEP``, float32.

    Up, so that a threshold clipped at ``min_threshold`` stays at or above it.
    """
    return (np.ceil(np.asarray(thresholds, dtype=np.float64) / LOG_STEP) * LOG_STEP).astype(
        np.float32
    )


@dataclass(frozen=True)
class DvsEmulator:
    """Settings of the DVS emulator; calling it runs the numba kernel on one frame.

    Thresholds are in log-intensity units (0.2 is about a 22 % change, v2e's default), used
    rounded up to a multiple of ``LOG_STEP`` (``state.on_thresholds`` holds them). A frame
    whose format (size, channels, dtype) differs from the stream's restarts the stream instead of
    failing: it becomes the first frame of a new stream (no events) and ``state.format_changes``
    goes up by one. A frame time that does not increase, or that comes more than 2**30 µs
    (about 18 minutes) after the previous frame's, is rejected with ValueError: start a new
    stream (``state=None``) after such a gap.

    ``threads`` > 1 splits each step over that many threads (bands of rows, then a parallel
    radix sort), giving the same events; it pays on busy frames when the cores are free.
    """

    on_threshold: float = 0.2
    off_threshold: float = 0.2
    threshold_mismatch: float = 0.0
    min_threshold: float = 0.01
    refractory_us: int = 0
    leak_rate_hz: float = 0.0
    shot_noise_rate_hz: float = 0.0
    linear_below: float = 20.0
    channel_order: str = "bgr"
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        def number(name: str, low: float, high: float) -> None:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                raise ValueError(f"{name} is {value!r}; expected a number in [{low}, {high}]")

        number("min_threshold", 1e-3, 10.0)
        number("on_threshold", self.min_threshold, 10.0)
        number("off_threshold", self.min_threshold, 10.0)
        number("threshold_mismatch", 0.0, 1.0)
        number("leak_rate_hz", 0.0, 1000.0)
        number("shot_noise_rate_hz", 0.0, 1000.0)
        number("linear_below", 1.5, 255.0)
        for name in ("refractory_us", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} is {value!r}; expected an integer >= 0")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int):
            raise ValueError(f"threads is {self.threads!r}; expected an integer in [1, 64]")
        if not 1 <= self.threads <= 64:
            raise ValueError(f"threads is {self.threads!r}; expected an integer in [1, 64]")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"channel_order is {self.channel_order!r}; expected one of {CHANNEL_ORDERS}"
            )

    def __call__(
        self, frame: npt.NDArray[np.generic], t_us: int, state: DvsState | None = None
    ) -> tuple[EventArray, DvsState]:
        """Events between the previous frame and ``frame`` (taken at ``t_us``), and the new state."""
        if self.threads == 1:
            return self._step(frame, t_us, state, _run_numba)
        return self._step(frame, t_us, state, partial(_run_threaded, threads=self.threads))

    def reference(
        self, frame: npt.NDArray[np.generic], t_us: int, state: DvsState | None = None
    ) -> tuple[EventArray, DvsState]:
        """Same as calling the settings, computed by the plain numpy reference."""
        return self._step(frame, t_us, state, _run_reference)

    def _thresholds(self, pixels: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if self.threshold_mismatch == 0.0:
            return grid_thresholds([self.on_threshold]), grid_thresholds([self.off_threshold])
        rng = np.random.default_rng([self.seed, 0])
        spread = self.threshold_mismatch * rng.standard_normal((2, pixels))
        on = np.maximum(self.on_threshold * (1.0 + spread[0]), self.min_threshold)
        off = np.maximum(self.off_threshold * (1.0 + spread[1]), self.min_threshold)
        return grid_thresholds(on), grid_thresholds(off)

    def _shot_noise(
        self, frame_index: int, dt: int, pixels: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Noise events of one step: pixel index, offset from t0 in [0, dt), polarity."""
        if self.shot_noise_rate_hz == 0.0:
            none = np.zeros(0, dtype=np.int64)
            return none, none, np.zeros(0, dtype=np.uint8)
        expected = self.shot_noise_rate_hz * pixels * dt * 1e-6
        _check_event_count(int(expected))
        rng = np.random.default_rng([self.seed, 1, frame_index])
        count = int(rng.poisson(expected))
        index = rng.integers(0, pixels, count, dtype=np.int64)
        offset = rng.integers(0, dt, count, dtype=np.int64)
        polarity = rng.integers(0, 2, count, dtype=np.uint8)
        return index, offset, polarity

    def _fresh(
        self,
        levels: npt.NDArray[np.unsignedinteger],
        t_us: int,
        fmt: FrameFormat,
        changes: int,
        frame: npt.NDArray[np.generic],
    ) -> DvsState:
        lut = log_table(self.linear_below, 256 if levels.dtype == np.uint8 else LEVELS_U16 + 1)
        on, off = self._thresholds(levels.shape[0])
        last = np.full(levels.shape[0] if self.refractory_us else 0, NEVER, dtype=np.int64)
        return DvsState(lut[levels], levels, last, on, off, t_us, 0, fmt, changes, frame.copy())

    def _step(
        self,
        frame: npt.NDArray[np.generic],
        t_us: int,
        state: DvsState | None,
        run: StepKernel,
    ) -> tuple[EventArray, DvsState]:
        if isinstance(t_us, bool) or not isinstance(t_us, int | np.integer):
            raise ValueError(f"frame time is {t_us!r}; expected an integer time in µs")
        t1 = int(t_us)
        if abs(t1) >= MAX_ABS_TIME_US:
            raise ValueError(f"frame time {t1} µs is outside +-2**61 µs")
        checked, fmt, state, format_changes = continue_stream(frame, state)
        if state is not None and not 0 < t1 - state.t <= MAX_INTERVAL_US:
            raise ValueError(
                f"frame time {t1} µs is not within (0, 2**30] µs after the previous frame's "
                f"{state.t} µs; times must increase (start a new stream after a long gap)"
            )
        if state is not None and self._unchanged(checked, state):
            return empty_events(0), state._replace(t=t1, frame_index=state.frame_index + 1)
        levels = (_levels_reference if run is _run_reference else _levels_numba)(
            checked, self.channel_order
        )
        if state is None:
            return empty_events(0), self._fresh(levels, t1, fmt, format_changes, checked)
        dt = t1 - state.t
        frame_index = state.frame_index + 1
        noise = self._shot_noise(frame_index, dt, levels.shape[0])
        step = _Step(
            levels=levels,
            old_levels=state.levels,
            lut=log_table(self.linear_below, 256 if levels.dtype == np.uint8 else LEVELS_U16 + 1),
            log_ref=state.log_ref,
            on_thresholds=state.on_thresholds,
            off_thresholds=state.off_thresholds,
            leak=np.float32(self.leak_rate_hz * dt * 1e-6),
            last_event_t=state.last_event_t,
            refractory_us=self.refractory_us,
            t0=state.t,
            t1=t1,
            width=fmt.width,
            noise_index=noise[0],
            noise_offset=noise[1],
            noise_polarity=noise[2],
        )
        events, log_ref, last = run(step)
        new_state = DvsState(
            log_ref,
            levels,
            last,
            state.on_thresholds,
            state.off_thresholds,
            t1,
            frame_index,
            fmt,
            format_changes,
            checked.copy(),
        )
        return events, new_state

    def _unchanged(self, frame: npt.NDArray[np.generic], state: DvsState) -> bool:
        """``frame`` equals the state's and nothing but a change can give events."""
        if self.leak_rate_hz or self.shot_noise_rate_hz:
            return False
        return _same_bytes(frame, state.frame)


# --- intensity levels ---------------------------------------------------------------------------


def level_of(value: np.generic) -> np.generic:
    """Intensity level of a grey value: uint8 stays, float32 in [0, 1] -> uint16 0..65535.

    Plain Python for scalars; inside numba kernels the overload below is compiled instead.
    """
    if isinstance(value, np.integer):
        return value
    scaled = np.float32(value) * np.float32(LEVELS_U16) + np.float32(0.5)
    return np.uint16(min(scaled, np.float32(LEVELS_U16)))


@overload(level_of)
def _level_of_numba(value):
    if isinstance(value, types.Integer):
        return lambda value: value

    def quantise(value):
        scaled = value * np.float32(LEVELS_U16) + np.float32(0.5)
        return np.uint16(min(scaled, np.float32(LEVELS_U16)))

    return quantise


@kernel
def _levels3(src, out, fixed, floats):
    for i in range(out.shape[0]):
        out[i] = level_of(grey_pixel(src[3 * i], src[3 * i + 1], src[3 * i + 2], fixed, floats))


@kernel
def _levels1(src, out):
    for i in range(out.shape[0]):
        out[i] = level_of(src[i])


def _levels_numba(
    frame: npt.NDArray[np.generic], channel_order: str
) -> npt.NDArray[np.unsignedinteger]:
    """Flat intensity levels of a checked frame (numba)."""
    pixels = frame.shape[0] * frame.shape[1]
    out = np.empty(pixels, dtype=np.uint8 if frame.dtype == np.uint8 else np.uint16)
    if frame.shape[2] == 3:
        fixed, floats = grey_weights(channel_order)
        _levels3(frame.reshape(-1), out, fixed, floats)
    else:
        _levels1(frame.reshape(-1), out)
    return out


def _levels_reference(
    frame: npt.NDArray[np.generic], channel_order: str
) -> npt.NDArray[np.unsignedinteger]:
    """Flat intensity levels of a checked frame (numpy reference)."""
    grey = grey_reference(frame, channel_order).reshape(-1)
    if grey.dtype == np.uint8:
        return grey.astype(np.uint8, copy=True)
    scaled = grey.astype(np.float32) * np.float32(LEVELS_U16) + np.float32(0.5)
    return np.minimum(scaled, np.float32(LEVELS_U16)).astype(np.uint16)


# --- numba kernel -------------------------------------------------------------------------------


@kernel
def _same_words(a, b):
    """Whether two uint64 arrays are equal, 4 KiB at a time (a vectorised compare with one
    branch per block, so a difference early in a frame stops it soon)."""
    n = a.shape[0]
    full = n - n % 512
    for start in range(0, full, 512):
        differ = np.uint64(0)
        for j in range(start, start + 512):
            differ |= a[j] ^ b[j]
        if differ:
            return False
    differ = np.uint64(0)
    for j in range(full, n):
        differ |= a[j] ^ b[j]
    return differ == 0


def _same_bytes(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> bool:
    """Whether two C-contiguous arrays hold the same bytes (compared as 64-bit words)."""
    x, y = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    if x.shape != y.shape:
        return False
    whole = x.shape[0] - x.shape[0] % 8
    if not _same_words(x[:whole].view(np.uint64), y[:whole].view(np.uint64)):
        return False
    return bool(np.array_equal(x[whole:], y[whole:]))


@kernel(inline="always")
def _crossings(log_now, log_ref, c_on, c_off, leak):
    """Signed number of threshold crossings of one pixel, its new reference, and the offset d1.

    Exact for on-grid inputs (``LOG_STEP``): d1, the quotients' integer parts and the new
    reference carry no rounding error. Branch-free (both quotients computed, one selected) so
    the chunk loops vectorise.
    """
    ref = log_ref - leak * c_on
    d1 = log_now - ref
    q_on = np.int32(d1 / c_on)
    q_off = np.int32(-d1 / c_off)
    n = np.int32(0)
    if d1 >= c_on:
        n = q_on
    if d1 <= -c_off:
        n = -q_off
    c = c_on if n > 0 else c_off
    return n, ref + np.float32(n) * c, d1


@kernel
def _cross_uniform(log_now, log_ref, new_ref, n_out, d1_out, c_on, c_off, leak):
    total = 0
    for i in range(log_now.shape[0]):
        n, ref, d1 = _crossings(log_now[i], log_ref[i], c_on, c_off, leak)
        new_ref[i] = ref
        n_out[i] = n
        d1_out[i] = d1
        total += abs(n)
    return total


@kernel
def _cross_mismatch(log_now, log_ref, new_ref, n_out, d1_out, c_on, c_off, leak):
    total = 0
    for i in range(log_now.shape[0]):
        n, ref, d1 = _crossings(log_now[i], log_ref[i], c_on[i], c_off[i], leak)
        new_ref[i] = ref
        n_out[i] = n
        d1_out[i] = d1
        total += abs(n)
    return total


@kernel
def _lookup(levels, lut, out):
    for i in range(levels.shape[0]):
        out[i] = lut[levels[i]]


@kernel
def _nonzero_mask(values):
    """Bit j set where values[j] != 0, for 64 values (a vectorised OR-reduction)."""
    mask = np.uint64(0)
    for j in range(64):
        mask |= np.uint64(values[j] != 0) << np.uint64(j)
    return mask


def _de_bruijn_table() -> npt.NDArray[np.int64]:
    table = np.zeros(64, dtype=np.int64)
    for bit in range(64):
        table[(((1 << bit) * _DE_BRUIJN) & 0xFFFFFFFFFFFFFFFF) >> 58] = bit
    return table


_DE_BRUIJN = 0x03F79D71B4CB0A89
_LOWEST_BIT = _de_bruijn_table()


@kernel(inline="always")
def _lowest_bit(mask):
    """Index of the lowest set bit of a non-zero uint64 (de Bruijn multiplication)."""
    isolated = mask & (~mask + np.uint64(1))
    return _LOWEST_BIT[(isolated * np.uint64(_DE_BRUIJN)) >> np.uint64(58)]


@kernel
def _chunk_crossings(
    chunk, levels, lut, log_ref, new_ref, c_on, c_off, leak, log_now, n_buf, d1_buf
):
    """Crossings of one chunk into the chunk buffers; writes the chunk's new references and
    returns its number of crossings."""
    lo = chunk * CHUNK
    hi = min(lo + CHUNK, levels.shape[0])
    size = hi - lo
    _lookup(levels[lo:hi], lut, log_now[:size])
    if c_on.shape[0] > 1:
        return _cross_mismatch(
            log_now[:size],
            log_ref[lo:hi],
            new_ref[lo:hi],
            n_buf[:size],
            d1_buf[:size],
            c_on[lo:hi],
            c_off[lo:hi],
            leak,
        )
    return _cross_uniform(
        log_now[:size],
        log_ref[lo:hi],
        new_ref[lo:hi],
        n_buf[:size],
        d1_buf[:size],
        c_on[0],
        c_off[0],
        leak,
    )


@kernel
def _compact(lo, n_buf, d1_buf, act_i, act_n, act_d1, count):
    """Append the chunk's pixels with crossings (raster order) to the active list: per 64
    pixels a bit mask of the non-zero counts, then only its set bits are visited."""
    size = n_buf.shape[0]
    full = size - size % 64
    for sub in range(0, full, 64):
        mask = _nonzero_mask(n_buf[sub : sub + 64])
        while mask != 0:
            j = sub + _lowest_bit(mask)
            mask &= mask - np.uint64(1)
            act_i[count] = lo + j
            act_n[count] = n_buf[j]
            act_d1[count] = d1_buf[j]
            count += 1
    for j in range(full, size):
        if n_buf[j] != 0:
            act_i[count] = lo + j
            act_n[count] = n_buf[j]
            act_d1[count] = d1_buf[j]
            count += 1
    return count


@kernel
def _active_events(
    act_i,
    act_n,
    act_d1,
    count,
    old_levels,
    lut,
    log_ref,
    c_on,
    c_off,
    last,
    refractory,
    t0,
    dt,
    width,
    keys,
):
    """Events of the active pixels as packed keys in raster order; returns how many.

    Crossing k of a pixel lies at offset sign * k * c from its reference; the pixel's offset
    moved from d0 to d1 in a straight line over the frame interval, so the crossing is at the
    fraction (level - d0) * (1 / (d1 - d0)) of it, clamped and floored to [0, dt - 1] µs.
    A key packs (time offset << 33) | (y << 17) | (x << 1) | polarity.
    """
    mismatch = c_on.shape[0] > 1
    inv_width = 1.0 / width
    span = np.float64(dt)
    m = 0
    for a in range(count):
        i = act_i[a]
        n = act_n[a]
        y = np.int64(i * inv_width)
        if y * width > i:
            y -= 1
        elif (y + 1) * width <= i:
            y += 1
        x = i - y * width
        if n > 0:
            c = np.float64(c_on[i] if mismatch else c_on[0])
            sign = 1
            xyp = (y << 17) | (x << 1) | 1
        else:
            c = np.float64(c_off[i] if mismatch else c_off[0])
            sign = -1
            xyp = (y << 17) | (x << 1)
        d0 = np.float64(lut[old_levels[i]] - log_ref[i])
        denom = np.float64(act_d1[a]) - d0
        inv = 1.0 / denom if denom != 0.0 else 0.0
        for k in range(1, abs(n) + 1):
            frac = 1.0
            if denom != 0.0:
                frac = (np.float64(sign * k) * c - d0) * inv
            frac = min(max(frac, 0.0), 1.0)
            offset = min(np.int64(frac * span), dt - 1)
            if refractory > 0:
                if last[i] != NEVER and t0 + offset - last[i] < refractory:
                    continue
                last[i] = t0 + offset
            keys[m] = (offset << 33) | xyp
            m += 1
    return m


@kernel
def _digit_histograms(keys, passes):
    """Exclusive prefix sums of the 8-bit digits of every key's time offset (the first two
    only when ``passes`` <= 2, the common case of frame intervals under 65.536 ms)."""
    counts = np.zeros((4, 257), dtype=np.int64)
    if passes <= 2:
        for j in range(keys.shape[0]):
            offset = keys[j] >> 33
            counts[0, (offset & 255) + 1] += 1
            counts[1, ((offset >> 8) & 255) + 1] += 1
    else:
        for j in range(keys.shape[0]):
            offset = keys[j] >> 33
            counts[0, (offset & 255) + 1] += 1
            counts[1, ((offset >> 8) & 255) + 1] += 1
            counts[2, ((offset >> 16) & 255) + 1] += 1
            counts[3, ((offset >> 24) & 255) + 1] += 1
    for d in range(4):
        for b in range(256):
            counts[d, b + 1] += counts[d, b]
    return counts


@kernel
def _radix_scatter(src, dst, starts, shift):
    """One stable counting-sort pass of the keys by the 8-bit digit at ``shift``."""
    for j in range(src.shape[0]):
        key = src[j]
        digit = (key >> shift) & 255
        slot = starts[digit]
        starts[digit] = slot + 1
        dst[slot] = key


@kernel
def _radix_scatter_events(src, words, starts, shift, t0):
    """The last pass: stable by the digit at ``shift``, each key written as an event record."""
    for j in range(src.shape[0]):
        key = src[j]
        digit = (key >> shift) & 255
        slot = starts[digit]
        starts[digit] = slot + 1
        words[2 * slot] = t0 + (key >> 33)
        words[2 * slot + 1] = (
            ((key >> 1) & 0xFFFF) | (((key >> 17) & 0xFFFF) << 16) | ((key & 1) << 32)
        )


@kernel
def _sort_into_words(words, m, capacity, scratch, t0, dt):
    """Stable LSD radix sort by time offset (8-bit digits) of the m packed keys held in
    ``words[capacity:capacity + m]``, written as events into ``words[:2 * m]``.

    Two int64 words per event (t; x | y << 16 | p << 32) are the little-endian bytes of an
    EVENT_DTYPE record with zeroed padding. Keys sit in the upper half of the output buffer to
    save an allocation; the last pass always reads from ``scratch`` so that writing the output
    never overwrites a key not yet read. Stable: equal times keep the order the keys came in.
    """
    passes = 1
    while passes < 4 and (dt - 1) >> (8 * passes) > 0:
        passes += 1
    keys = words[capacity : capacity + m]
    tmp = scratch[:m]
    starts = _digit_histograms(keys, passes)
    src, dst = keys, tmp
    if passes % 2 == 1:
        tmp[:] = keys
        src, dst = tmp, keys
    for d in range(passes - 1):
        _radix_scatter(src, dst, starts[d], 33 + 8 * d)
        src, dst = dst, src
    _radix_scatter_events(src, words, starts[passes - 1], 33 + 8 * (passes - 1), t0)


@kernel
def _dvs_kernel(
    levels,
    old_levels,
    lut,
    log_ref,
    c_on,
    c_off,
    leak,
    last_event_t,
    refractory,
    t0,
    t1,
    width,
    noise_index,
    noise_offset,
    noise_polarity,
    act_i,
    act_n,
    act_d1,
    sort_scratch,
):
    """One frame pair (``act_*`` and ``sort_scratch``: the caller's reused scratch arrays).

    1. Per chunk of pixels: log lookup (a scalar gather, which LLVM does not vectorise), then
       vectorised crossing counts and new references; the chunk's pixels with crossings are
       appended to an active list (its arrays are allocated for every pixel but only the
       pages written are ever touched).
    2. Events of the active pixels as packed keys, then noise keys.
    3. Stable radix sort by time into the output words.

    Returns (event words, new log reference, new last-event times, crossings + noise events);
    when that count exceeds MAX_EVENTS no event is made and the words are empty.
    """
    pixels = levels.shape[0]
    dt = t1 - t0
    new_ref = np.empty(pixels, dtype=np.float32)
    last = last_event_t.copy()
    log_now = np.empty(CHUNK, dtype=np.float32)
    n_buf = np.empty(CHUNK, dtype=np.int32)
    d1_buf = np.empty(CHUNK, dtype=np.float32)
    count = 0
    total = 0
    for chunk in range((pixels + CHUNK - 1) // CHUNK):
        crossings = _chunk_crossings(
            chunk, levels, lut, log_ref, new_ref, c_on, c_off, leak, log_now, n_buf, d1_buf
        )
        if crossings:
            total += crossings
            size = min(CHUNK, pixels - chunk * CHUNK)
            count = _compact(
                chunk * CHUNK, n_buf[:size], d1_buf[:size], act_i, act_n, act_d1, count
            )
    n_noise = noise_index.shape[0]
    capacity = total + n_noise
    if capacity > MAX_EVENTS:
        return np.empty(0, dtype=np.int64), new_ref, last, capacity
    # The output buffer (two words per event) holds the keys in its upper half until sorted.
    words = np.empty(2 * capacity, dtype=np.int64)
    keys = words[capacity:]
    m = _active_events(
        act_i,
        act_n,
        act_d1,
        count,
        old_levels,
        lut,
        log_ref,
        c_on,
        c_off,
        last,
        refractory,
        t0,
        dt,
        width,
        keys,
    )
    for j in range(n_noise):
        index = noise_index[j]
        y = index // width
        x = index - y * width
        keys[m] = (noise_offset[j] << 33) | (y << 17) | (x << 1) | np.int64(noise_polarity[j])
        m += 1
    scratch = sort_scratch[:m] if sort_scratch.shape[0] >= m else np.empty(m, dtype=np.int64)
    _sort_into_words(words, m, capacity, scratch, t0, dt)
    return words[: 2 * m], new_ref, last, capacity


_SCRATCH = threading.local()


def _scratch(pixels: int) -> tuple[np.ndarray, ...]:
    """This thread's scratch arrays for steps of ``pixels`` pixels: the active-pixel lists and
    the sort's buffer, reused from step to step (fresh ones would page-fault in on every
    step, and on several threads at once those faults queue on the process's memory map)."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None or arrays[0].shape[0] != pixels:
        arrays = (
            np.empty(pixels, dtype=np.int64),
            np.empty(pixels, dtype=np.int32),
            np.empty(pixels, dtype=np.float32),
            np.empty(4 * pixels, dtype=np.int64),
        )
        _SCRATCH.arrays = arrays
    return arrays


def _run_numba(step: _Step) -> StepResult:
    words, log_ref, last, total = _dvs_kernel(*step, *_scratch(step.levels.shape[0]))
    _check_event_count(total)
    return words.view(EVENT_DTYPE), log_ref, last


# --- the same step on several threads -----------------------------------------------------------


@kernel
def _band_crossings(lo, hi, levels, lut, log_ref, new_ref, c_on, c_off, leak, act_i, act_n, act_d1):
    """Crossings of the pixels [lo, hi) (``lo`` a chunk boundary), their active list written
    from index ``lo`` on; returns (active pixels, crossings)."""
    log_now = np.empty(CHUNK, dtype=np.float32)
    n_buf = np.empty(CHUNK, dtype=np.int32)
    d1_buf = np.empty(CHUNK, dtype=np.float32)
    count = lo
    total = 0
    for chunk in range(lo // CHUNK, (hi + CHUNK - 1) // CHUNK):
        crossings = _chunk_crossings(
            chunk, levels, lut, log_ref, new_ref, c_on, c_off, leak, log_now, n_buf, d1_buf
        )
        if crossings:
            total += crossings
            size = min(CHUNK, levels.shape[0] - chunk * CHUNK)
            count = _compact(
                chunk * CHUNK, n_buf[:size], d1_buf[:size], act_i, act_n, act_d1, count
            )
    return count - lo, total


@kernel
def _noise_keys(noise_index, noise_offset, noise_polarity, width, keys):
    for j in range(noise_index.shape[0]):
        index = noise_index[j]
        y = index // width
        x = index - y * width
        keys[j] = (noise_offset[j] << 33) | (y << 17) | (x << 1) | np.int64(noise_polarity[j])


@kernel
def _count_digits(keys, shift, counts):
    for j in range(keys.shape[0]):
        counts[(keys[j] >> shift) & 255] += 1


BANDS_PER_THREAD = 32
"""Bands of rows per thread: events bunch up in a few rows, and small bands handed out as
threads come free keep the threads equally busy."""


PRANGE_ONLY = {
    "prange": True,
    "numpy": False,
    "setitem": False,
    "reduction": False,
    "comprehension": False,
    "inplace_binop": False,
    "stencil": False,
    "fusion": False,
}
"""Only the explicit ``prange`` loops run on threads: with a parallel chunk size of 1 (bands
handed out one at a time), an implicit parallel array operation would be split per element."""


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=PRANGE_ONLY)  # type: ignore[call-overload]
def _dvs_kernel_threaded(
    levels,
    old_levels,
    lut,
    log_ref,
    c_on,
    c_off,
    leak,
    last_event_t,
    refractory,
    t0,
    t1,
    width,
    noise_index,
    noise_offset,
    noise_polarity,
    act_i,
    act_n,
    act_d1,
    sort_scratch,
    parts,
):
    """:func:`_dvs_kernel` on ``parts`` threads: crossings and event keys per band of rows,
    then a stable LSD radix sort whose passes count and scatter ``parts`` contiguous pieces of
    the keys at once (each piece gets its own slots per digit, in piece order). Keys enter the
    sort in the single-threaded order (band by band, then noise) and every pass is stable, so
    the packets are identical."""
    pixels = levels.shape[0]
    dt = t1 - t0
    chunks = (pixels + CHUNK - 1) // CHUNK
    bands = max(1, min(chunks, BANDS_PER_THREAD * parts))
    bounds = np.empty(bands + 1, dtype=np.int64)
    for b in range(bands + 1):
        bounds[b] = min(pixels, (chunks * b // bands) * CHUNK)
    new_ref = np.empty(pixels, dtype=np.float32)
    last = last_event_t.copy()
    band_count = np.zeros(bands, dtype=np.int64)
    band_total = np.zeros(bands, dtype=np.int64)
    for b in numba.prange(bands):
        band_count[b], band_total[b] = _band_crossings(
            bounds[b], bounds[b + 1], levels, lut, log_ref, new_ref, c_on, c_off, leak,
            act_i, act_n, act_d1,
        )  # fmt: skip
    n_noise = noise_index.shape[0]
    capacity = band_total.sum() + n_noise
    if capacity > MAX_EVENTS:
        return np.empty(0, dtype=np.int64), new_ref, last, capacity
    words = np.empty(2 * capacity, dtype=np.int64)
    keys = words[capacity:]
    key_start = np.zeros(bands + 1, dtype=np.int64)
    for b in range(bands):
        key_start[b + 1] = key_start[b] + band_total[b]
    made = np.zeros(bands, dtype=np.int64)
    segment_counts = np.zeros((bands + 1, 256), dtype=np.int64)  # digit 0, per band and noise
    for b in numba.prange(bands):
        lo = bounds[b]
        made[b] = _active_events(
            act_i[lo:], act_n[lo:], act_d1[lo:], band_count[b], old_levels, lut, log_ref,
            c_on, c_off, last, refractory, t0, dt, width, keys[key_start[b] :],
        )  # fmt: skip
        _count_digits(keys[key_start[b] : key_start[b] + made[b]], 33, segment_counts[b])
    edges = np.zeros(bands + 2, dtype=np.int64)  # keys of band b, then noise: one segment each
    for b in range(bands):  # close the gaps refractory suppression left (moves keys down)
        m = edges[b]
        if key_start[b] != m:
            for j in range(made[b]):
                keys[m + j] = keys[key_start[b] + j]
        edges[b + 1] = m + made[b]
    m = edges[bands]
    _noise_keys(noise_index, noise_offset, noise_polarity, width, keys[m : m + n_noise])
    _count_digits(keys[m : m + n_noise], 33, segment_counts[bands])
    m += n_noise
    edges[bands + 1] = m
    # The first pass's pieces: runs of whole segments with about m / parts keys each (pieces
    # of whole segments keep their digit counts; few pieces keep the threads' slots apart).
    piece_edges = np.zeros(parts + 1, dtype=np.int64)
    counts = np.zeros((parts, 256), dtype=np.int64)
    g = 0
    for p in range(parts):
        target = m * (p + 1) // parts
        while g < bands + 1 and (p == parts - 1 or edges[g + 1] <= target):
            counts[p] += segment_counts[g]
            g += 1
        piece_edges[p + 1] = edges[g]
    edges = piece_edges
    passes = 1
    while passes < 4 and (dt - 1) >> (8 * passes) > 0:
        passes += 1
    scratch = sort_scratch[:m] if sort_scratch.shape[0] >= m else np.empty(m, dtype=np.int64)
    src = keys[:m]
    dst = scratch
    if passes % 2 == 1:
        scratch[:] = src
        src, dst = scratch, keys[:m]
    # Pass by pass: each piece counts its digits (the first pass's counts come from the
    # bands), takes its own slots per digit in piece order, and scatters at once.
    for d in range(passes):
        shift = 33 + 8 * d
        if d > 0:
            for p in numba.prange(parts):
                counts[p] = 0
                _count_digits(src[edges[p] : edges[p + 1]], shift, counts[p])
        slots = np.zeros((parts, 256), dtype=np.int64)
        start = 0
        for digit in range(256):
            for p in range(parts):
                slots[p, digit] = start
                start += counts[p, digit]
        if d < passes - 1:
            for p in numba.prange(parts):
                _radix_scatter(src[edges[p] : edges[p + 1]], dst, slots[p], shift)
            src, dst = dst, src
            for p in range(parts + 1):
                edges[p] = m * p // parts
        else:
            for p in numba.prange(parts):
                _radix_scatter_events(src[edges[p] : edges[p + 1]], words, slots[p], shift, t0)
    return words[: 2 * m], new_ref, last, capacity


def _run_threaded(step: _Step, threads: int) -> StepResult:
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_parallel_chunksize(1)  # bands go to whichever thread is free: events bunch up
    words, log_ref, last, total = _dvs_kernel_threaded(
        *step, *_scratch(step.levels.shape[0]), threads
    )
    _check_event_count(total)
    return words.view(EVENT_DTYPE), log_ref, last


def _check_event_count(total: int) -> None:
    if total > MAX_EVENTS:
        raise ValueError(
            f"one frame step would give {total} events (more than 2**27): thresholds too small, "
            "leak or noise rates too high, or frames too far apart"
        )


# --- numpy reference ----------------------------------------------------------------------------


def _run_reference(step: _Step) -> StepResult:
    """numpy reference: whole-array float32 updates, then one vectorised pass per crossing number."""
    pixels = step.levels.shape[0]
    c_on = np.broadcast_to(step.on_thresholds, (pixels,))
    c_off = np.broadcast_to(step.off_thresholds, (pixels,))
    log_now = step.lut[step.levels]
    ref = step.log_ref - step.leak * c_on
    d1 = log_now - ref
    on = d1 >= c_on
    off = ~on & (d1 <= -c_off)
    n = np.zeros(pixels, dtype=np.int64)
    n[on] = (d1[on] / c_on[on]).astype(np.int64)
    n[off] = -((-d1[off]) / c_off[off]).astype(np.int64)
    c = np.where(n > 0, c_on, c_off)
    new_ref = ref + n.astype(np.float32) * c
    _check_event_count(int(np.abs(n).sum()) + step.noise_index.shape[0])

    active = np.flatnonzero(n)
    n_act = n[active]
    sign = np.sign(n_act)
    c_act = c[active].astype(np.float64)
    d0 = (step.lut[step.old_levels[active]] - step.log_ref[active]).astype(np.float64)
    d1_act = d1[active].astype(np.float64)
    denom = d1_act - d0
    inv = 1.0 / np.where(denom != 0.0, denom, 1.0)
    dt = step.t1 - step.t0
    use_refractory = step.refractory_us > 0
    last = step.last_event_t.copy()
    times, pixel, crossing, polarity = [], [], [], []
    for k in range(1, int(np.abs(n_act).max(initial=0)) + 1):
        has_k = np.abs(n_act) >= k
        idx = active[has_k]
        level = (sign[has_k] * k).astype(np.float64) * c_act[has_k]
        frac = np.where(denom[has_k] != 0.0, (level - d0[has_k]) * inv[has_k], 1.0)
        frac = np.minimum(np.maximum(frac, 0.0), 1.0)
        t = step.t0 + np.minimum((frac * np.float64(dt)).astype(np.int64), dt - 1)
        if use_refractory:
            prev = last[idx]
            keep = (prev == NEVER) | (t - prev >= step.refractory_us)
            idx, t, has_sign = idx[keep], t[keep], sign[has_k][keep]
            last[idx] = t
        else:
            has_sign = sign[has_k]
        times.append(t)
        pixel.append(idx)
        crossing.append(np.full(idx.shape[0], k, dtype=np.int64))
        polarity.append((has_sign > 0).astype(np.uint8))
    if times:
        t_all, pix_all = np.concatenate(times), np.concatenate(pixel)
        k_all, p_all = np.concatenate(crossing), np.concatenate(polarity)
        raster = np.lexsort((k_all, pix_all))
        t_all, pix_all, p_all = t_all[raster], pix_all[raster], p_all[raster]
    else:
        t_all = pix_all = np.zeros(0, dtype=np.int64)
        p_all = np.zeros(0, dtype=np.uint8)
    t_all = np.concatenate([t_all, step.t0 + step.noise_offset])
    pix_all = np.concatenate([pix_all, step.noise_index])
    p_all = np.concatenate([p_all, step.noise_polarity])
    order = np.argsort(t_all, kind="stable")
    events = empty_events(order.shape[0])
    events["t"] = t_all[order]
    events["x"] = pix_all[order] % step.width
    events["y"] = pix_all[order] // step.width
    events["p"] = p_all[order]
    return events, new_ref, last
