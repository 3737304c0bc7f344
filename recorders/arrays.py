"""Event arrays stored as columns: NumPy ``.npy``/``.npz`` and HDF5 event files.

These formats fix neither the time unit nor the sort order, so every block is checked: times must
not go backwards (an unsorted file is reported, not silently re-sorted, because sorting needs the
whole file), coordinates must fit uint16, polarity may be 0/1, -1/1 or bool (anything > 0 is ON).
Floating-point times are seconds, integers µs, unless ``time_unit`` says otherwise.
``.npy`` files are memory-mapped and HDF5 datasets sliced, so both stream in bounded memory;
``.npz`` members are loaded whole (zip members cannot be mapped).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.events import EVENT_DTYPE, empty_events
from respike.events.types import EventArray
from respike.recorders.base import TIME_UNITS, EventReader, Frame, ReadOptions
from respike.recorders.kernels import first_bad_record

FIELD_SETS = (("t", "x", "y", "p"), ("ts", "xs", "ys", "ps"))
#: records read and checked at once by the .npy fast path (16 MiB: bounds its memory)
CHECK_ROWS = 1 << 20
UINT16_MAX = int(np.iinfo(np.uint16).max)


class ColumnReader(EventReader):
    """Shared checks and conversion for formats that store t, x, y, p columns.

    Subclasses yield (index of the first row, columns t/x/y/p) blocks from :meth:`_blocks` and
    may map a row index to a byte offset in :meth:`_row_offset`.
    """

    @abc.abstractmethod
    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        """Yield (first row, {"t","x","y","p": 1-D arrays}) in file order."""

    #: added to every time after unit conversion (DSEC stores a per-file offset in µs)
    _t_offset_us = 0

    def _row_offset(self, row: int) -> int | None:
        """Byte offset of ``row`` in the file, when the format makes it computable."""
        return None

    def _where(self, row: int) -> str:
        return f"row {row}"

    def _items(self) -> Iterator[EventArray | Frame]:
        yield from self._convert(self._blocks(), np.iinfo(np.int64).min)

    def _convert(
        self, blocks: Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]], last_t: int
    ) -> Iterator[EventArray]:
        """Check and convert column blocks; raise at the first bad row after the rows before."""
        for first, cols in blocks:
            t = _to_us(cols["t"], self._options.time_unit) + self._t_offset_us
            x = np.asarray(cols["x"])
            y = np.asarray(cols["y"])
            p = np.asarray(cols["p"])
            n = t.shape[0]
            if not (x.shape[0] == y.shape[0] == p.shape[0] == n):
                raise self._damaged(
                    f"columns differ in length (t {n}, x {x.shape[0]}, y {y.shape[0]}, "
                    f"p {p.shape[0]})",
                    where=self._where(first),
                )
            back = np.flatnonzero(t < np.concatenate(([last_t], t[:-1])))
            bad_xy = np.flatnonzero((x < 0) | (x > UINT16_MAX) | (y < 0) | (y > UINT16_MAX))
            problems = []
            if back.shape[0]:
                problems.append((int(back[0]), "event times go backwards (file is not sorted)"))
            if bad_xy.shape[0]:
                problems.append((int(bad_xy[0]), "event coordinate outside 0..65535"))
            stop = min(problems)[0] if problems else n
            if stop:
                out = empty_events(stop)
                out["t"] = t[:stop]
                out["x"] = x[:stop]
                out["y"] = y[:stop]
                out["p"] = p[:stop] > 0
                last_t = int(out["t"][-1])
                yield out
            if problems:
                row = first + stop
                raise self._damaged(
                    min(problems)[1], offset=self._row_offset(row), where=self._where(row)
                )


def _to_us(t: npt.NDArray[Any], unit: str | None) -> npt.NDArray[np.int64]:
    """Times in int64 µs: ``unit`` if given, else seconds for floats and µs for integers."""
    t = np.asarray(t)
    if unit is None:
        unit = "s" if t.dtype.kind == "f" else "us"
    scale = TIME_UNITS[unit]
    if scale == 1.0 and t.dtype.kind in "iu":
        return t.astype(np.int64)
    return np.round(t.astype(np.float64) * scale).astype(np.int64)


def _pick_fields(names: Any) -> tuple[str, str, str, str] | None:
    """The (t, x, y, p) names present in ``names`` (plain or event_utils' plural layout)."""
    have = set(names)
    for fields in FIELD_SETS:
        if set(fields) <= have:
            return fields[0], fields[1], fields[2], fields[3]
    return None


class MappedNpyReader(ColumnReader):
    """A ``.npy`` file read through ``np.load(mmap_mode="r")``, rows located by byte offset."""

    def _map(self) -> Any:
        try:
            return np.load(self._path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise self._damaged(f"NumPy header or data cannot be mapped ({exc})") from None

    def _row_offset(self, row: int) -> int | None:
        array = self._map()
        return int(array.offset) + row * array.strides[0]


class NpyReader(MappedNpyReader):
    """``.npy`` structured array with t, x, y, p fields (any order and integer/float types)."""

    format_name = "npy"

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        super().__init__(path, options)
        shape, dtype, offset = self._header()
        fields = _pick_fields(dtype.names or ())
        if len(shape) != 1 or fields is None:
            raise self._damaged(
                f"holds a {dtype} array of shape {shape}; expected a 1-D structured "
                "array with fields t, x, y, p",
            )
        self._fields = fields
        self._layout = (dtype, int(shape[0]), offset)

    def _header(self) -> tuple[tuple[int, ...], np.dtype, int]:
        """Shape, dtype and data offset from the .npy header (cheaper than mapping the file),
        checked against the file size as ``np.load(mmap_mode="r")`` would."""
        from numpy.lib import format as npy_format

        try:
            with self._path.open("rb") as f:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = npy_format.read_array_header_2_0(f)
                offset = f.tell()
        except (ValueError, OSError) as exc:
            raise self._damaged(f"NumPy header cannot be read ({exc})") from None
        if dtype.hasobject or (fortran and len(shape) > 1):
            raise self._damaged(f"holds a {dtype} array that cannot be mapped")
        need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = self._path.stat().st_size
        if size < need:
            raise self._damaged(
                f"NumPy data cannot be mapped: the file ends before the {need} bytes its header "
                "announces (truncated)",
                offset=size,
            )
        return tuple(shape), dtype, offset

    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        array = self._map()
        step = self._options.packet_events
        names = dict(zip(("t", "x", "y", "p"), self._fields, strict=True))
        for start in range(0, array.shape[0], step):
            block = array[start : start + step]
            yield start, {k: block[v] for k, v in names.items()}

    def _items(self) -> Iterator[EventArray | Frame]:
        """Arrays saved with EVENT_DTYPE's record layout (like the expelliarmus reference files)
        are read CHECK_ROWS records at a time straight into EVENT_DTYPE memory (plain reads:
        faulting in a memory map cost more than the whole ``numpy.load``), checked vectorised
        (order, x/y >= 0, p <= 1) and handed out as views of that memory; other layouts, and the
        rows from the chunk holding the first bad row on, go field by field, which names the row.
        Padding bytes are whatever the file holds there (no field covers them).
        """
        dtype, total, offset = self._layout
        if not _same_layout(dtype):
            yield from super()._items()
            return
        step = self._options.packet_events
        signed_xy = dtype["x"].kind == "i" or dtype["y"].kind == "i"
        last_t = np.iinfo(np.int64).min
        with self._path.open("rb") as f:
            f.seek(offset)
            for first in range(0, total, CHECK_ROWS):
                chunk = np.empty(min(CHECK_ROWS, total - first), dtype=EVENT_DTYPE)
                if f.readinto(chunk.view(np.uint8).data) != chunk.nbytes:
                    raise self._damaged("file ends inside its array (truncated)")
                words = chunk.view(np.int64).reshape(-1, 2)
                if first_bad_record(words, last_t, signed_xy) >= 0:
                    yield from self._slow_from(first, last_t)
                    return
                for start in range(0, chunk.shape[0], step):
                    yield chunk[start : start + step]
                last_t = int(words[-1, 0])

    def _slow_from(self, start: int, last_t: int) -> Iterator[EventArray | Frame]:
        """Field-by-field path from row ``start`` on (it names the first bad row)."""
        array = self._map()
        step = self._options.packet_events
        names = dict(zip(("t", "x", "y", "p"), self._fields, strict=True))

        def blocks() -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
            for first in range(start, array.shape[0], step):
                block = array[first : first + step]
                yield first, {k: block[v] for k, v in names.items()}

        yield from self._convert(blocks(), last_t)


def _same_layout(dtype: np.dtype) -> bool:
    """Whether ``dtype`` has EVENT_DTYPE's byte layout with integer x/y and one-byte p."""
    if dtype.names is None or set(dtype.names) != {"t", "x", "y", "p"} or dtype.itemsize != 16:
        return False
    fields: Mapping[str, Any] = dtype.fields or {}
    want = {"t": (0, 8, "i"), "x": (8, 2, "iu"), "y": (10, 2, "iu"), "p": (12, 1, "iub")}
    for name, (offset, size, kinds) in want.items():
        sub, off = fields[name][0], fields[name][1]
        if off != offset or sub.itemsize != size or sub.kind not in kinds:
            return False
        if size > 1 and sub.byteorder == ">":
            return False
    return True


class NpzReader(ColumnReader):
    """``.npz``: member ``events`` (or the only structured member), or t/x/y/p column members."""

    format_name = "npz"

    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        try:
            archive = np.load(self._path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise self._damaged(f"archive cannot be opened ({exc})") from None
        try:
            columns = self._columns(archive)
            n = columns["t"].shape[0]
            step = self._options.packet_events
            for start in range(0, n, step):
                yield start, {k: v[start : start + step] for k, v in columns.items()}
        finally:
            archive.close()

    def _columns(self, archive: Any) -> dict[str, npt.NDArray[Any]]:
        try:
            keys = list(archive.keys())
            fields = _pick_fields(keys)
            if fields is not None:
                return dict(zip(("t", "x", "y", "p"), (archive[k] for k in fields), strict=True))
            for key in ["events", *keys]:
                if key in keys:
                    member = archive[key]
                    inner = _pick_fields(member.dtype.names or ())
                    if inner is not None:
                        return dict(
                            zip(("t", "x", "y", "p"), (member[k] for k in inner), strict=True)
                        )
        except (ValueError, OSError, KeyError) as exc:
            raise self._damaged(f"archive member cannot be read ({exc})") from None
        raise self._damaged(
            f"members {keys} hold no events: expected 'events' (structured t, x, y, p) or "
            "t, x, y, p columns"
        )


class Hdf5Reader(ColumnReader):
    """HDF5 with ``events/{t,x,y,p}``, ``events/{ts,xs,ys,ps}`` (event_utils), the same at the
    root, or a compound ``events`` / ``CD/events`` dataset; DSEC's root ``t_offset`` is added.

    Sensor size from ``width``/``height`` attributes of the file or the events group.
    """

    format_name = "hdf5"

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        super().__init__(path, options)
        with self._file() as f:
            self._layout = self._find_layout(f)
            for node in (f, f[self._layout[0]] if self._layout[0] else f):
                attrs = node.attrs
                if "width" in attrs and "height" in attrs:
                    self._sensor_size = (int(attrs["width"]), int(attrs["height"]))
                    break

    def _file(self) -> Any:
        import h5py

        try:
            return h5py.File(self._path, "r")
        except OSError as exc:
            raise self._damaged(f"HDF5 file cannot be opened ({exc})") from None

    def _find_layout(self, f: Any) -> tuple[str, tuple[str, str, str, str] | None]:
        """(group or compound dataset path, column names or None for a compound dataset)."""
        import h5py

        for group in ("events", ""):
            if group and group not in f:
                continue
            node = f[group] if group else f
            if isinstance(node, h5py.Group):
                fields = _pick_fields(node.keys())
                if fields is not None:
                    return group, fields
        for name in ("events", "CD/events"):
            if (
                name in f
                and isinstance(f[name], h5py.Dataset)
                and _pick_fields(f[name].dtype.names or ()) is not None
            ):
                return name, None
        raise self._damaged(
            "no event datasets found: expected events/{t,x,y,p}, events/{ts,xs,ys,ps} "
            "or a compound events dataset"
        )

    def _where(self, row: int) -> str:
        return f"{self._layout[0] or '/'} row {row}"

    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        step = self._options.packet_events
        with self._file() as f:
            path, fields = self._layout
            self._t_offset_us = int(np.asarray(f["t_offset"])) if "t_offset" in f else 0
            if fields is None:
                compound = f[path]
                names = _pick_fields(compound.dtype.names or ()) or ("t", "x", "y", "p")
                n = compound.shape[0]
            else:
                group = f[path] if path else f
                columns = [group[name] for name in fields]
                n = columns[0].shape[0]
            for start in range(0, n, step):
                try:
                    if fields is None:
                        block = compound[start : start + step]
                        cols = [block[name] for name in names]
                    else:
                        cols = [c[start : start + step] for c in columns]
                except OSError as exc:
                    raise self._damaged(
                        f"dataset cannot be read ({exc})", where=self._where(start)
                    ) from None
                yield start, dict(zip(("t", "x", "y", "p"), cols, strict=True))
