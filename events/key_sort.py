"""Stable LSD radix sort of packed event keys by time, written out as event records.

The DVS kernels pack each event as one int64 key: ``(time offset << 33) | (y << 17) |
(x << 1) | polarity``, the offset from the step's start in µs. Sorting by the offset with 8-bit
digits, least significant first, each pass stable, keeps equal times in the order the keys came
in (raster order, then noise): what the emulator's packets promise. The last pass writes each
key as an ``EVENT_DTYPE`` record (two int64 words: t; x | y << 16 | p << 32).
"""

from __future__ import annotations

import numpy as np

from respike.events.frames import kernel


@kernel
def digit_histograms(keys, passes):
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
def radix_scatter(src, dst, starts, shift):
    """One stable counting-sort pass of the keys by the 8-bit digit at ``shift``."""
    for j in range(src.shape[0]):
        key = src[j]
        digit = (key >> shift) & 255
        slot = starts[digit]
        starts[digit] = slot + 1
        dst[slot] = key


@kernel
def radix_scatter_events(src, words, starts, shift, t0):
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
def sort_into_words(words, m, capacity, scratch, t0, dt):
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
    starts = digit_histograms(keys, passes)
    src, dst = keys, tmp
    if passes % 2 == 1:
        tmp[:] = keys
        src, dst = tmp, keys
    for d in range(passes - 1):
        radix_scatter(src, dst, starts[d], 33 + 8 * d)
        src, dst = dst, src
    radix_scatter_events(src, words, starts[passes - 1], 33 + 8 * (passes - 1), t0)


@kernel
def count_digits(keys, shift, counts):
    for j in range(keys.shape[0]):
        counts[(keys[j] >> shift) & 255] += 1
