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
numba kernel (:mod:`respike.events.dvs_step`, on one thread or several) and the numpy
reference (:mod:`respike.events.dvs_reference`) give identical packets: they compute the same
float32/float64 operations in the same order, and all random draws come from numpy generators
seeded by (seed, stream, frame index) outside the kernels. This module holds the settings, the
state between steps and what a step needs before the kernels: intensity levels, the log
table, thresholds and noise draws.

Example::

    dvs = DvsEmulator(on_threshold=0.2, off_threshold=0.2, seed=1)
    state = None
    for frame, t_us in frames:
        events, state = dvs(frame, t_us, state)   # first frame: empty packet
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import overload

from respike.events.dvs_reference import run_reference
from respike.events.dvs_step import (
    NEVER,
    Step,
    StepKernel,
    check_event_count,
    run_numba,
    run_threaded,
)
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
from respike.events.types import EventArray, empty_events

MAX_ABS_TIME_US = 1 << 61
"""Frame times must lie within +-2**61 µs (73 000 years) so time differences cannot overflow."""

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
            return self._step(frame, t_us, state, run_numba)
        return self._step(frame, t_us, state, partial(run_threaded, threads=self.threads))

    def reference(
        self, frame: npt.NDArray[np.generic], t_us: int, state: DvsState | None = None
    ) -> tuple[EventArray, DvsState]:
        """Same as calling the settings, computed by the plain numpy reference."""
        return self._step(frame, t_us, state, run_reference)

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
        check_event_count(int(expected))
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
        levels = (_levels_reference if run is run_reference else _levels_numba)(
            checked, self.channel_order
        )
        if state is None:
            return empty_events(0), self._fresh(levels, t1, fmt, format_changes, checked)
        dt = t1 - state.t
        frame_index = state.frame_index + 1
        noise = self._shot_noise(frame_index, dt, levels.shape[0])
        step = Step(
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


# --- unchanged frames ---------------------------------------------------------------------------


@kernel
def _same_bytes_kernel(a, b):
    """Whether two equally long uint8 arrays are equal: compared as 64-bit words, 4 KiB at a
    time (a vectorised compare with one branch per block, so a difference early in a frame
    stops it soon), then the last bytes."""
    n = a.shape[0]
    whole = n - n % 8
    x = a[:whole].view(np.uint64)
    y = b[:whole].view(np.uint64)
    words = x.shape[0]
    full = words - words % 512
    for start in range(0, full, 512):
        differ = np.uint64(0)
        for j in range(start, start + 512):
            differ |= x[j] ^ y[j]
        if differ:
            return False
    differ = np.uint64(0)
    for j in range(full, words):
        differ |= x[j] ^ y[j]
    for j in range(whole, n):
        differ |= np.uint64(a[j] ^ b[j])
    return differ == 0


def _same_bytes(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> bool:
    """Whether two C-contiguous arrays hold the same bytes (one kernel call, about a copy's time)."""
    x, y = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    if x.shape != y.shape:
        return False
    return bool(_same_bytes_kernel(x, y))
