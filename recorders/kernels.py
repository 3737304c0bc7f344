"""Numba decoders for the record streams (Prophesee EVT2/EVT3 words, the same EVT3 in ROS packets,
N-MNIST 40-bit records): no maintained Python library decodes them in chunks with validation and
byte offsets, and expelliarmus (the one tonic uses) gets EVT3 times wrong.

Each kernel is resumable: it decodes words from ``start`` into a caller-owned packet (seen through
:func:`record_words`, two int64 stores per event) until the words or the output room run out,
keeps its decoder state in a small int64 array between calls (so chunk and packet boundaries are
invisible), and stops at the first word that cannot come from a working sensor, returning its
index so the caller can name the byte offset. Times come out
in µs, non-decreasing: a time that steps back inside the sensor's tolerance is held at the last
time (the rollover rule below decides what is a step back and what is a wrap-around).

Why not expelliarmus for EVT3 (measured on ../shared/data/prophesee/evt3_sample.raw): it treats
every small TIME_LOW step back (3-11 µs, about once per ms in that file) as a 4096 µs wrap and
counts real wraps twice, stretching the 8.8 ms recording (TIME_HIGH 2861..2863) to 53.9 ms; and it
rejects the whole file when it meets an EXT_TRIGGER word (code 0xA). Its x, y, p agree with these
kernels event for event; its EVT2 agrees fully.
"""

from __future__ import annotations

import sys

import numba
import numpy as np
import numpy.typing as npt

from respike.events import EVENT_DTYPE

if sys.byteorder != "little":
    raise ImportError("respike.recorders.kernels writes EVENT_DTYPE records as little-endian words")


def record_words(packet: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
    """An EVENT_DTYPE packet seen as (n, 2) int64 words: [t, x | y << 16 | p << 32].

    The kernels write each event as these two stores, all 16 bytes (padding zero), so the packet
    may come from ``np.empty``; it must be C-contiguous.
    """
    if packet.dtype != EVENT_DTYPE or not packet.flags.c_contiguous:
        raise ValueError("record_words needs a C-contiguous EVENT_DTYPE array")
    return packet.view(np.int64).reshape(-1, 2)


# Error codes returned by the kernels (index into ERROR_TEXT).
OK = 0
ERR_CODE = 1
ERR_X = 2
ERR_Y = 3
ERR_TIME_BACK = 4
ERR_TIME_JUMP = 5
ERR_TIME_ORDER = 6

ERROR_TEXT = (
    "no error",
    "word with an event type no sensor emits",
    "event x outside the sensor width",
    "event y outside the sensor height",
    "time-high word steps back and is not a wrap-around",
    "time-high word jumps forward by more than half its range",
    "event time steps back inside the packet",
)

# --- EVT3 state slots -------------------------------------------------------------------------
E3_VALID = 0  # 1 once a TIME_HIGH and then a TIME_LOW were seen (event_camera_codecs rule)
E3_SEEN_HIGH = 1
E3_HIGH = 2  # time-high in µs, rollover bits included
E3_LOW = 3
E3_Y = 4
E3_BASE_X = 5
E3_POL = 6
E3_LAST_T = 7
E3_STATE_SIZE = 8

# A TIME_HIGH step back by at most this many units is sensor jitter, not a wrap (codec rule).
EVT3_HIGH_JITTER = 10
# A genuine 12-bit wrap goes from near 4095 to near 0: both within this many units of the edge.
EVT3_WRAP_WINDOW = 256

# --- EVT2 state slots -------------------------------------------------------------------------
E2_SEEN_HIGH = 0
E2_HIGH = 1  # time-high in 64 µs units, rollovers included
E2_LAST_T = 2
E2_STATE_SIZE = 3

EVT2_WRAP_WINDOW = 1 << 16  # 64 µs units: about 4 s either side of the 28-bit wrap


def evt3_state() -> npt.NDArray[np.int64]:
    """Fresh EVT3 decoder state (one per file pass or per bag topic)."""
    return np.zeros(E3_STATE_SIZE, dtype=np.int64)


def evt2_state() -> npt.NDArray[np.int64]:
    """Fresh EVT2 decoder state (one per file pass)."""
    return np.zeros(E2_STATE_SIZE, dtype=np.int64)


@numba.njit(cache=True)
def decode_evt3(
    words: npt.NDArray[np.uint16],
    start: int,
    state: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    n_out: int,
    width: int,
    height: int,
    trig_t: npt.NDArray[np.int64],
    trig_edge: npt.NDArray[np.uint8],
    trig_id: npt.NDArray[np.uint8],
    n_trig: int,
) -> tuple[int, int, int, int]:
    """Decode EVT3 16-bit words from ``start``; returns (n_out, n_trig, next_word, error).

    Semantics follow ros-event-camera/event_camera_codecs (evt3_decoder.h): nothing is emitted
    before a TIME_HIGH followed by a TIME_LOW; a TIME_HIGH lower than the last by more than
    EVT3_HIGH_JITTER is a wrap (+2**24 µs). Stricter than the codec, for damaged files: a step
    back that is not at the 12-bit edge, a forward jump of half the range, event types 1/11/12/13
    and (when ``width``/``height`` > 0) coordinates outside the sensor stop decoding with an error
    code at ``next_word``. Decoding also stops, error-free, when fewer than 12 output slots are
    left. ``width``/``height`` of 0 disable the coordinate check.
    """
    cap = out.shape[0]
    tcap = trig_t.shape[0]
    valid = state[E3_VALID]
    seen_high = state[E3_SEEN_HIGH]
    high = state[E3_HIGH]
    low = state[E3_LOW]
    ey = state[E3_Y]
    base_x = state[E3_BASE_X]
    pol = state[E3_POL]
    last_t = state[E3_LAST_T]
    err = 0
    i = start
    n = words.shape[0]
    # Branches ordered by frequency in real recordings (ADDR_X, ADDR_Y, TIME_LOW first).
    limit = cap - 12
    w_lim = width if width > 0 else 1 << 16
    h_lim = height if height > 0 else 1 << 16
    while i < n:
        if n_out > limit or n_trig >= tcap:
            break
        w = np.int64(words[i])
        code = w >> 12
        if code == 2:  # ADDR_X: one event
            if valid == 1:
                ex = w & 0x7FF
                if ex >= w_lim:
                    err = ERR_X
                    break
                if ey >= h_lim:
                    err = ERR_Y
                    break
                t = high | low
                if t < last_t:
                    t = last_t
                last_t = t
                out[n_out, 0] = t
                out[n_out, 1] = ex | ey << 16 | ((w >> 11) & 1) << 32
                n_out += 1
        elif code == 0:  # ADDR_Y
            if valid == 1:
                ey = w & 0x7FF
        elif code == 6:  # TIME_LOW
            low = w & 0xFFF
            if valid == 0 and seen_high == 1:
                valid = 1
        elif code == 4 or code == 5:  # VECT_12 / VECT_8: up to 12 events at base_x + k
            if valid == 1:
                nbits = 12 if code == 4 else 8
                bits = w & ((1 << nbits) - 1)
                if bits != 0:
                    top = nbits - 1
                    while (bits >> top) & 1 == 0:
                        top -= 1
                    if base_x + top >= w_lim:
                        err = ERR_X
                        break
                    if ey >= h_lim:
                        err = ERR_Y
                        break
                    t = high | low
                    if t < last_t:
                        t = last_t
                    last_t = t
                    k = 0
                    while bits != 0:
                        if bits & 1:
                            out[n_out, 0] = t
                            out[n_out, 1] = (base_x + k) | ey << 16 | pol << 32
                            n_out += 1
                        bits >>= 1
                        k += 1
                base_x += nbits
        elif code == 3:  # VECT_BASE_X
            if valid == 1:
                base_x = w & 0x7FF
                pol = (w >> 11) & 1
        elif code == 8:  # TIME_HIGH
            th = w & 0xFFF
            last_high = (high >> 12) & 0xFFF
            if seen_high == 1:
                if th < last_high and last_high - th > EVT3_HIGH_JITTER:
                    if last_high < 4096 - EVT3_WRAP_WINDOW or th >= EVT3_WRAP_WINDOW:
                        err = ERR_TIME_BACK
                        break
                    high += 1 << 24
                elif th > last_high and th - last_high >= 2048:
                    err = ERR_TIME_JUMP
                    break
            high = (high & ~np.int64(0xFFFFFF)) | (th << 12)
            seen_high = 1
        elif code == 10:  # EXT_TRIGGER
            if valid == 1:
                t = high | low
                if t < last_t:
                    t = last_t
                last_t = t
                trig_t[n_trig] = t
                trig_edge[n_trig] = w & 1
                trig_id[n_trig] = (w >> 8) & 0xF
                n_trig += 1
        elif code == 1 or code == 11 or code == 12 or code == 13:
            err = ERR_CODE
            break
        # 7 CONTINUED_4, 9 padding, 14 OTHERS, 15 CONTINUED_12: nothing to decode
        i += 1
    state[E3_VALID] = valid
    state[E3_SEEN_HIGH] = seen_high
    state[E3_HIGH] = high
    state[E3_LOW] = low
    state[E3_Y] = ey
    state[E3_BASE_X] = base_x
    state[E3_POL] = pol
    state[E3_LAST_T] = last_t
    return n_out, n_trig, i, err


@numba.njit(cache=True)
def decode_evt2(
    words: npt.NDArray[np.uint32],
    start: int,
    state: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    n_out: int,
    width: int,
    height: int,
) -> tuple[int, int, int]:
    """Decode EVT2 32-bit words from ``start``; returns (n_out, next_word, error).

    CD_OFF/CD_ON (types 0/1) carry x (bits 11-21), y (bits 0-10) and the 6 low time bits
    (22-27); EVT_TIME_HIGH (type 8) the upper 28 bits (64 µs units), unwrapped at its 28-bit
    edge. Events before the first time-high word are skipped. Types other than 0, 1, 8, 10, 14,
    15, a time-high step back away from the edge, a half-range forward jump and coordinates
    outside the sensor (when known) stop decoding with an error code.

    Written for speed (it is the hot loop of EVT2 files): a word yields at most one event, so
    the words that fit the output room are decoded without a per-word room check; coordinates
    are compared unsigned against limits fixed before the loop (2048 when the sensor size is
    unknown, which no 11-bit field can reach); the time-high part is shifted once per
    time-high word, not per event.
    """
    cap = out.shape[0]
    seen_high = state[E2_SEEN_HIGH]
    high = state[E2_HIGH]
    last_t = state[E2_LAST_T]
    err = 0
    end = min(words.shape[0], start + (cap - n_out))
    edge = np.int64(1) << 28
    w_lim = np.uint64(width) if width > 0 else np.uint64(1 << 11)
    h_lim = np.uint64(height) if height > 0 else np.uint64(1 << 11)
    base = high << 6
    i = start
    while i < end:
        w = words[i]
        typ = w >> 28
        if typ <= 1:
            if seen_high == 1:
                ex = np.uint64((w >> 11) & 0x7FF)
                ey = np.uint64(w & 0x7FF)
                if ex >= w_lim:
                    err = ERR_X
                    break
                if ey >= h_lim:
                    err = ERR_Y
                    break
                t = base | np.int64((w >> 22) & 0x3F)
                if t < last_t:
                    t = last_t
                last_t = t
                out[n_out, 0] = t
                out[n_out, 1] = np.int64(
                    ex | (ey << np.uint64(16)) | (np.uint64(typ) << np.uint64(32))
                )
                n_out += 1
        elif typ == 8:
            th = np.int64(w) & (edge - 1)
            if seen_high == 1:
                last = high & (edge - 1)
                if th < last:
                    if last < edge - EVT2_WRAP_WINDOW or th >= EVT2_WRAP_WINDOW:
                        err = ERR_TIME_BACK
                        break
                    high += edge
                elif th - last >= edge >> 1:
                    err = ERR_TIME_JUMP
                    break
            high = (high & ~(edge - 1)) | th
            base = high << 6
            seen_high = 1
        elif typ != 10 and typ != 14 and typ != 15:
            err = ERR_CODE
            break
        i += 1
    state[E2_SEEN_HIGH] = seen_high
    state[E2_HIGH] = high
    state[E2_LAST_T] = last_t
    return n_out, i, err


@numba.njit(cache=True)
def first_bad_record(words: npt.NDArray[np.int64], last_t: int, signed_xy: bool) -> int:
    """Index of the first EVENT_DTYPE-layout record (seen as (n, 2) int64 words) whose time is
    below the one before (``last_t`` before the first), whose polarity byte is above 1 or,
    with ``signed_xy``, whose x or y is negative as int16; -1 when every record is fine.

    One pass over the records, for files stored in EVENT_DTYPE's layout (the .npy fast path).
    """
    for i in range(words.shape[0]):
        t = words[i, 0]
        w = words[i, 1]
        if t < last_t or ((w >> 32) & 0xFF) > 1:
            return i
        if signed_xy and (w & 0x8000 or w & 0x80000000):
            return i
        last_t = t
    return -1


# --- libcaer_cmp state slots (kept across the packets of one topic, like the codec's members) --
LC_X = 0  # x of the last ADDR_X word
LC_BASE_Y = 1  # y base of the last VECT_BASE_Y word, advanced by 8 per VECT_8
LC_POL = 2  # polarity of the last VECT_BASE_Y word
LC_STATE_SIZE = 3


def libcaer_cmp_state() -> npt.NDArray[np.int64]:
    """Fresh libcaer_cmp decoder state (one per bag topic)."""
    return np.zeros(LC_STATE_SIZE, dtype=np.int64)


@numba.njit(cache=True)
def decode_libcaer_cmp(
    words: npt.NDArray[np.uint16],
    state: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int]:
    """Decode one libcaer_cmp packet of 16-bit words; returns (n_out, next_word, error).

    Words (event_camera_codecs libcaer_cmp_types.h): code in bits 12-15; 0 TIME_HIGH (bits
    0-11 are time bits 12-23), 1 TIME_LOW (time bits 0-11), 2 ADDR_X (x in bits 0-10),
    3 ADDR_Y (y in bits 0-10, polarity bit 11: one event at the last x), 4 VECT_BASE_Y (base y
    in bits 0-10, polarity bit 11), 5 VECT_8 (bit k set: an event at base y + k; base y then
    advances by 8). Times are µs since the packet's time_base and start at 0 in every packet
    (the codec resets them); x, base y and polarity carry over between packets. ``out`` needs
    8 slots per word. Stricter than the codec, which skips them silently: codes 6-15
    (VECT_12 is declared but never decoded nor encoded), coordinates outside ``width`` x
    ``height`` (when > 0) and an event earlier than the one before stop decoding with an
    error code at ``next_word``.
    """
    ex = state[LC_X]
    base_y = state[LC_BASE_Y]
    pol = state[LC_POL]
    high = np.int64(0)
    low = np.int64(0)
    last_t = np.int64(0)
    w_lim = width if width > 0 else 1 << 16
    h_lim = height if height > 0 else 1 << 16
    n_out = 0
    err = 0
    i = 0
    n = words.shape[0]
    while i < n:
        w = np.int64(words[i])
        code = w >> 12
        if code == 3:  # ADDR_Y: one event
            ey = w & 0x7FF
            if ex >= w_lim:
                err = ERR_X
                break
            if ey >= h_lim:
                err = ERR_Y
                break
            t = high | low
            if t < last_t:
                err = ERR_TIME_ORDER
                break
            last_t = t
            out[n_out, 0] = t
            out[n_out, 1] = ex | ey << 16 | ((w >> 11) & 1) << 32
            n_out += 1
        elif code == 2:  # ADDR_X
            ex = w & 0x7FF
        elif code == 1:  # TIME_LOW
            low = w & 0xFFF
        elif code == 0:  # TIME_HIGH
            high = (w & 0xFFF) << 12
        elif code == 4:  # VECT_BASE_Y
            base_y = w & 0x7FF
            pol = (w >> 11) & 1
        elif code == 5:  # VECT_8
            bits = w & 0xFF
            if bits != 0:
                top = 7
                while (bits >> top) & 1 == 0:
                    top -= 1
                if ex >= w_lim:
                    err = ERR_X
                    break
                if base_y + top >= h_lim:
                    err = ERR_Y
                    break
                t = high | low
                if t < last_t:
                    err = ERR_TIME_ORDER
                    break
                last_t = t
                k = 0
                while bits != 0:
                    if bits & 1:
                        out[n_out, 0] = t
                        out[n_out, 1] = ex | (base_y + k) << 16 | pol << 32
                        n_out += 1
                    bits >>= 1
                    k += 1
            base_y += 8
        else:
            err = ERR_CODE
            break
        i += 1
    state[LC_X] = ex
    state[LC_BASE_Y] = base_y
    state[LC_POL] = pol
    return n_out, i, err


# --- N-MNIST 40-bit records ---------------------------------------------------------------------
NM_SHIFT = 0  # overflow-marker shift so far (2**13 µs per marker, Orchard's reader)
NM_OFFSET = 1  # 2**23 µs per wrap-around so far
NM_PREV1 = 2  # last good time before unwrapping (marker shift included), -1 before the first
NM_PREV2 = 3  # the one before it
NM_STATE_SIZE = 4

NMNIST_SPAN = 1 << 23
NMNIST_WRAP_WINDOW = 1 << 20
NMNIST_OVERFLOW_Y = 240
NMNIST_OVERFLOW_STEP = 1 << 13


def nmnist_state() -> npt.NDArray[np.int64]:
    """Fresh N-MNIST decoder state (one per file pass)."""
    state = np.zeros(NM_STATE_SIZE, dtype=np.int64)
    state[NM_PREV1] = -1
    state[NM_PREV2] = -1
    return state


@numba.njit(cache=True)
def decode_nmnist(
    raw: npt.NDArray[np.uint8],
    state: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
) -> tuple[int, int]:
    """Decode whole 5-byte records; returns (n_out, index of the first bad record or -1).

    Records with y == 240 are overflow markers (+2**13 µs for all later events, not events).
    A time below the previous one is a wrap-around (+2**23 µs) when it goes from the top
    NMNIST_WRAP_WINDOW to the bottom one and the record after the jump is not back in line with
    the record before it; otherwise it is damage, blamed on the previous record when that one
    jumped forward (it is then taken back out of this call's output).
    """
    n_rec = raw.shape[0] // 5
    shift = state[NM_SHIFT]
    offset = state[NM_OFFSET]
    prev1 = state[NM_PREV1]
    prev2 = state[NM_PREV2]
    prev_index = -1
    n = 0
    bad = -1
    for i in range(n_rec):
        b = 5 * i
        y = np.int64(raw[b + 1])
        if y == NMNIST_OVERFLOW_Y:
            shift += NMNIST_OVERFLOW_STEP
            continue
        b2 = np.int64(raw[b + 2])
        v = ((b2 & 0x7F) << 16 | np.int64(raw[b + 3]) << 8 | np.int64(raw[b + 4])) + shift
        if prev1 >= 0 and v < prev1:
            in_line = prev2 >= 0 and v >= prev2
            if prev1 >= NMNIST_SPAN - NMNIST_WRAP_WINDOW and v < NMNIST_WRAP_WINDOW and not in_line:
                offset += NMNIST_SPAN
            else:
                bad = i
                if in_line and prev_index >= 0:
                    bad = prev_index
                    n -= 1
                break
        out[n, 0] = v + offset
        out[n, 1] = np.int64(raw[b]) | y << 16 | (b2 >> 7) << 32
        n += 1
        prev2 = prev1
        prev1 = v
        prev_index = i
    state[NM_SHIFT] = shift
    state[NM_OFFSET] = offset
    state[NM_PREV1] = prev1
    state[NM_PREV2] = prev2
    return n, bad


# --- EVT3 encoding ----------------------------------------------------------------------------
EVT3_HIGH_STEP = 2047
"""Largest forward step between TIME_HIGH words a decoder accepts (half the 12-bit range - 1)."""


@numba.njit(cache=True)
def _evt3_time_high_words(last: int, high: int, out: npt.NDArray[np.uint16], n: int) -> int:
    """Write the TIME_HIGH words that take a decoder from ``last`` to ``high`` (4096 µs units,
    wraps included; ``last`` < 0: none seen yet) in steps it accepts: forward by at most
    EVT3_HIGH_STEP, and across a 12-bit wrap only from the top EVT3_WRAP_WINDOW units to 0.
    Returns the new word count, or -1 when ``out`` is full."""
    h = last if 0 <= last < high else high - 1
    while h < high:
        boundary = (h // 4096 + 1) * 4096
        if last < 0 or high < boundary:
            h = high if last < 0 else min(high, h + EVT3_HIGH_STEP)
        elif h % 4096 < 4096 - EVT3_WRAP_WINDOW:
            h = min(boundary - 1, h + EVT3_HIGH_STEP)
        else:
            h = boundary
        if n >= out.shape[0]:
            return -1
        out[n] = 0x8000 | (h & 0xFFF)
        n += 1
    return n


@numba.njit(cache=True)
def encode_evt3(
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.uint16],
    y: npt.NDArray[np.uint16],
    p: npt.NDArray[np.uint8],
    last_high: int,
    out: npt.NDArray[np.uint16],
) -> tuple[int, int]:
    """Encode events (times in µs, non-decreasing, >= 0) as EVT3 words; returns (words, high).

    The words start with TIME_HIGH, TIME_LOW and ADDR_Y, so a decoder that starts here decodes
    them (once it has met a TIME_HIGH then a TIME_LOW: the event_camera_codecs rule). ``last_high``
    is the TIME_HIGH (4096 µs units) the previous words left a decoder at (-1: none), so the
    steps between words stay ones :func:`decode_evt3` accepts; the returned high is the next
    call's. Three or more events of one time, row and polarity with rising x become VECT_BASE_X
    + VECT_12 words (12 events per word), the others ADDR_X. Returns (-1, last_high) when
    ``out`` is full.
    """
    n = 0
    cap = out.shape[0]
    count = t.shape[0]
    cur_t = np.int64(-1)
    cur_y = np.int64(-1)
    i = 0
    while i < count:
        ti = t[i]
        if ti != cur_t:
            high = ti >> 12
            if high != last_high or cur_t < 0:
                n = _evt3_time_high_words(last_high, high, out, n)
                if n < 0:
                    return -1, last_high
                last_high = high
            if n >= cap:
                return -1, last_high
            out[n] = 0x6000 | (ti & 0xFFF)
            n += 1
            cur_t = ti
        yi = np.int64(y[i])
        pi = np.int64(p[i]) & 1
        if yi != cur_y:
            if n >= cap:
                return -1, last_high
            out[n] = yi
            n += 1
            cur_y = yi
        j = i + 1
        while j < count and t[j] == ti and y[j] == yi and p[j] == p[i] and x[j] > x[j - 1]:
            j += 1
        if j - i < 3:
            for k in range(i, j):
                if n >= cap:
                    return -1, last_high
                out[n] = 0x2000 | pi << 11 | np.int64(x[k])
                n += 1
        else:
            base = np.int64(-1)
            k = i
            while k < j:
                if base < 0 or np.int64(x[k]) >= base + 12:
                    if n >= cap:
                        return -1, last_high
                    base = np.int64(x[k])
                    out[n] = 0x3000 | pi << 11 | base
                    n += 1
                bits = np.int64(0)
                while k < j and np.int64(x[k]) < base + 12:
                    bits |= np.int64(1) << (np.int64(x[k]) - base)
                    k += 1
                if n >= cap:
                    return -1, last_high
                out[n] = 0x4000 | bits
                n += 1
                base += 12
        i = j
    return n, last_high
