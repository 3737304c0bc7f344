"""One DVS emulator step in numba: threshold crossings, their events, sorted by time.

:class:`~respike.events.emulator.DvsEmulator` prepares a :class:`Step` (the two frames'
intensity levels, the reference, thresholds, times and noise draws) and runs it here: on one
thread (:func:`run_numba`) or on several (:func:`run_threaded`, identical packets). The numpy
reference (:mod:`respike.events.dvs_reference`) computes the same step for the tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from respike.events.frames import kernel
from respike.events.key_sort import (
    count_digits,
    radix_scatter,
    radix_scatter_events,
    sort_into_words,
)
from respike.events.types import EVENT_DTYPE, EventArray

NEVER = np.iinfo(np.int64).min
"""``last_event_t`` of a pixel that has not fired in this stream."""

CHUNK = 4096
"""Pixels per chunk of the kernel: its scratch buffers stay in the L1/L2 cache."""

MAX_EVENTS = 1 << 27
"""Most events one step may give (2 GiB of packet): more means settings or input gone wrong,
and a clear ValueError beats running out of memory."""


class Step(NamedTuple):
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
StepKernel = Callable[[Step], StepResult]


def check_event_count(total: int) -> None:
    """Refuse a step that would give more than :data:`MAX_EVENTS` events."""
    if total > MAX_EVENTS:
        raise ValueError(
            f"one frame step would give {total} events (more than 2**27): thresholds too small, "
            "leak or noise rates too high, or frames too far apart"
        )


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
    sort_into_words(words, m, capacity, scratch, t0, dt)
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


def run_numba(step: Step) -> StepResult:
    words, log_ref, last, total = _dvs_kernel(*step, *_scratch(step.levels.shape[0]))
    check_event_count(total)
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
        count_digits(keys[key_start[b] : key_start[b] + made[b]], 33, segment_counts[b])
    edges = np.zeros(bands + 2, dtype=np.int64)  # keys of band b, then noise: one segment each
    for b in range(bands):  # close the gaps refractory suppression left (moves keys down)
        m = edges[b]
        if key_start[b] != m:
            for j in range(made[b]):
                keys[m + j] = keys[key_start[b] + j]
        edges[b + 1] = m + made[b]
    m = edges[bands]
    _noise_keys(noise_index, noise_offset, noise_polarity, width, keys[m : m + n_noise])
    count_digits(keys[m : m + n_noise], 33, segment_counts[bands])
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
                count_digits(src[edges[p] : edges[p + 1]], shift, counts[p])
        slots = np.zeros((parts, 256), dtype=np.int64)
        start = 0
        for digit in range(256):
            for p in range(parts):
                slots[p, digit] = start
                start += counts[p, digit]
        if d < passes - 1:
            for p in numba.prange(parts):
                radix_scatter(src[edges[p] : edges[p + 1]], dst, slots[p], shift)
            src, dst = dst, src
            for p in range(parts + 1):
                edges[p] = m * p // parts
        else:
            for p in numba.prange(parts):
                radix_scatter_events(src[edges[p] : edges[p + 1]], words, slots[p], shift, t0)
    return words[: 2 * m], new_ref, last, capacity


def run_threaded(step: Step, threads: int) -> StepResult:
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_parallel_chunksize(1)  # bands go to whichever thread is free: events bunch up
    words, log_ref, last, total = _dvs_kernel_threaded(
        *step, *_scratch(step.levels.shape[0]), threads
    )
    check_event_count(total)
    return words.view(EVENT_DTYPE), log_ref, last
