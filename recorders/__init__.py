"""Event-file readers of respike: one entry point, :func:`open_events`, for every format.

>>> from respike.recorders import open_events
>>> reader = open_events("recording.raw")                    # doctest: +SKIP
>>> print(reader.format, reader.sensor_size, reader.summary().event_count)  # doctest: +SKIP
>>> for window in reader.windows(10_000):                     # doctest: +SKIP
...     ...                                                   # 10 ms packets for replay
"""

from respike.recorders.base import (
    TRIGGER_DTYPE,
    EventReader,
    EventWindow,
    Frame,
    ReadOptions,
    RecordingSummary,
)
from respike.recorders.errors import (
    DatasetSampleError,
    EmptyFileError,
    EventFileError,
    UnknownFormatError,
)
from respike.recorders.formats import (
    FORMATS,
    FormatSpec,
    detect_format,
    open_events,
    register_format,
    split_sample,
    supported_formats,
)

__all__ = [
    "FORMATS",
    "TRIGGER_DTYPE",
    "DatasetSampleError",
    "EmptyFileError",
    "EventFileError",
    "EventReader",
    "EventWindow",
    "FormatSpec",
    "Frame",
    "ReadOptions",
    "RecordingSummary",
    "UnknownFormatError",
    "detect_format",
    "open_events",
    "register_format",
    "split_sample",
    "supported_formats",
]
