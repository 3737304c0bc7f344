"""Unwrapping of fixed-width sensor timestamps, and locating the record where time goes wrong."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class Unwrapper:
    """Turns a stream of ``bits``-wide timestamps into monotonic int64 µs, block by block.

    A step back from near the top of the range (within ``window`` of 2**bits) to near zero
    (below ``window``) is a wrap-around and adds 2**bits, unless the record after the step is
    back in line with the one before the jump (then the jump was a damaged record, not a wrap).
    Any other step back means a damaged record: its culprit is the record before it when that one
    jumped forward (a flipped high bit) and the record itself otherwise; :meth:`feed` reports
    the culprit's index so the caller can keep everything before it.
    """

    def __init__(self, bits: int, window: int) -> None:
        self.bits = bits
        self.window = window
        self._offset = 0
        self._prev: list[int] = []  # the last two good raw values, oldest first

    def feed(self, raw: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], int]:
        """Unwrap one block; returns (times, index of the first bad record or -1).

        The state advances only over the good records, so after an error the unwrapper is
        positioned just before the bad one.
        """
        n = raw.shape[0]
        if n == 0:
            return raw.astype(np.int64), -1
        if (not self._prev or raw[0] >= self._prev[-1]) and not np.any(raw[1:] < raw[:-1]):
            # the common block: no step back at all, so no wrap and no damage to look for
            self._prev = [*self._prev, *raw[-2:].tolist()][-2:]
            return raw + self._offset, -1
        span = 1 << self.bits
        history = np.concatenate((np.asarray(self._prev, dtype=np.int64), raw))
        lead = len(self._prev)
        idx = np.arange(n) + lead
        prev1 = np.where(idx >= 1, history[np.maximum(idx - 1, 0)], raw[0])
        prev2 = np.where(idx >= 2, history[np.maximum(idx - 2, 0)], -1)
        back = raw < prev1
        in_line = (prev2 >= 0) & (raw >= prev2)
        wrap = back & (prev1 >= span - self.window) & (raw < self.window) & ~in_line
        t = raw + self._offset + np.cumsum(wrap, dtype=np.int64) * span
        bad = -1
        bad_steps = np.flatnonzero(back & ~wrap)
        if bad_steps.shape[0]:
            bad = int(bad_steps[0])
            if bad >= 1 and in_line[bad]:
                bad -= 1
        keep = n if bad < 0 else bad
        if keep:
            self._prev = [int(v) for v in history[: lead + keep][-2:]]
            self._offset = int(t[keep - 1] - raw[keep - 1])
        return t, bad
