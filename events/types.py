"""The one event dtype of respike and the contract every event packet follows.

Packet contract:

- an event packet is a 1-D numpy structured array of ``EVENT_DTYPE``;
- ``t`` is in microseconds (int64, sensor or capture clock), non-decreasing within a packet;
- ``x``/``y`` are pixel columns/rows (uint16), ``p`` is the polarity: 1 = ON (brighter),
  0 = OFF (darker), the convention of tonic's datasets;
- empty packets are allowed (a quiet scene is not an error);
- nobody mutates a received packet: arrays decoded from the wire are read-only views.

The field names are the ones tonic's transforms look up, so a packet can be handed to tonic as is.
The record is 16 bytes with explicit padding so ``t`` stays 8-byte aligned in every element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<u2", "<u2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

EventArray = npt.NDArray[np.void]


def empty_events(n: int = 0) -> EventArray:
    """A zero-filled packet of ``n`` events (zeroed so padding bytes are deterministic)."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(
    t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, p: npt.ArrayLike
) -> EventArray:
    """Build a packet from column arrays (any integer or bool dtype), checking value ranges."""
    columns = {name: np.asarray(col) for name, col in (("t", t), ("x", x), ("y", y), ("p", p))}
    n = columns["t"].shape[0] if columns["t"].ndim else 0
    for name, col in columns.items():
        if col.ndim != 1 or col.shape[0] != n:
            raise ValueError(
                f"event column {name!r} has shape {col.shape}; expected ({n},) like column 't'"
            )
    for name in ("x", "y"):
        col = columns[name]
        if n and (col.min() < 0 or col.max() > np.iinfo(np.uint16).max):
            raise ValueError(f"event column {name!r} has values outside 0..65535")
    p_col = columns["p"]
    if n and (p_col.min() < 0 or p_col.max() > 1):
        raise ValueError("event column 'p' must hold 0 (OFF) or 1 (ON)")
    events = empty_events(n)
    for name, col in columns.items():
        events[name] = col
    return events


def concat_events(parts: Sequence[EventArray]) -> EventArray:
    """Join packets into one, keeping EVENT_DTYPE.

    Plain ``np.concatenate`` of padded structured arrays returns a packed 13-byte dtype in
    numpy 2 (even for one packet), which no longer equals EVENT_DTYPE.
    """
    if not parts:
        return empty_events(0)
    return np.concatenate(parts, dtype=EVENT_DTYPE)


def validate_events(events: np.ndarray, *, what: str = "event packet") -> None:
    """Raise ValueError naming ``what`` unless ``events`` follows the packet contract."""
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"{what} has dtype {events.dtype}; expected respike EVENT_DTYPE")
    if events.ndim != 1:
        raise ValueError(f"{what} has shape {events.shape}; expected a 1-D array")
    if events.shape[0] > 1 and bool(np.any(np.diff(events["t"]) < 0)):
        raise ValueError(f"{what} has decreasing timestamps; expected non-decreasing t")
    if events.shape[0] and int(events["p"].max()) > 1:
        raise ValueError(f"{what} has polarity values above 1; expected 0 (OFF) or 1 (ON)")
