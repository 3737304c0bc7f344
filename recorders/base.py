"""The reader contract every event-file format implements: packets, frames, windows, summary.

A reader is opened on one file (or bag folder) and can be iterated any number of times; each pass
re-reads the file in bounded chunks, so recordings larger than RAM stream through. Every event
packet it yields is an ``EVENT_DTYPE`` array (t in µs on the recording's own clock,
non-decreasing across the whole pass, wrap-arounds already unwrapped), read-only, never empty.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from respike.events import EVENT_DTYPE, empty_events
from respike.events.types import EventArray
from respike.recorders.errors import EventFileError

#: µs per unit, for the time columns of formats that do not fix their unit
TIME_UNITS = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0, "ns": 0.001}

#: External trigger events (a sync or trigger input of the camera): ``t`` in µs on the events'
#: clock, ``edge`` 1 for a rising and 0 for a falling edge, ``id`` the trigger channel.
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("edge", "u1"), ("id", "u1")])

TriggerArray = npt.NDArray[np.void]


def trigger_array(t: npt.ArrayLike, edge: npt.ArrayLike, ident: npt.ArrayLike) -> TriggerArray:
    """A TRIGGER_DTYPE array from its three columns."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], dtype=TRIGGER_DTYPE)
    out["t"] = t
    out["edge"] = edge
    out["id"] = ident
    return out


@dataclass(frozen=True)
class ReadOptions:
    """How a reader walks a file; validated once, shared by every pass.

    ``strict``: on damage, raise :class:`EventFileError` after the valid prefix (True) or stop
    there quietly and keep the error in ``reader.error`` (False).
    ``packet_events``: target events per packet for formats read in chunks (bags yield one
    packet per message as recorded). The default, 16384 events (256 KiB), keeps packets small
    enough for the allocator to recycle their memory: measured on the EVT3 sample, 64Ki-event
    packets made a pass 1.6x slower, all of it in page faults on fresh output memory.
    ``topic``: for bags, the event topic to read (default: the only one, or the first by name).
    ``time_unit``: unit of the time column for formats that do not define one (text, npy, npz,
    HDF5): "s", "ms", "us" or "ns"; None guesses seconds for floating-point times and µs for
    integers.
    ``sample``: for dataset folders, the sample to read: its index in the folder's listing or
    its path relative to the folder.
    """

    strict: bool = True
    packet_events: int = 1 << 14
    topic: str | None = None
    time_unit: str | None = None
    sample: int | str | None = None

    def __post_init__(self) -> None:
        if self.packet_events < 1:
            raise ValueError(f"packet_events must be >= 1, got {self.packet_events}")
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise ValueError(
                f"time_unit must be one of {', '.join(TIME_UNITS)}, got {self.time_unit!r}"
            )


@dataclass(frozen=True)
class Frame:
    """One intensity frame of a recording that has them (AEDAT 4 frame streams, bag images).

    ``t`` is the frame time in µs: the events' clock for AEDAT 4 and for bags whose events carry
    ROS time (libcaer, dvs_msgs); a bag image keeps its header stamp even beside evt3 events,
    which carry sensor time. ``image`` is (H, W) or (H, W, C), read-only.
    """

    t: int
    image: npt.NDArray[Any]


@dataclass(frozen=True)
class RecordingSummary:
    """What ``respike info`` prints: one full pass over the file, reduced to a few numbers.

    ``sensor_size`` is (width, height); ``sensor_size_from`` says whether it came from the file's
    metadata ("header") or, for files that do not store it, from the largest coordinates seen
    ("events"). ``topics`` maps bag topics to (message type, message count). ``error`` is the
    damage found in a non-strict pass (the counts then cover the valid prefix). ``sample`` is,
    for one sample of a dataset folder, which one and its label: index, path, split, label,
    label_name (None where the folder does not name its classes).
    """

    path: str
    format: str
    sensor_size: tuple[int, int] | None
    sensor_size_from: str
    event_count: int
    first_t: int | None
    last_t: int | None
    frame_count: int = 0
    topics: dict[str, tuple[str, int]] = field(default_factory=dict)
    error: str | None = None
    sample: dict[str, Any] | None = None

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event, in µs (0 for fewer than two events)."""
        if self.first_t is None or self.last_t is None:
            return 0
        return self.last_t - self.first_t

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``respike info --json``), with ``duration_us`` included
        (``sample`` only for a dataset sample)."""
        out = asdict(self)
        if out["sample"] is None:
            del out["sample"]
        out["sensor_size"] = list(self.sensor_size) if self.sensor_size else None
        out["topics"] = {k: {"type": v[0], "count": v[1]} for k, v in self.topics.items()}
        out["duration_us"] = self.duration_us
        return out


class EventWindow(NamedTuple):
    """Events with ``start <= t < end`` (µs), and the frames due by ``end``.

    ``events`` may be empty (a quiet interval). ``frames`` holds the recording's frames with
    ``t < end`` not given out before (frames after the last event come with the last window);
    a frame on another clock than the events (an image topic
    stamped in ROS time beside evt3 sensor time) is never held back more than MAX_HELD_FRAMES
    frames, so it arrives in file order instead of never.
    """

    start: int
    end: int
    events: EventArray
    frames: tuple[Frame, ...] = ()


#: frames waiting for their window; beyond this the oldest goes out with the current window
MAX_HELD_FRAMES = 64


class EventReader(abc.ABC):
    """Base of all format readers; use :func:`respike.recorders.open_events` to get one.

    Subclasses implement :meth:`_items`, a generator over the file in file order yielding event
    packets and :class:`Frame` objects and raising :class:`EventFileError` at the first damage
    after everything before it. This class adds strictness handling, read-only packets, fixed
    duration windows and the summary. It holds no open file between passes
    (each pass opens the file and closes it when it ends), so there is nothing to close.
    """

    #: registry name of the format, e.g. "evt3" (set by each subclass)
    format_name: str = ""

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        self._path = path if isinstance(path, Path) else Path(path)
        self._options = options or ReadOptions()
        self._sensor_size: tuple[int, int] | None = None
        self._summary: RecordingSummary | None = None
        self.error: EventFileError | None = None

    # ----------------------------------------------------------------- properties
    @property
    def path(self) -> Path:
        """The file (or bag folder) this reader reads."""
        return self._path

    @property
    def format(self) -> str:
        """Registry name of the detected format, e.g. ``"evt3"`` or ``"rosbag2"``."""
        return self.format_name

    @property
    def options(self) -> ReadOptions:
        """The frozen read options this reader was opened with."""
        return self._options

    @property
    def sensor_size(self) -> tuple[int, int] | None:
        """(width, height) in pixels.

        From the file's metadata when it has one; otherwise the largest coordinates seen plus one,
        which needs one full pass (done once, cached). None for a file without events.
        """
        if self._sensor_size is None:
            self._sensor_size = self._lookup_sensor_size()
        if self._sensor_size is not None:
            return self._sensor_size
        return self.summary().sensor_size

    def _lookup_sensor_size(self) -> tuple[int, int] | None:
        """Sensor size from metadata that is cheap to read but not read at open (bags: the first
        message); None when the format has none."""
        return None

    @property
    def has_frames(self) -> bool:
        """Whether this recording can carry intensity frames (they may still be zero)."""
        return False

    # ------------------------------------------------------------------ iteration
    @abc.abstractmethod
    def _items(self) -> Iterator[EventArray | Frame]:
        """Yield packets and frames in file order; raise EventFileError at the first damage."""

    def stream(self) -> Iterator[EventArray | Frame]:
        """Event packets and frames in file order, one fresh pass over the file per call.

        On damage: with ``strict=True`` everything before it is yielded, then
        :class:`EventFileError` is raised; with ``strict=False`` the pass ends there and the
        error is kept in :attr:`error`.
        """
        for item in self._guarded(self._items()):
            if isinstance(item, Frame):
                yield item
            elif item.shape[0]:
                item.flags.writeable = False
                yield item

    def triggers(self) -> Iterator[TriggerArray]:
        """External trigger events (TRIGGER_DTYPE arrays, non-empty, read-only, time-ordered).

        One fresh pass over the file per call, apart from :meth:`stream` because few consumers
        want them (a replay does not). Formats that carry them: Prophesee EVT3 (EXT_TRIGGER
        words) and ROS bags with EventPacket evt3 or ``trigger`` packets; nothing for the others.
        Damage is handled as in :meth:`stream`.
        """
        for item in self._guarded(self._trigger_items()):
            if item.shape[0]:
                item.flags.writeable = False
                yield item

    def _trigger_items(self) -> Iterator[TriggerArray]:
        """Yield trigger arrays in file order; formats with trigger events override this."""
        return iter(())

    def _guarded(self, items: Iterator[Any]) -> Iterator[Any]:
        """Pass ``items`` through, applying the strictness option to an EventFileError."""
        self.error = None
        try:
            yield from items
        except EventFileError as exc:
            self.error = exc
            if self._options.strict:
                raise

    def packets(self) -> Iterator[EventArray]:
        """Event packets only (non-empty, read-only, time-ordered), one fresh pass per call."""
        for item in self.stream():
            if not isinstance(item, Frame):
                yield item

    def __iter__(self) -> Iterator[EventArray]:
        return self.packets()

    def frames(self) -> Iterator[Frame]:
        """Intensity frames only, in time order (nothing for formats without frames)."""
        for item in self.stream():
            if isinstance(item, Frame):
                yield item

    def read_all(self) -> EventArray:
        """Every event in one array; for files that fit in memory (tests, small samples).

        Formats that can decode straight into one array do (:meth:`_whole_items`); the others'
        packets are joined as plain 16-byte records (:func:`join_records`). Damage is handled
        as in :meth:`stream`: the valid prefix, then the error (or ``reader.error``).
        """
        parts = [
            item
            for item in self._guarded(self._whole_items())
            if not isinstance(item, Frame) and item.shape[0]
        ]
        if len(parts) == 1 and parts[0].flags.writeable:
            return parts[0]  # the format's one array for the file: nothing to join
        return join_records(parts)

    def _whole_items(self) -> Iterator[EventArray | Frame]:
        """What :meth:`read_all` reads: :meth:`_items`, unless a format can yield fewer,
        larger packets (one array for the whole file) when nobody streams them."""
        return self._items()

    def windows(
        self, duration_us: int, *, start_us: int | None = None, end_us: int | None = None
    ) -> Iterator[EventWindow]:
        """Consecutive windows of ``duration_us`` µs, empty ones included, for real-time replay.

        Windows start at ``start_us`` (default: the first event's time) and stop with the one
        holding ``end_us`` (default: the one holding the last event); frames ride along in the
        window they fall in. Memory holds one window plus one packet and a few frames, whatever
        the file size. This is what a replay node paces by: each window's ``end`` is the
        recording time at which it is complete.
        """
        if duration_us < 1:
            raise ValueError(f"duration_us must be >= 1, got {duration_us}")
        return _windows(self.stream(), duration_us, start_us, end_us)

    # -------------------------------------------------------------------- summary
    def summary(self) -> RecordingSummary:
        """Format, sensor size, event count, first/last time, frames: one pass, then cached."""
        if self._summary is not None:
            return self._summary
        count = 0
        frames = 0
        first_t: int | None = None
        last_t: int | None = None
        max_x = -1
        max_y = -1
        for item in self.stream():
            if isinstance(item, Frame):
                frames += 1
                continue
            if first_t is None:
                first_t = int(item["t"][0])
            last_t = int(item["t"][-1])
            count += item.shape[0]
            max_x = max(max_x, int(item["x"].max()))
            max_y = max(max_y, int(item["y"].max()))
        size = self._sensor_size
        size_from = "header"
        if size is None:
            size_from = "events"
            size = (max_x + 1, max_y + 1) if count else None
        self._summary = RecordingSummary(
            path=str(self._path),
            format=self.format,
            sensor_size=size,
            sensor_size_from=size_from,
            event_count=count,
            first_t=first_t,
            last_t=last_t,
            frame_count=frames,
            topics=self._topics(),
            error=str(self.error) if self.error else None,
            sample=self._sample_info(),
        )
        return self._summary

    def _topics(self) -> dict[str, tuple[str, int]]:
        """Topics of a bag (type, count); empty for plain event files."""
        return {}

    def _sample_info(self) -> dict[str, Any] | None:
        """Which sample of a dataset folder this is, and its label; None for plain files."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._path)!r}, format={self.format!r})"

    # ------------------------------------------------------------------- helpers
    def _damaged(
        self, reason: str, *, offset: int | None = None, where: str | None = None
    ) -> EventFileError:
        """An EventFileError naming this reader's file and format."""
        return EventFileError(self._path, self.format, reason, offset=offset, where=where)


def _windows(
    items: Iterator[EventArray | Frame], duration: int, start: int | None, end: int | None
) -> Iterator[EventWindow]:
    """Re-cut a time-ordered stream into fixed windows (see EventReader.windows)."""
    pending: list[EventArray] = []
    frames: list[Frame] = []
    held: deque[Frame] = deque()
    w_start = start

    def due(w_end: int) -> tuple[Frame, ...]:
        while held and held[0].t < w_end:
            frames.append(held.popleft())
        out = tuple(frames)
        frames.clear()
        return out

    damage: list[EventFileError] = []
    for item in _until_damage(items, damage):
        if isinstance(item, Frame):
            if (start is not None and item.t < start) or (end is not None and item.t >= end):
                continue
            held.append(item)
            if len(held) > MAX_HELD_FRAMES:
                frames.append(held.popleft())
            continue
        packet = item
        t = packet["t"]
        if start is not None and t[-1] < start:
            continue
        if start is not None and t[0] < start:
            packet = packet[int(np.searchsorted(t, start, side="left")) :]
            t = packet["t"]
        if w_start is None:
            w_start = int(t[0])
        while packet.shape[0]:
            w_end = w_start + duration
            if end is not None and w_start >= end:
                return
            limit = w_end if end is None else min(w_end, end)
            cut = int(np.searchsorted(t, limit, side="left"))
            if cut == packet.shape[0]:
                pending.append(packet)
                break
            pending.append(packet[:cut])
            yield EventWindow(w_start, w_end, _join(pending), due(w_end))
            pending = []
            packet = packet[cut:]
            t = packet["t"]
            w_start = w_end
    if w_start is not None and (pending or held or frames) and (end is None or w_start < end):
        frames.extend(held)
        held.clear()
        yield EventWindow(w_start, w_start + duration, _join(pending), due(w_start + duration))
    if damage:
        raise damage[0]


def _until_damage(
    items: Iterator[EventArray | Frame], damage: list[EventFileError]
) -> Iterator[EventArray | Frame]:
    """The stream's items up to a damaged part, whose error goes to ``damage``: the window in
    progress is completed and yielded before the error is raised (no accepted event is lost)."""
    try:
        yield from items
    except EventFileError as exc:
        damage.append(exc)


def join_records(parts: list[EventArray]) -> EventArray:
    """EVENT_DTYPE packets joined into one new array, copied as plain 16-byte records.

    ``np.concatenate(parts, dtype=EVENT_DTYPE)`` (``concat_events``) converts field by field:
    measured on the 539k-event EVT2 sample's 34 packets, 11.9 ms against 1.3 ms this way. A
    packet that is not C-contiguous EVENT_DTYPE (none of ours) is copied field by field.
    """
    total = sum(p.shape[0] for p in parts)
    out = np.empty(total, dtype=EVENT_DTYPE)
    words = out.view(np.int64).reshape(-1, 2)
    pos = 0
    for part in parts:
        n = part.shape[0]
        if part.dtype == EVENT_DTYPE and part.flags.c_contiguous:
            words[pos : pos + n] = part.view(np.int64).reshape(-1, 2)
        else:
            out[pos : pos + n] = empty_events(n)
            for name in ("t", "x", "y", "p"):
                out[name][pos : pos + n] = part[name]
        pos += n
    return out


def _join(parts: list[EventArray]) -> EventArray:
    """One read-only array from window pieces (no copy when there is one piece)."""
    parts = [p for p in parts if p.shape[0]]
    out = parts[0] if len(parts) == 1 else join_records(parts)
    out.flags.writeable = False
    return out
