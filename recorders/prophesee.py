"""Prophesee recordings: RAW EVT2 and EVT3 (numba kernels) and DAT (vectorised numpy).

The files are read in 1 MiB blocks whatever their size. Sensor size comes from the ASCII header
(``% format EVT3;width=..;height=..``, ``% geometry WxH``, ``% Width``/``% Height``, or the sensor
generation / plugin name); when it is known, an event outside it marks the file as damaged.

expelliarmus (the reader tonic uses) is the reference in the tests and the benchmark but not the
decoder: it cannot say where a file is damaged (it decodes garbage words silently), it needs the
``.raw``/``.dat`` extension, and its EVT3 times are wrong and it rejects EVT3 trigger words (see
:mod:`respike.recorders.kernels`). Its EVT2 and DAT output equals ours event for event.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.events import EVENT_DTYPE, empty_events
from respike.events.types import EventArray
from respike.recorders.base import EventReader, Frame, ReadOptions, TriggerArray, trigger_array
from respike.recorders.errors import EventFileError, UnknownFormatError
from respike.recorders.kernels import (
    ERROR_TEXT,
    decode_evt2,
    decode_evt3,
    evt2_state,
    evt3_state,
    record_words,
)
from respike.recorders.timing import Unwrapper

BLOCK_BYTES = 1 << 20
HEADER_LIMIT = 1 << 16

# Sensor sizes by generation, for headers that name the sensor but not its geometry.
_GENERATION_SIZES = {
    "gen41": (1280, 720),
    "gen4": (1280, 720),
    "imx636": (1280, 720),
    "imx646": (1280, 720),
    "gen31": (640, 480),
    "gen3": (640, 480),
    "imx8": (640, 480),
}


@dataclass(frozen=True)
class PropheseeHeader:
    """The ``%``-comment header of a RAW or DAT file and where the binary data starts."""

    fields: Mapping[str, str]
    data_start: int
    encoding: str | None
    sensor_size: tuple[int, int] | None
    dat_event_size: int = 0


def read_header(path: Path) -> PropheseeHeader:
    """Parse the ASCII header: ``% key value`` lines up to the first non-``%`` byte or ``% end``.

    For DAT files the two bytes after the header (event type, event size) are consumed too.
    The result is cached per file version (path, size, modification time): format detection
    and the reader both need it, and for a small file parsing it twice was the largest cost of
    an open.
    """
    stat = path.stat()
    return _read_header(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read_header(path_text: str, _size: int, _mtime_ns: int) -> PropheseeHeader:
    """read_header's work; the size and time arguments only key the cache."""
    with open(path_text, "rb") as f:
        head = f.read(HEADER_LIMIT)
    fields: dict[str, str] = {}
    pos = 0
    ended = False
    while pos < len(head) and head[pos : pos + 1] == b"%" and not ended:
        nl = head.find(b"\n", pos)
        if nl < 0:
            nl = len(head) - 1
        line = head[pos + 1 : nl].decode("latin-1").strip()
        pos = nl + 1
        if line.lower() == "end":
            ended = True
            continue
        key, _, value = line.partition(" ")
        fields.setdefault(key, value.strip())
    text = " ".join(f"{k} {v}" for k, v in fields.items()).lower()
    encoding: str | None = None
    fmt = fields.get("format", "").lower()
    if fmt.startswith("evt3") or fields.get("evt", "").startswith("3"):
        encoding = "evt3"
    elif fmt.startswith("evt21") or fields.get("evt", "").startswith("2.1"):
        encoding = "evt21"
    elif fmt.startswith("evt2") or fields.get("evt", "").startswith("2"):
        encoding = "evt2"
    elif "data file containing" in text or ("version" in fields and "date" in fields):
        encoding = "dat"
    dat_event_size = 0
    if encoding == "dat" and pos + 2 <= len(head):
        dat_event_size = head[pos + 1]
        pos += 2
    sensor = _sensor_size(fields)
    return PropheseeHeader(MappingProxyType(fields), pos, encoding, sensor, dat_event_size)


def _sensor_size(fields: Mapping[str, str]) -> tuple[int, int] | None:
    """Width and height from whichever header line states or implies them."""
    fmt = fields.get("format", "")
    w = re.search(r"width=(\d+)", fmt)
    h = re.search(r"height=(\d+)", fmt)
    if w and h:
        return int(w.group(1)), int(h.group(1))
    geom = re.match(r"(\d+)x(\d+)", fields.get("geometry", ""))
    if geom:
        return int(geom.group(1)), int(geom.group(2))
    lower = {k.lower(): v for k, v in fields.items()}
    if lower.get("width", "").isdigit() and lower.get("height", "").isdigit():
        return int(lower["width"]), int(lower["height"])
    generation = fields.get("sensor_generation", "")
    if generation:
        name = "gen" + generation.replace(".", "")
        if name in _GENERATION_SIZES:
            return _GENERATION_SIZES[name]
    plugin = fields.get("plugin_name", "").lower()
    for name, size in _GENERATION_SIZES.items():
        if re.search(rf"(^|_){name}(_|$)", plugin):
            return size
    return None


class PropheseeReader(EventReader):
    """EVT2, EVT3 or DAT file (``encoding`` picks which); see the module docstring."""

    def __init__(
        self, path: str | Path, options: ReadOptions | None = None, *, encoding: str
    ) -> None:
        super().__init__(path, options)
        if encoding not in ("evt2", "evt3", "dat"):
            raise ValueError(f"unknown Prophesee encoding {encoding!r}")
        self.format_name = encoding
        self._header = read_header(self._path)
        if self._header.encoding == "evt21":
            raise UnknownFormatError(
                self._path, "Prophesee EVT 2.1 is not supported", ("evt2", "evt3", "dat")
            )
        self._sensor_size = self._header.sensor_size

    @property
    def header(self) -> PropheseeHeader:
        """The parsed ASCII header (fields, data start, sensor size)."""
        return self._header

    def _items(self) -> Iterator[EventArray | Frame]:
        if self.format_name == "dat":
            return self._dat()
        return self._words()

    def _geometry(self) -> tuple[int, int]:
        return self._sensor_size if self._sensor_size else (0, 0)

    def _trigger_items(self) -> Iterator[TriggerArray]:
        """EVT3 EXT_TRIGGER words, collected by a full decoding pass (the events are dropped)."""
        if self.format_name != "evt3":
            return
        found: list[TriggerArray] = []
        try:
            for _ in self._words(found):
                yield from found
                found.clear()
        except EventFileError:
            yield from found  # the triggers decoded before the damage
            raise
        yield from found

    def _whole_items(self) -> Iterator[EventArray | Frame]:
        """EVT2/EVT3 for ``read_all``: the whole file decoded into one array (see _words)."""
        if self.format_name == "dat":
            return self._dat()
        return self._words(one_array=True)

    def _words(
        self, triggers: list[TriggerArray] | None = None, *, one_array: bool = False
    ) -> Iterator[EventArray]:
        """EVT2/EVT3: blocks of words through the resumable kernel into fixed-size packets.

        With a ``triggers`` list, EVT3 trigger events are appended to it as they are decoded.
        With ``one_array`` (``read_all``) the kernel decodes into one array for the whole file,
        sized from the file (EVT2: one event per word at most; EVT3: one per word, doubled
        when full), so there is nothing to join afterwards.
        """
        evt3 = self.format_name == "evt3"
        word = 2 if evt3 else 4
        dtype = np.dtype("<u2") if evt3 else np.dtype("<u4")
        width, height = self._geometry()
        cap = self._options.packet_events + 12
        if one_array:
            cap = max(cap, (self._path.stat().st_size - self._header.data_start) // word + 12)
        state = evt3_state() if evt3 else evt2_state()
        room = BLOCK_BYTES // word if evt3 else 0  # EVT3 trigger words: one per word at most
        trig_t = np.empty(room, dtype=np.int64)
        trig_e = np.empty(room, dtype=np.uint8)
        trig_i = np.empty(room, dtype=np.uint8)
        packet = np.empty(cap, dtype=EVENT_DTYPE)
        out = record_words(packet)
        n = 0
        pos = self._header.data_start
        with self._path.open("rb") as f:
            f.seek(pos)
            block = bytearray(BLOCK_BYTES)  # reused: the kernels copy what they decode
            while got := f.readinto(block):
                whole = got - got % word
                words: npt.NDArray[Any] = np.frombuffer(block, dtype=dtype, count=whole // word)
                i = 0
                while i < words.shape[0]:
                    if evt3:
                        n, nt, i, err = decode_evt3(
                            words, i, state, out, n, width, height, trig_t, trig_e, trig_i, 0
                        )
                        if nt and triggers is not None:
                            triggers.append(trigger_array(trig_t[:nt], trig_e[:nt], trig_i[:nt]))
                    else:
                        n, i, err = decode_evt2(words, i, state, out, n, width, height)
                    if err:
                        if n:
                            yield packet[:n]
                        raise self._damaged(ERROR_TEXT[err], offset=pos + i * word)
                    if i < words.shape[0] and one_array:  # out of room: grow, keep decoding
                        cap *= 2
                        grown = np.empty(cap, dtype=EVENT_DTYPE)
                        record_words(grown)[:n] = out[:n]
                        packet, out = grown, record_words(grown)
                    elif i < words.shape[0]:
                        yield packet[:n]
                        packet = np.empty(cap, dtype=EVENT_DTYPE)
                        out = record_words(packet)
                        n = 0
                pos += whole
                if whole < got:
                    if n:
                        yield packet[:n]
                    raise self._damaged(
                        f"file ends inside a {word}-byte word (truncated)", offset=pos
                    )
        if n:
            yield packet[:n]

    def _dat(self) -> Iterator[EventArray]:
        """DAT: 8-byte records (u32 µs time, u32 x:14 y:14 p:4), unwrapped at 2**32 µs."""
        size = self._header.dat_event_size
        if size != 8:
            raise self._damaged(
                f"DAT event size is {size}; only 8-byte CD records are supported",
                offset=self._header.data_start - 1,
            )
        width, height = self._geometry()
        unwrap = Unwrapper(bits=32, window=1 << 28)
        per_block = max(1, min(self._options.packet_events, BLOCK_BYTES // 8))
        pos = self._header.data_start
        with self._path.open("rb") as f:
            f.seek(pos)
            while raw := f.read(per_block * 8):
                nrec = len(raw) // 8
                rec = np.frombuffer(raw, dtype="<u4", count=2 * nrec).reshape(nrec, 2)
                t, bad = unwrap.feed(rec[:, 0].astype(np.int64))
                data = rec[:, 1]
                x = data & 0x3FFF
                y = (data >> 14) & 0x3FFF
                p = data >> 28
                suspect = p > 1
                if width:
                    suspect |= (x >= width) | (y >= height)
                found: list[tuple[int, str]] = []
                if bad >= 0 or suspect.any():  # name the first problem; else one check only
                    checks = [(bad, "time steps back and is not a wrap-around")]
                    checks.append((_first(p > 1), "polarity field above 1"))
                    if width:
                        checks.append((_first(x >= width), "event x outside the sensor width"))
                        checks.append((_first(y >= height), "event y outside the sensor height"))
                    found = [(i, why) for i, why in checks if i >= 0]
                stop = min(found)[0] if found else nrec
                if stop:
                    out = empty_events(stop)
                    out["t"] = t[:stop]
                    out["x"] = x[:stop]
                    out["y"] = y[:stop]
                    out["p"] = p[:stop]
                    yield out
                if found:
                    raise self._damaged(min(found)[1], offset=pos + stop * 8)
                if len(raw) % 8:
                    raise self._damaged(
                        "file ends inside an 8-byte record (truncated)", offset=pos + nrec * 8
                    )
                pos += len(raw)


def _first(mask: np.ndarray) -> int:
    """Index of the first True in ``mask``, or -1."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.shape[0] else -1
