"""Event data and the numba kernels that make and bin it (numpy and numba only, no torch, no zmq).

This is the lowest layer of respike: the transport (`respike.stream`), the recorders and the
models all use the one event dtype defined here, and the datasets run the same kernels as the
live nodes, so training and serving see identical tensors.
"""

from respike.events.types import EVENT_DTYPE, empty_events, make_events, validate_events

__all__ = ["EVENT_DTYPE", "empty_events", "make_events", "validate_events"]
