"""Event data and the numba kernels that make and bin it (numpy and numba only, no torch, no zmq).

This is the lowest layer of respike: the transport (`respike.stream`), the recorders and the
models all use the one event dtype defined here, and the datasets run the same kernels as the
live nodes, so training and serving see identical tensors.

The kernels are imported on first use (``from respike.events import DvsEmulator`` works), so a
process that only needs the dtype, such as the transport, does not pay for importing numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from respike.events.types import (
    EVENT_DTYPE,
    concat_events,
    empty_events,
    make_events,
    validate_events,
)

if TYPE_CHECKING:
    from respike.events.binning import EventFrames
    from respike.events.emulator import DvsEmulator, DvsState
    from respike.events.residual import ResidualFrames, ResidualState
    from respike.events.warmup import warm_up

_LAZY = {
    "EventFrames": "respike.events.binning",
    "DvsEmulator": "respike.events.emulator",
    "DvsState": "respike.events.emulator",
    "ResidualFrames": "respike.events.residual",
    "ResidualState": "respike.events.residual",
    "warm_up": "respike.events.warmup",
}

__all__ = [
    "EVENT_DTYPE",
    "DvsEmulator",
    "DvsState",
    "EventFrames",
    "ResidualFrames",
    "ResidualState",
    "concat_events",
    "empty_events",
    "make_events",
    "validate_events",
    "warm_up",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'respike.events' has no attribute {name!r}")
