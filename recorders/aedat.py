"""iniVation AEDAT files: 4.0 through the ``aedat`` package, 2.0 and 3.1 decoded with numpy.

AEDAT 4 streams packet by packet from the Rust decoder (events and frames); this module walks the
packet headers beside it so a decoder error can name the byte offset of the packet that failed.
AEDAT 2.0 (jAER) and 3.1 (cAER) have no maintained Python decoder: tonic has helpers for a few
cameras that read whole files and ignore packet types, so they are decoded here, per packet or
per block, with the address layouts of tonic's ``read_dvs_128`` / ``read_davis_346`` (2.0) and
libcaer's polarity and frame events (3.1). Frames: 3.1 frame packets (libcaer
``caer_frame_event``) as stored; 2.0 DAVIS APS samples (jAER ``DavisChip`` address layout)
assembled into frames of reset read minus signal read, as jAER's frame extractor shows them.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from respike.events import empty_events
from respike.events.types import EventArray
from respike.recorders.base import EventReader, Frame, ReadOptions
from respike.recorders.timing import Unwrapper

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
FRAME_PACKET = 2  # cAER event type of frame packets
FRAME_HEADER = 36  # bytes of a caer_frame_event before its pixels
DAVIS_SIZES = ((346, 260), (240, 180))  # jAER DAVIS chips whose address layout is known

# Sensor sizes by the camera names cAER/jAER write into their headers.
_CAMERA_SIZES = (
    ("dvxplorer_lite", (320, 240)),
    ("dvxplorerlite", (320, 240)),
    ("dvxplorer", (640, 480)),
    ("davis346", (346, 260)),
    ("davis240", (240, 180)),
    ("davis640", (640, 480)),
    ("davis208", (208, 192)),
    ("dvs132s", (132, 104)),
    ("dvs128", (128, 128)),
    ("tmpdiff128", (128, 128)),
)


def camera_size(name: str) -> tuple[int, int] | None:
    """Sensor (width, height) for a camera or chip class name, None when unknown."""
    key = re.sub(r"[\s\-.]", "", name.lower())
    for camera, size in _CAMERA_SIZES:
        if camera.replace("_", "") in key:
            return size
    return None


class Aedat4Reader(EventReader):
    """AEDAT 4.0 (DV software): the first event stream, and frames of the first frame stream."""

    format_name = "aedat4"

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        super().__init__(path, options)
        streams = self._open_decoder().id_to_stream()
        events = sorted(k for k, v in streams.items() if v["type"] == "events")
        frames = sorted(k for k, v in streams.items() if v["type"] == "frame")
        self._event_stream = events[0] if events else None
        self._frame_stream = frames[0] if frames else None
        if self._event_stream is not None:
            info = streams[self._event_stream]
            self._sensor_size = (int(info["width"]), int(info["height"]))

    @property
    def has_frames(self) -> bool:
        return self._frame_stream is not None

    def _open_decoder(self) -> Any:
        import aedat

        try:
            return aedat.Decoder(str(self._path))
        except (RuntimeError, OSError) as exc:
            raise self._damaged(f"header cannot be decoded ({exc})", offset=0) from None

    def _items(self) -> Iterator[EventArray | Frame]:
        decoder = iter(self._open_decoder())
        last_t = np.iinfo(np.int64).min
        with self._path.open("rb") as f:
            f.seek(len(AEDAT4_MAGIC))
            (header_len,) = struct.unpack("<I", f.read(4))
            offset = len(AEDAT4_MAGIC) + 4 + header_len
            while True:
                try:
                    packet = next(decoder)
                except StopIteration:
                    return
                except (RuntimeError, OSError, ValueError) as exc:
                    raise self._damaged(
                        f"packet cannot be decoded ({exc})", offset=offset
                    ) from None
                f.seek(offset)
                head = f.read(8)
                if len(head) == 8:
                    offset += 8 + struct.unpack("<iI", head)[1]
                stream = packet["stream_id"]
                if stream == self._event_stream and "events" in packet:
                    src = packet["events"]
                    if not src.shape[0]:
                        continue
                    out = empty_events(src.shape[0])
                    out["t"] = src["t"]
                    out["x"] = src["x"]
                    out["y"] = src["y"]
                    out["p"] = src["on"]
                    if out["t"][0] < last_t or np.any(np.diff(out["t"]) < 0):
                        raise self._damaged("event times go backwards", offset=offset)
                    last_t = int(out["t"][-1])
                    yield out
                elif stream == self._frame_stream and "frame" in packet:
                    frame = packet["frame"]
                    pixels = np.asarray(frame["pixels"])
                    pixels.flags.writeable = False
                    yield Frame(int(frame["t"]), pixels)


class AedatLegacyReader(EventReader):
    """AEDAT 2.0 (jAER, big-endian address/time pairs) or 3.1 (cAER packets), by ``version``."""

    def __init__(
        self, path: str | Path, options: ReadOptions | None = None, *, version: int
    ) -> None:
        super().__init__(path, options)
        if version not in (2, 3):
            raise ValueError(f"AEDAT version must be 2 or 3, got {version}")
        self.format_name = f"aedat{version}"
        self._version = version
        self._data_start, self._header_lines = _read_hash_header(self._path)
        names = [
            line.split(":", 1)[1].strip()
            for line in self._header_lines
            if re.match(r"#\s*(AEChip|Source \d+|HardwareInterface)\s*:", line)
        ]
        self._camera = names[0] if names else ""
        for name in names:
            size = camera_size(name)
            if size:
                self._sensor_size = size
                break

    @property
    def camera(self) -> str:
        """Camera or chip name from the header ("" when the header names none)."""
        return self._camera

    @property
    def has_frames(self) -> bool:
        """AEDAT 3.1 can carry frame packets from any camera; 2.0 only from a DAVIS chip."""
        if self._version == 3:
            return True
        return camera_size(self._camera) in DAVIS_SIZES

    def _items(self) -> Iterator[EventArray | Frame]:
        if self._version == 2:
            return self._aedat2()
        return self._aedat3()

    def _aedat2(self) -> Iterator[EventArray | Frame]:
        """jAER: 8-byte big-endian (address, µs time) pairs; layout by chip like tonic."""
        layout = _aedat2_layout(self._camera)
        size = camera_size(self._camera)
        aps = ApsFrames(size[0], size[1]) if size is not None and size in DAVIS_SIZES else None
        if layout is None:
            raise self._damaged(
                f"AEDAT 2.0 address layout of camera {self._camera or '(unnamed)'!r} is unknown;"
                " known: DVS128, DAVIS240, DAVIS346",
                offset=0,
            )
        unwrap = Unwrapper(bits=32, window=1 << 28)
        pos = self._data_start
        with self._path.open("rb") as f:
            f.seek(pos)
            while raw := f.read(self._options.packet_events * 8):
                nrec = len(raw) // 8
                rec = np.frombuffer(raw, dtype=">u4", count=2 * nrec).reshape(nrec, 2)
                t, bad = unwrap.feed(rec[:, 1].astype(np.int64))
                stop = nrec if bad < 0 else bad
                addr = rec[:stop, 0]
                x, y, p, dvs = layout(addr)
                out = empty_events(int(dvs.sum()))
                out["t"] = t[:stop][dvs]
                out["x"] = x[dvs]
                out["y"] = y[dvs]
                out["p"] = p[dvs]
                yield out
                if aps is not None:
                    yield from aps.feed(t[:stop], addr)
                if bad >= 0:
                    raise self._damaged("event time steps back", offset=pos + bad * 8)
                if len(raw) % 8:
                    raise self._damaged(
                        "file ends inside an 8-byte event (truncated)", offset=pos + nrec * 8
                    )
                pos += len(raw)

    def _aedat3(self) -> Iterator[EventArray | Frame]:
        """cAER: 28-byte packet headers; polarity (type 1) and frame (type 2) packets decoded,
        others skipped."""
        size = self._path.stat().st_size
        last_t = np.iinfo(np.int64).min
        pos = self._data_start
        with self._path.open("rb") as f:
            f.seek(pos)
            while head := f.read(28):
                if len(head) < 28:
                    raise self._damaged("file ends inside a packet header (truncated)", offset=pos)
                etype, _source, esize, _tsoff, overflow, capacity, number, _valid = struct.unpack(
                    "<hhiiiiii", head
                )
                body = capacity * esize
                if etype < 0 or esize <= 0 or capacity < 0 or not 0 <= number <= capacity:
                    raise self._damaged(
                        f"packet header is inconsistent (type {etype}, event size {esize}, "
                        f"capacity {capacity}, number {number})",
                        offset=pos,
                    )
                if pos + 28 + body > size:
                    raise self._damaged(
                        f"packet of {body} bytes runs past the end of the file (truncated)",
                        offset=pos,
                    )
                if etype == FRAME_PACKET:
                    if esize < FRAME_HEADER:
                        raise self._damaged(
                            f"frame event size is {esize}, below the {FRAME_HEADER}-byte header",
                            offset=pos,
                        )
                    yield from self._frames3(f.read(body), esize, number, overflow, pos)
                    pos += 28 + body
                    continue
                if etype != 1:
                    f.seek(body, 1)
                    pos += 28 + body
                    continue
                if esize != 8:
                    raise self._damaged(f"polarity event size is {esize}, not 8", offset=pos)
                rec = np.frombuffer(f.read(body), dtype="<u4").reshape(capacity, 2)[:number]
                valid = (rec[:, 0] & 1).astype(bool)
                data = rec[valid, 0]
                t = (np.int64(overflow) << 31) + rec[valid, 1].astype(np.int32).astype(np.int64)
                out = empty_events(data.shape[0])
                out["t"] = t
                out["x"] = (data >> 17) & 0x7FFF
                out["y"] = (data >> 2) & 0x7FFF
                out["p"] = (data >> 1) & 1
                if out.shape[0]:
                    if out["t"][0] < last_t or np.any(np.diff(out["t"]) < 0):
                        raise self._damaged("event times go backwards", offset=pos)
                    last_t = int(out["t"][-1])
                yield out
                pos += 28 + body

    def _frames3(
        self, body: bytes, esize: int, number: int, overflow: int, pos: int
    ) -> Iterator[Frame]:
        """Frames of one AEDAT 3.1 frame packet (libcaer ``caer_frame_event``, little-endian).

        Each event: u32 info (bit 0 valid, bits 1-3 colour channels), i32 start/end of frame,
        start/end of exposure (µs), i32 lengthX, lengthY, positionX, positionY, then
        lengthX * lengthY * channels u16 pixels row by row (channels interleaved), padded to the
        packet's event size. The frame time is the middle of the exposure, as libcaer's
        ``caerFrameEventGetTimestamp64``; a region-of-interest frame comes as it is stored.
        """
        for k in range(number):
            start = k * esize
            head = struct.unpack_from("<I8i", body, start)
            info, _sof, _eof, soe, eoe, length_x, length_y = head[:7]
            if not info & 1:
                continue
            channels = (info >> 1) & 0x7
            pixels = length_x * length_y * channels
            if length_x <= 0 or length_y <= 0 or channels not in (1, 3, 4):
                raise self._damaged(
                    f"frame event has an impossible shape ({length_x}x{length_y}, "
                    f"{channels} channels)",
                    offset=pos + 28 + start,
                )
            if FRAME_HEADER + 2 * pixels > esize:
                raise self._damaged(
                    f"frame of {length_x}x{length_y}x{channels} pixels does not fit its "
                    f"{esize}-byte event",
                    offset=pos + 28 + start,
                )
            image = np.frombuffer(body, dtype="<u2", count=pixels, offset=start + FRAME_HEADER)
            shape = (length_y, length_x) if channels == 1 else (length_y, length_x, channels)
            image = image.astype(np.uint16).reshape(shape)
            image.flags.writeable = False
            yield Frame((overflow << 31) + soe + (eoe - soe) // 2, image)


class ApsFrames:
    """Assembles the APS samples of a jAER DAVIS recording (AEDAT 2.0) into frames.

    APS words have bit 31 set, the ADC read cycle in bits 10-11 (0 reset read, 1 signal read;
    3 with bit 31 is an IMU sample), the 10-bit sample in bits 0-9 and x, y where DVS events
    have them (flipped the same way, so frames line up with events). A frame is complete when
    every pixel has had a reset and then a signal read (global or rolling shutter alike); its
    pixels are reset minus signal (clipped at 0, 10-bit range, uint16), its time the middle of
    the exposure: between the last reset read and the first signal read. A reset read of a pixel
    whose signal was already read starts a new readout, so a frame cut short (a recording that
    starts or ends inside a readout) is dropped, never mixed into the next.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._reset = np.zeros((height, width), np.int32)
        self._signal = np.zeros((height, width), np.int32)
        self._have_reset = np.zeros((height, width), bool)
        self._have_signal = np.zeros((height, width), bool)
        self._n_signal = 0
        self._last_reset_t = 0
        self._first_signal_t: int | None = None

    def _clear(self) -> None:
        self._have_reset[:] = False
        self._have_signal[:] = False
        self._n_signal = 0
        self._first_signal_t = None

    def feed(self, t: np.ndarray, addr: np.ndarray) -> list[Frame]:
        """Take the next (time, address) records in file order; return the frames completed."""
        aps = (addr & 0x80000000) != 0
        cycle = (addr >> 10) & 3
        aps &= cycle < 2
        x = (self.width - 1) - ((addr >> 12) & 0x3FF).astype(np.int64)
        y = (self.height - 1) - ((addr >> 22) & 0x1FF).astype(np.int64)
        aps &= (x >= 0) & (y >= 0)
        t, x, y, cycle = t[aps], x[aps], y[aps], cycle[aps]
        value = (addr[aps] & 0x3FF).astype(np.int32)
        frames: list[Frame] = []
        bounds = [0, *(np.flatnonzero(np.diff(cycle)) + 1).tolist(), t.shape[0]]
        for a, b in itertools.pairwise(bounds):
            if a == b:
                continue
            if cycle[a] == 0:
                self._resets(t[a:b], x[a:b], y[a:b], value[a:b])
            else:
                frames += self._signals(t[a:b], x[a:b], y[a:b], value[a:b])
        return frames

    def _resets(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> None:
        if self._have_signal[y, x].any():
            # a new readout begins while the last one is incomplete: its signal reads go; its
            # reset reads are all overwritten by the new readout before that one completes
            self._have_signal[:] = False
            self._n_signal = 0
            self._first_signal_t = None
        self._reset[y, x] = v
        self._have_reset[y, x] = True
        self._last_reset_t = int(t[-1])

    def _signals(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> list[Frame]:
        frames = []
        while t.shape[0]:
            need = self.width * self.height - self._n_signal
            k = min(need, t.shape[0])
            if self._first_signal_t is None:
                self._first_signal_t = int(t[0])
            self._signal[y[:k], x[:k]] = v[:k]
            self._have_signal[y[:k], x[:k]] = True
            self._n_signal = int(np.count_nonzero(self._have_signal))
            t, x, y, v = t[k:], x[k:], y[k:], v[k:]
            if self._n_signal == self.width * self.height:
                if self._have_reset.all():
                    image = np.clip(self._reset - self._signal, 0, 1023).astype(np.uint16)
                    image.flags.writeable = False
                    mid = (self._last_reset_t + self._first_signal_t) // 2
                    frames.append(Frame(mid, image))
                self._clear()
        return frames


def _read_hash_header(path: Path) -> tuple[int, list[str]]:
    """Lines starting with '#' (up to ``#!END-HEADER``) and the offset of the first data byte."""
    lines: list[str] = []
    pos = 0
    with path.open("rb") as f:
        while True:
            first = f.read(1)
            if first != b"#":
                break
            rest = f.readline()
            line = (first + rest).decode("latin-1").rstrip("\r\n")
            lines.append(line)
            pos += 1 + len(rest)
            if line.startswith("#!END-HEADER"):
                break
    return pos, lines


def _aedat2_layout(camera: str) -> Any:
    """Address decoder of a jAER chip: (addr) -> (x, y, p, is_dvs); None when unknown."""
    size = camera_size(camera)
    if size == (128, 128):

        def dvs128(a: np.ndarray) -> tuple[np.ndarray, ...]:
            return (a >> 8) & 0x7F, (a >> 1) & 0x7F, a & 1, np.ones(a.shape[0], dtype=bool)

        return dvs128
    if size in DAVIS_SIZES:
        width, height = size

        def davis(a: np.ndarray) -> tuple[np.ndarray, ...]:
            dvs = (a & 0x80000400) == 0
            x = (width - 1) - ((a >> 12) & 0x3FF).astype(np.int64)
            y = (height - 1) - ((a >> 22) & 0x1FF).astype(np.int64)
            dvs &= (x >= 0) & (y >= 0)
            return x.clip(0), y.clip(0), (a >> 11) & 1, dvs

        return davis
    return None
