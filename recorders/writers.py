"""Event-file writers: HDF5 (h5py), AEDAT 4 (iniVation's dv-processing) and text, streamed.

Each writer takes EVENT_DTYPE packets one at a time, so converting a file larger than memory
holds one packet at once. HDF5 uses the common ``events/{t,x,y,p}`` layout (t in µs, int64)
with ``width``/``height`` attributes, which :mod:`respike.recorders` and most event tools read.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from respike.events.types import EventArray


class EventWriter(abc.ABC):
    """Appends event packets to a file; use as a context manager or call :meth:`close`."""

    format_name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
        self.path = path
        self.sensor_size = sensor_size
        self.count = 0

    @abc.abstractmethod
    def write(self, events: EventArray) -> None:
        """Append one packet (non-decreasing t, continuing the previous packet)."""

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

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
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
    """AEDAT 4 through iniVation's own writer (dv-processing), the format DV software reads."""

    format_name = "aedat4"
    suffixes = (".aedat4",)

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
        import dv_processing as dv

        super().__init__(path, sensor_size)
        self._dv = dv
        config = dv.io.MonoCameraWriter.EventOnlyConfig("respike", sensor_size)
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

    def close(self) -> None:
        del self._writer  # dv-processing finishes the file when its writer is destroyed


class TextWriter(EventWriter):
    """One ``t x y p`` line per event (µs), the plain format many datasets ship.

    Space-separated, except ``.csv`` files, which get commas. The first line is a ``#`` header
    naming the columns and ``sensor WxH``, which the text reader takes the sensor size from.
    """

    format_name = "text"
    suffixes = (".txt", ".csv")

    def __init__(self, path: Path, sensor_size: tuple[int, int]) -> None:
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


def writer_for(path: Path | str, sensor_size: tuple[int, int]) -> EventWriter:
    """The writer for ``path``'s suffix; the error lists what can be written."""
    path = Path(path)
    for writer in WRITERS:
        if path.suffix.lower() in writer.suffixes:
            return writer(path, sensor_size)
    known = ", ".join(f"{w.format_name} ({' '.join(w.suffixes)})" for w in WRITERS)
    raise ValueError(
        f"cannot write {path}: unknown output suffix {path.suffix!r}; writable formats: {known}"
    )


def write_packets(
    packets: Iterable[EventArray],
    path: Path | str,
    sensor_size: tuple[int, int],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every packet to ``path`` (format from the suffix); returns the event count."""
    with writer_for(path, sensor_size) as writer:
        for packet in packets:
            writer.write(packet)
            if progress is not None:
                progress(len(packet))
        return writer.count
