"""AEDAT 4 on the real sample; AEDAT 2.0 and 3.1 on files built here, checked against tonic."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tonic

from respike.events import validate_events
from respike.recorders import EventFileError, open_events

AEDAT4_EVENTS = 111_954


def _aedat4(shared_data: Path) -> Path:
    return shared_data / "tonic_samples" / "sample.aedat4"


def test_aedat4_sample_count_and_tonic(shared_data: Path) -> None:
    reader = open_events(_aedat4(shared_data))
    events = reader.read_all()
    assert reader.format == "aedat4" and reader.sensor_size == (320, 240)
    assert events.shape[0] == AEDAT4_EVENTS
    assert not reader.has_frames and list(reader.frames()) == []
    validate_events(events, what="aedat4 sample")
    ref = tonic.io.read_aedat4(str(_aedat4(shared_data)))
    for name, ref_name in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(events[name], ref[ref_name]), f"{name} differs from tonic"


def _packet_offsets(raw: bytes) -> list[int]:
    (header_len,) = struct.unpack_from("<I", raw, 14)
    pos = 18 + header_len
    offsets = []
    while pos + 8 <= len(raw):
        offsets.append(pos)
        pos += 8 + struct.unpack_from("<iI", raw, pos)[1]
    return offsets


def test_aedat4_damaged_packet_names_its_offset(tmp_path: Path, shared_data: Path) -> None:
    raw = _aedat4(shared_data).read_bytes()
    offsets = _packet_offsets(raw)
    full = open_events(_aedat4(shared_data)).read_all()
    data = bytearray(raw)
    data[offsets[20] + 20] ^= 0xFF
    damaged = tmp_path / "flip.aedat4"
    damaged.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="packet cannot be decoded") as info:
        open_events(damaged).read_all()
    assert info.value.offset == offsets[20]
    reader = open_events(damaged, strict=False)
    prefix = reader.read_all()
    assert 0 < prefix.shape[0] < full.shape[0]
    assert np.array_equal(prefix, full[: prefix.shape[0]])


def test_aedat4_truncated(tmp_path: Path, shared_data: Path) -> None:
    raw = _aedat4(shared_data).read_bytes()
    damaged = tmp_path / "cut.aedat4"
    damaged.write_bytes(raw[: len(raw) // 2])
    reader = open_events(damaged, strict=False)
    prefix = reader.read_all()
    assert reader.error is not None and reader.error.offset in _packet_offsets(raw)
    full = open_events(_aedat4(shared_data)).read_all()
    assert np.array_equal(prefix, full[: prefix.shape[0]]) and prefix.shape[0] > 10_000


def _davis_addr(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int) -> np.ndarray:
    return (((height - 1 - y) << 22) | ((width - 1 - x) << 12) | (p << 11)).astype(">u4")


def test_aedat2_davis346_equals_tonic(tmp_path: Path, rng: np.random.Generator) -> None:
    n = 5000
    x = rng.integers(0, 346, n)
    y = rng.integers(0, 260, n)
    p = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 2_000_000, n))
    pairs = np.empty((n, 2), dtype=">u4")
    pairs[:, 0] = _davis_addr(x, y, p, 346, 260)
    pairs[:, 1] = t
    path = tmp_path / "davis.aedat"
    header = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n"
    path.write_bytes(header + pairs.tobytes())
    reader = open_events(path, packet_events=999)
    events = reader.read_all()
    assert reader.format == "aedat2" and reader.sensor_size == (346, 260)
    _, _, ref = tonic.io.read_davis_346(str(path))
    for name in ("t", "x", "y", "p"):
        assert np.array_equal(events[name], ref[name]), f"{name} differs from tonic"


def test_aedat2_skips_aps_and_reports_damage(tmp_path: Path) -> None:
    addr = np.array([(1 << 31) | 5, 0x1000, 0x400, 0x2000, 0x3000], dtype=">u4")
    times = np.array([1, 2, 3, 4, 1], dtype=">u4")
    pairs = np.stack([addr, times], axis=1).astype(">u4")
    path = tmp_path / "mixed.aedat"
    header = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n"
    path.write_bytes(header + pairs.tobytes())
    reader = open_events(path, strict=False)
    events = reader.read_all()
    assert events["t"].tolist() == [2, 4], "APS (bit 31) and special (bit 10) words are skipped"
    assert events["x"].tolist() == [238, 237] and events["y"].tolist() == [179, 179]
    assert reader.error is not None and reader.error.offset == len(header) + 4 * 8


def _aedat31(packets: list[tuple[int, np.ndarray]], overflow: int = 0) -> bytes:
    body = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS240C\r\n#!END-HEADER\r\n"
    for etype, rec in packets:
        n = rec.shape[0]
        size = rec.dtype.itemsize * (rec.shape[1] if rec.ndim > 1 else 1)
        body += struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, n, n, n) + rec.tobytes()
    return body


def test_aedat31_polarity_equals_tonic(tmp_path: Path, rng: np.random.Generator) -> None:
    n = 3000
    x = rng.integers(0, 240, n)
    y = rng.integers(0, 180, n)
    p = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 1_000_000, n))
    rec = np.empty((n, 2), dtype="<u4")
    rec[:, 0] = (x << 17) | (y << 2) | (p << 1) | 1
    rec[:, 1] = t
    path = tmp_path / "cAER.aedat"
    path.write_bytes(_aedat31([(1, rec[:1000]), (1, rec[1000:])]))
    reader = open_events(path)
    events = reader.read_all()
    assert reader.format == "aedat3" and reader.sensor_size == (240, 180)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    ref = tonic.io.get_aer_events_from_file(str(path), version, start)
    addr = ref["address"]
    assert np.array_equal(events["t"], ref["timeStamp"])
    assert np.array_equal(events["x"], (addr >> 17) & 0x7FFF)
    assert np.array_equal(events["y"], (addr >> 2) & 0x7FFF)
    assert np.array_equal(events["p"], (addr >> 1) & 1)


def test_aedat31_skips_other_packets_invalid_events_and_reports_truncation(tmp_path: Path) -> None:
    pol = np.array([[(3 << 17) | (4 << 2) | 1, 10], [(5 << 17) | 2, 11], [7 << 17 | 3, 12]], "<u4")
    imu = np.zeros((2, 9), dtype="<u4")
    data = _aedat31([(3, imu), (1, pol)], overflow=1)
    path = tmp_path / "mixed.aedat"
    path.write_bytes(data)
    events = open_events(path).read_all()
    assert events["t"].tolist() == [(1 << 31) + 10, (1 << 31) + 12], "invalid event dropped"
    assert events["x"].tolist() == [3, 7] and events["p"].tolist() == [0, 1]
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(data[:-5])
    with pytest.raises(EventFileError, match="truncated") as info:
        open_events(cut).read_all()
    assert info.value.offset == len(data) - 28 - pol.nbytes


def _frame_event(
    pixels: np.ndarray, soe: int, eoe: int, esize: int, *, valid: bool = True
) -> bytes:
    """One libcaer caer_frame_event: info, SOF, EOF, SOE, EOE, lengthX/Y, positionX/Y, pixels."""
    ly, lx = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    info = (channels << 1) | int(valid)
    head = struct.pack("<I8i", info, soe - 10, eoe + 10, soe, eoe, lx, ly, 0, 0)
    raw = head + pixels.astype("<u2").tobytes()
    return raw + bytes(esize - len(raw))


def _packet(etype: int, esize: int, events: list[bytes], overflow: int = 0) -> bytes:
    n = len(events)
    return struct.pack("<hhiiiiii", etype, 1, esize, 4, overflow, n, n, n) + b"".join(events)


def test_aedat31_frames(tmp_path: Path, rng: np.random.Generator) -> None:
    gray = rng.integers(0, 1 << 16, (6, 8), dtype=np.uint16)
    rgb = rng.integers(0, 1 << 16, (3, 4, 3), dtype=np.uint16)
    esize = 36 + 2 * 6 * 8
    frames = _packet(
        2,
        esize,
        [
            _frame_event(gray, 100, 300, esize),
            _frame_event(gray, 400, 500, esize, valid=False),
            _frame_event(rgb, 700, 801, esize),
        ],
        overflow=1,
    )
    pol = np.array([[(3 << 17) | (4 << 2) | 3, 50], [(5 << 17) | (1 << 2) | 1, 900]], "<u4")
    header = _aedat31([])
    data = header + _packet(1, 8, [pol[:1].tobytes()], 1) + frames
    data += _packet(1, 8, [pol[1:].tobytes()], 1)
    path = tmp_path / "frames.aedat"
    path.write_bytes(data)
    reader = open_events(path)
    assert reader.has_frames
    kinds = [type(item).__name__ for item in reader.stream()]
    assert kinds == ["ndarray", "Frame", "Frame", "ndarray"], "file order is kept"
    got = list(reader.frames())
    assert [f.t for f in got] == [(1 << 31) + 200, (1 << 31) + 750], "middle of the exposure"
    assert np.array_equal(got[0].image, gray) and got[0].image.dtype == np.uint16
    assert np.array_equal(got[1].image, rgb) and not got[1].image.flags.writeable
    assert reader.read_all()["t"].tolist() == [(1 << 31) + 50, (1 << 31) + 900]
    frame_at = len(header) + 28 + 8
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(data[: frame_at + 28 + esize + 20])
    damaged = open_events(cut, strict=False)
    assert [type(i).__name__ for i in damaged.stream()] == ["ndarray"], "valid prefix kept"
    assert damaged.error is not None and "truncated" in str(damaged.error)
    assert damaged.error.offset == frame_at and "aedat3" in str(damaged.error)
    bad = bytearray(data)
    struct.pack_into("<i", bad, frame_at + 28 + esize * 2 + 20, 50)  # third frame: lengthX 50
    wrong = tmp_path / "wrong.aedat"
    wrong.write_bytes(bytes(bad))
    with pytest.raises(EventFileError, match="does not fit") as info:
        list(open_events(wrong).frames())
    assert info.value.offset == frame_at + 28 + esize * 2


def _aps_words(
    image_reset: np.ndarray, image_signal: np.ndarray, cycle: int, width: int, height: int
) -> np.ndarray:
    """jAER DAVIS APS words for every pixel (row by row) of one read cycle."""
    ys, xs = np.mgrid[0:height, 0:width]
    values = image_reset if cycle == 0 else image_signal
    return (
        (1 << 31)
        | ((height - 1 - ys.ravel()) << 22)
        | ((width - 1 - xs.ravel()) << 12)
        | (cycle << 10)
        | values.ravel()
    ).astype(np.int64)


def test_aedat2_davis_aps_frames(tmp_path: Path, rng: np.random.Generator) -> None:
    width, height = 240, 180
    n_pix = width * height
    words: list[np.ndarray] = []
    times: list[np.ndarray] = []
    expected = []
    t = 1000
    # a readout cut short at the start: signal reads of the last rows only (dropped)
    reset0 = rng.integers(500, 1024, (height, width))
    signal0 = rng.integers(0, 600, (height, width))
    tail = _aps_words(reset0, signal0, 1, width, height)[-500:]
    words.append(tail)
    times.append(np.full(tail.shape[0], t))
    for k in range(2):
        reset = rng.integers(500, 1024, (height, width))
        signal = rng.integers(0, 600, (height, width))
        words += [_aps_words(reset, signal, 0, width, height)]
        times += [np.full(n_pix, t + 10)]
        dvs = _davis_addr(np.array([5 + k]), np.array([7]), np.array([1]), width, height)
        words += [dvs.astype(np.int64)]
        times += [np.array([t + 50])]
        words += [_aps_words(reset, signal, 1, width, height)]
        times += [np.full(n_pix, t + 90)]
        expected.append((t + 50, np.clip(reset - signal, 0, 1023)))
        t += 1000
    cut = _aps_words(reset0, signal0, 0, width, height)[:1000]  # a readout cut at the end
    words.append(cut)
    times.append(np.full(cut.shape[0], t))
    pairs = np.stack([np.concatenate(words), np.concatenate(times)], axis=1).astype(">u4")
    path = tmp_path / "davis_aps.aedat"
    header = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n"
    path.write_bytes(header + pairs.tobytes())
    reader = open_events(path, packet_events=5000)
    assert reader.has_frames
    frames = list(reader.frames())
    assert [f.t for f in frames] == [e[0] for e in expected], "middle of the exposure"
    for frame, (_, image) in zip(frames, expected, strict=True):
        assert frame.image.shape == (height, width) and np.array_equal(frame.image, image)
    events = reader.read_all()
    assert events["x"].tolist() == [5, 6] and events["y"].tolist() == [7, 7]
    assert not open_events(tmp_path / "davis_aps.aedat").summary().error
    dvs128 = tmp_path / "dvs128.aedat"
    dvs128.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n")
    assert not open_events(dvs128).has_frames
