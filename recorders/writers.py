"""Event-file writers: HDF5 (h5py), AEDAT 4 (iniVation's dv-processing) and text, streamed.

Each writer takes EVENT_DTYPE packets one at a time, so converting a file larger than memory
holds one packet at once. HDF5 uses the common ``events/{t,x,y,p}`` layout (t in µs, int64)
with ``width``/``height`` attributes, which :mod:`respike.recorders` and most event tools read.
AEDAT 4 also carries intensity frames (a reader's ``stream()`` gives both, in file order); the
other formats hold events only and count the frames they were given in ``frames_skipped``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from respike.events.types import EventArray
from respike.recorders.base import Frame


class EventWriter(abc.ABC):
    """Appends event packets (and, where the format holds them, frames) to a file; use as a
    context manager or call :meth:`close`.

    ``frames``: whether frames will come (formats that declare their streams up front, AEDAT 4,
    need to know before the first write).
    """

    format_name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    def __init__(self, path: Path, sensor_size: tuple[int, int], *, frames: bool = False) -> None:
        self.path = path
        self.sensor_size = sensor_size
        self.count = 0
        self.frame_count = 0
        self.frames_skipped = 0

    @abc.abstractmethod
    def write(self, events: EventArray) -> None:
        """Append one packet (non-decreasing t, continuing the previous packet)."""

    def write_frame(self, frame: Frame) -> None:
        """Append one intensity frame; formats without frames count it in ``frames_skipped``."""
        self.frames_skipped += 1

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the file."""

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Hdf5Writer(EventWriter):
    """``events/{t,x,y,p}`` as chunked, compressed, growing datasets."""

    format_name = "hdf5"
    suffixes = (".h5", ".hdf5")
    _DTYPES: ClassVar[dict[str, str]] = {"t": "<i8", "x": "<u2", "y": "<u2", "p": "u1"}

    def __init__(self, path: Path, sensor_size: tuple[int, int], *, frames: bool = False) -> None:
        import h5py

        super().__init__(path, sensor_size)
        self._file = h5py.File(path, "w")
        group = self._file.create_group("events")
        group.attrs["width"], group.attrs["height"] = sensor_size
        group.attrs["t_unit"] = "us"
        self._columns = {
            name: group.create_dataset(
                name,
                shape=(0,),
                maxshape=(None,),
                dtype=dtype,
                chunks=(1 << 16,),
                compression="lzf",
            )
            for name, dtype in self._DTYPES.items()
        }

    def write(self, events: EventArray) -> None:
        n = len(events)
        if not n:
            return
        for name, column in self._columns.items():
            column.resize((self.count + n,))
            column[self.count :] = events[name]
        self.count += n

    def close(self) -> None:
        self._file.close()


class Aedat4Writer(EventWriter):
    """AEDAT 4 through iniVation's own writer (dv-processing), the format DV software reads.

    With ``frames`` the file gets a frame stream of the sensor size beside the events. AEDAT 4
    frames are 8-bit: uint8 images are written as they are, wider unsigned integer images
    (AEDAT 3.1 and bag frames) keep their top 8 bits.
    """

    format_name = "aedat4"
    suffixes = (".aedat4",)

    def __init__(self, path: Path, sensor_size: tuple[int, int], *, frames: bool = False) -> None:
        import dv_processing as dv

        super().__init__(path, sensor_size)
        self._dv = dv
        config = dv.io.MonoCameraWriter.Config("respike")
        config.addEventStream(sensor_size)
        if frames:
            config.addFrameStream(sensor_size)
        self._frames = frames
        self._writer: Any = dv.io.MonoCameraWriter(str(path), config)

    def write(self, events: EventArray) -> None:
        if not len(events):
            return
        store = self._dv.EventStore()
        for t, x, y, p in zip(
            events["t"].tolist(),
            events["x"].tolist(),
            events["y"].tolist(),
            events["p"].tolist(),
            strict=True,
        ):
            store.push_back(t, x, y, bool(p))
        self._writer.writeEvents(store)
        self.count += len(events)

    def write_frame(self, frame: Frame) -> None:
        if not self._frames:
            self.frames_skipped += 1
            return
        image = np.asarray(frame.image)
        if image.dtype.kind != "u":
            raise ValueError(
                f"frame at t={frame.t} has {image.dtype} pixels; AEDAT 4 frames need unsigned "
                "integers"
            )
        if image.dtype.itemsize > 1:
            image = (image >> (8 * image.dtype.itemsize - 8)).astype(np.uint8)
        self._writer.writeFrame(self._dv.Frame(int(frame.t), np.ascontiguousarray(image)))
        self.frame_count += 1

    def close(self) -> None:
        del self._writer  # dv-processing finishes the file when its writer is destroyed


class TextWriter(EventWriter):
    """One ``t x y p`` line per event (µs), the plain format many datasets ship.

    Space-separated, except ``.csv`` files, which get commas. The first line is a ``#`` header
    naming the columns and ``sensor WxH``, which the text reader takes the sensor size from.
    """

    format_name = "text"
    suffixes = (".txt", ".csv")

    def __init__(self, path: Path, sensor_size: tuple[int, int], *, frames: bool = False) -> None:
        super().__init__(path, sensor_size)
        self._sep = "," if path.suffix.lower() == ".csv" else " "
        self._file = path.open("w")
        columns = self._sep.join(("t_us", "x", "y", "p"))
        self._file.write(f"# respike events: {columns}; sensor {sensor_size[0]}x{sensor_size[1]}\n")

    def write(self, events: EventArray) -> None:
        columns = np.column_stack([events[name].astype(np.int64) for name in ("t", "x", "y", "p")])
        np.savetxt(self._file, columns, fmt="%d", delimiter=self._sep)
        self.count += len(events)

    def close(self) -> None:
        self._file.close()


WRITERS: tuple[type[EventWriter], ...] = (Hdf5Writer, Aedat4Writer, TextWriter)


def writer_for(
    path: Path | str, sensor_size: tuple[int, int], *, frames: bool = False
) -> EventWriter:
    """The writer for ``path``'s suffix (``frames``: frames will come too); the error lists
    what can be written."""
    path = Path(path)
    for writer in WRITERS:
        if path.suffix.lower() in writer.suffixes:
            return writer(path, sensor_size, frames=frames)
    known = ", ".join(f"{w.format_name} ({' '.join(w.suffixes)})" for w in WRITERS)
    raise ValueError(
        f"cannot write {path}: unknown output suffix {path.suffix!r}; writable formats: {known}"
    )


def write_packets(
    packets: Iterable[EventArray | Frame],
    path: Path | str,
    sensor_size: tuple[int, int],
    progress: Callable[[int], None] | None = None,
    *,
    frames: bool = False,
) -> int:
    """Write every packet to ``path`` (format from the suffix); returns the event count.

    ``packets`` may hold :class:`Frame` items too (``reader.stream()``): with ``frames`` (say
    ``reader.has_frames``) a format that holds frames (AEDAT 4) writes them in order; the
    others skip them. ``progress`` is called with each packet's event count.
    """
    with writer_for(path, sensor_size, frames=frames) as writer:
        for packet in packets:
            if isinstance(packet, Frame):
                writer.write_frame(packet)
                continue
            writer.write(packet)
            if progress is not None:
                progress(len(packet))
        return writer.count
