"""Plain-text event lists, one ``t x y p`` line per event (spaces, tabs or commas).

The layout of the Event Camera Dataset (``events.txt``) and of many exports. Lines starting with
``#`` or ``%`` before the first event are a header; one naming ``sensor WxH`` (as the text
writer writes it) gives the sensor size. Times with a decimal point are seconds,
integers µs (``time_unit`` overrides). Read in 1 MiB blocks and parsed with numpy, so a
multi-gigabyte export streams; a malformed line stops reading there, naming its byte offset.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.recorders.arrays import ColumnReader
from respike.recorders.base import ReadOptions

BLOCK_BYTES = 1 << 20
#: a header line's sensor size: "sensor 1280x720" (the text writer's), "sensor: 640 x 480"
SENSOR_LINE = re.compile(r"\bsensor\b\W*(\d+)\s*[xX]\s*(\d+)")


class TextReader(ColumnReader):
    """``t x y p`` text lines; see the module docstring."""

    format_name = "text"

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        super().__init__(path, options)
        self._start, self._seconds, self._sensor_size = self._sniff()
        self._row_bytes: dict[int, int] = {}

    def _sniff(self) -> tuple[int, bool, tuple[int, int] | None]:
        """Byte offset of the first event line, whether its time has a decimal point, and the
        sensor size when a header line names it."""
        pos = 0
        sensor: tuple[int, int] | None = None
        with self._path.open("rb") as f:
            for line in f:
                stripped = line.strip()
                if stripped and stripped[:1] not in (b"#", b"%", b"/"):
                    t = stripped.replace(b",", b" ").split()[0]
                    return pos, b"." in t or b"e" in t.lower(), sensor
                size = SENSOR_LINE.search(stripped.decode("latin-1"))
                if size and sensor is None:
                    sensor = (int(size.group(1)), int(size.group(2)))
                pos += len(line)
        return pos, False, sensor

    def _row_offset(self, row: int) -> int | None:
        return self._row_bytes.get(row)

    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        self._row_bytes.clear()
        row = 0
        pos = self._start
        carry = b""
        with self._path.open("rb") as f:
            f.seek(pos)
            while True:
                chunk = f.read(BLOCK_BYTES)
                data = carry + chunk
                if not chunk:
                    if data.strip():
                        data += b"\n"
                    else:
                        return
                cut = data.rfind(b"\n") + 1
                block, carry = data[:cut], data[cut:]
                values, bad = _parse(block)
                rows = values.shape[0]
                if rows:
                    cols = {
                        "t": values[:, 0]
                        if self._seconds
                        else np.round(values[:, 0]).astype(np.int64),
                        "x": values[:, 1].astype(np.int64),
                        "y": values[:, 2].astype(np.int64),
                        "p": values[:, 3],
                    }
                    yield row, cols
                if bad is not None:
                    self._row_bytes[row + rows] = pos + bad
                    raise self._damaged(
                        "line is not four numbers 't x y p'",
                        offset=pos + bad,
                        where=f"event line {row + rows}",
                    )
                row += rows
                pos += cut
                if not chunk:
                    return


def _parse(block: bytes) -> tuple[npt.NDArray[np.float64], int | None]:
    """Parse whole lines into an (n, 4) array; on a bad line, the rows before it and its offset.

    Fast path: one ``np.fromstring`` over the block; only when the numbers do not come out as
    four per line is the block walked line by line to find the bad one.
    """
    text = block.replace(b",", b" ").decode("ascii", errors="replace")
    lines = block.count(b"\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(text, sep=" ")
    except ValueError:
        values = np.empty(0)
    if values.shape[0] == 4 * lines:
        return values.reshape(lines, 4), None
    good: list[list[float]] = []
    offset = 0
    for line in block.split(b"\n")[:lines]:
        fields = line.replace(b",", b" ").split()
        if not fields:
            offset += len(line) + 1
            continue
        try:
            if len(fields) != 4:
                raise ValueError(line)
            good.append([float(v) for v in fields])
        except ValueError:
            return np.asarray(good, dtype=np.float64).reshape(-1, 4), offset
        offset += len(line) + 1
    return np.asarray(good, dtype=np.float64).reshape(-1, 4), None
