"""Unwrapper: wrap-arounds across blocks, damaged records and their culprits."""

from __future__ import annotations

import numpy as np

from respike.recorders.timing import Unwrapper


def test_wrap_around_is_unwrapped_across_blocks() -> None:
    span = 1 << 8
    raw = np.array([250, 253, 255, 2, 5, 9, 254, 255, 1, 3], dtype=np.int64)
    expected = [250, 253, 255, 258, 261, 265, 510, 511, 513, 515]
    whole, bad = Unwrapper(bits=8, window=16).feed(raw)
    assert bad == -1 and whole.tolist() == expected
    u = Unwrapper(bits=8, window=16)
    parts = [u.feed(raw[i : i + 3]) for i in range(0, raw.shape[0], 3)]
    assert all(b == -1 for _, b in parts)
    assert np.concatenate([t for t, _ in parts]).tolist() == expected, f"span {span}"


def test_step_back_in_the_middle_is_damage() -> None:
    _, bad = Unwrapper(bits=8, window=16).feed(np.array([10, 20, 5, 30], dtype=np.int64))
    assert bad == 2, "20 -> 5 is no wrap and 5 is below 10 too: the dip itself is the culprit"


def test_forward_spike_blames_the_spike() -> None:
    """A record that jumps up (a flipped high bit) makes the next one step back; the next one is
    in line with the record before the spike, so the spike is reported."""
    raw = np.array([10, 20, 250, 25, 30], dtype=np.int64)
    _, bad = Unwrapper(bits=8, window=16).feed(raw)
    assert bad == 2
    # a spike to near the top followed by a small value looks like a wrap, but is in line
    _, bad = Unwrapper(bits=8, window=16).feed(np.array([1, 2, 254, 3, 4], dtype=np.int64))
    assert bad == 2


def test_state_stops_before_the_bad_record() -> None:
    u = Unwrapper(bits=8, window=16)
    _, bad = u.feed(np.array([10, 20, 5], dtype=np.int64))
    assert bad == 2
    t, bad = u.feed(np.array([21, 22], dtype=np.int64))
    assert bad == -1 and t.tolist() == [21, 22]
