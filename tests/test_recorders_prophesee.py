"""Prophesee EVT2/EVT3/DAT readers on the real samples: references, chunking, damaged copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.events import EVENT_DTYPE, concat_events, validate_events
from respike.recorders import EventFileError, open_events
from respike.recorders.prophesee import PropheseeReader, read_header

EVT3_WORD_COUNTS = 219_596


def _evt3(shared_data: Path) -> Path:
    return shared_data / "prophesee" / "evt3_sample.raw"


def _data_words(path: Path, dtype: str) -> tuple[bytes, int, np.ndarray]:
    raw = path.read_bytes()
    start = read_header(path).data_start
    return raw, start, np.frombuffer(raw[start:], dtype=dtype)


def test_evt3_matches_reference_npy(shared_data: Path) -> None:
    reader = open_events(_evt3(shared_data))
    events = reader.read_all()
    ref = np.load(shared_data / "prophesee" / "evt3_sample.npy")
    assert reader.format == "evt3"
    assert reader.sensor_size == (1280, 720)
    assert events.shape[0] == ref.shape[0] == EVT3_WORD_COUNTS
    for name in ("x", "y", "p"):
        assert np.array_equal(events[name], ref[name]), f"{name} differs from evt3_sample.npy"
    validate_events(events, what="evt3 sample")


def test_evt3_times_follow_the_time_high_words(shared_data: Path) -> None:
    """The reference npy (expelliarmus output) adds 4096 µs at every small TIME_LOW step back;
    our times differ from it only by such whole multiples, and stay inside the TIME_HIGH span
    the file itself states (2861..2863, i.e. < 3 * 4096 µs)."""
    events = open_events(_evt3(shared_data)).read_all()
    ref = np.load(shared_data / "prophesee" / "evt3_sample.npy")
    excess = ref["t"].astype(np.int64) - events["t"]
    assert np.all(excess % 4096 == 0), "t must differ from the reference by whole 4096 µs steps"
    assert np.all(np.diff(excess) >= 0), "the reference's extra time only accumulates"
    _, _, words = _data_words(_evt3(shared_data), "<u2")
    highs = words[words >> 12 == 8] & 0xFFF
    assert int(highs.min()) == 2861 and int(highs.max()) == 2863
    assert events["t"][0] >= 2861 * 4096 and events["t"][-1] < 2864 * 4096


def test_evt2_and_dat_match_expelliarmus(shared_data: Path) -> None:
    from expelliarmus import Wizard

    for encoding, path in (
        ("evt2", shared_data / "prophesee" / "evt2_sample.raw"),
        ("dat", shared_data / "tonic_samples" / "sample_ncars.dat"),
    ):
        events = open_events(path).read_all()
        ref = Wizard(encoding=encoding).read(path)
        assert events.dtype == EVENT_DTYPE
        for name in ("t", "x", "y", "p"):
            assert np.array_equal(events[name], ref[name]), f"{encoding} {name} differs"


def test_small_packets_give_the_same_events(shared_data: Path) -> None:
    for name in ("evt3_sample.raw", "evt2_sample.raw"):
        path = shared_data / "prophesee" / name
        whole = open_events(path).read_all()
        packets = list(open_events(path, packet_events=1000).packets())
        assert max(p.shape[0] for p in packets) <= 1012
        assert np.array_equal(concat_events(packets), whole)


def test_header_fields_and_sizes(shared_data: Path) -> None:
    evt2 = read_header(shared_data / "prophesee" / "evt2_sample.raw")
    assert (evt2.encoding, evt2.sensor_size) == ("evt2", (640, 480))
    dat = read_header(shared_data / "tonic_samples" / "sample_ncars.dat")
    assert dat.encoding == "dat" and dat.sensor_size is None and dat.dat_event_size == 8
    summary = open_events(shared_data / "tonic_samples" / "sample_ncars.dat").summary()
    assert summary.sensor_size_from == "events" and summary.event_count == 2009


def test_geometry_line_and_other_extension(tmp_path: Path, shared_data: Path) -> None:
    """A renamed file is still detected from its header; ``% format`` geometry wins."""
    raw, start, _ = _data_words(_evt3(shared_data), "<u2")
    copy = tmp_path / "recording.bin"
    copy.write_bytes(b"% format EVT3;height=720;width=1280\n% end\n" + raw[start:])
    reader = open_events(copy)
    assert reader.format == "evt3" and reader.sensor_size == (1280, 720)
    assert reader.summary().event_count == EVT3_WORD_COUNTS


def test_evt3_trigger_word_is_decoded_not_fatal(tmp_path: Path, shared_data: Path) -> None:
    """An EXT_TRIGGER word (code 0xA) is legal EVT3; expelliarmus rejects such files."""
    raw, start, words = _data_words(_evt3(shared_data), "<u2")
    patched = np.concatenate([words[:1000], np.array([0xA001], "<u2"), words[1000:]])
    path = tmp_path / "trigger.raw"
    path.write_bytes(raw[:start] + patched.tobytes())
    assert np.array_equal(open_events(path).read_all(), open_events(_evt3(shared_data)).read_all())


@pytest.mark.parametrize(
    ("name", "word", "position", "value", "reason"),
    [
        ("evt3_sample.raw", 2, 5000, 0xB000, "event type"),
        ("evt3_sample.raw", 2, 7001, None, "outside the sensor width"),
        ("evt2_sample.raw", 4, 9000, 0x30000000, "event type"),
    ],
)
def test_corrupted_word_names_offset_and_keeps_prefix(
    tmp_path: Path,
    shared_data: Path,
    name: str,
    word: int,
    position: int,
    value: int | None,
    reason: str,
) -> None:
    path = shared_data / "prophesee" / name
    raw, start, words = _data_words(path, "<u2" if word == 2 else "<u4")
    bad = words.copy()
    if value is None:  # an ADDR_X word with x = 2047 (> 1280): find one at or after position
        position = int(np.flatnonzero(words[position:] >> 12 == 2)[0]) + position
        bad[position] = (2 << 12) | 0x7FF
    else:
        bad[position] = value
    damaged = tmp_path / name
    damaged.write_bytes(raw[:start] + bad.tobytes())
    full = open_events(path).read_all()

    with pytest.raises(EventFileError) as info:
        list(open_events(damaged).packets())
    err = info.value
    assert err.offset == start + position * word
    assert err.path == damaged and err.format == name[:4]
    assert reason in str(err) and str(damaged) in str(err) and f"byte {err.offset}" in str(err)

    reader = open_events(damaged, strict=False)
    prefix = reader.read_all()
    assert reader.error is not None and reader.error.offset == err.offset
    assert 0 < prefix.shape[0] < full.shape[0]
    assert np.array_equal(prefix, full[: prefix.shape[0]]), "the valid prefix must be intact"


def test_truncated_raw_and_dat(tmp_path: Path, shared_data: Path) -> None:
    for path, cut in (
        (_evt3(shared_data), 300_001),
        (shared_data / "prophesee" / "evt2_sample.raw", 1_000_002),
        (shared_data / "tonic_samples" / "sample_ncars.dat", 8_003),
    ):
        full = open_events(path).read_all()
        damaged = tmp_path / path.name
        damaged.write_bytes(path.read_bytes()[:cut])
        reader = open_events(damaged, strict=False)
        prefix = reader.read_all()
        assert reader.error is not None, f"{path.name} cut at {cut} must be reported"
        assert "truncated" in reader.error.reason
        word = {"evt3": 2, "evt2": 4, "dat": 8}[reader.format]
        start = read_header(path).data_start
        assert reader.error.offset == cut - (cut - start) % word
        assert np.array_equal(prefix, full[: prefix.shape[0]]) and prefix.shape[0] > 0


def test_dat_bad_polarity(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "tonic_samples" / "sample_ncars.dat"
    raw = bytearray(path.read_bytes())
    start = read_header(path).data_start
    raw[start + 100 * 8 + 7] |= 0xF0  # polarity nibble of record 100
    damaged = tmp_path / "bad.dat"
    damaged.write_bytes(bytes(raw))
    reader = PropheseeReader(damaged, encoding="dat")
    with pytest.raises(EventFileError, match="polarity") as info:
        reader.read_all()
    assert info.value.offset == start + 100 * 8


def test_random_byte_flips_never_escape_as_other_errors(tmp_path: Path, shared_data: Path) -> None:
    """Whatever bytes are flipped, a pass ends cleanly or with EventFileError, and every packet
    it yielded keeps the packet contract."""
    rng = np.random.default_rng(7)
    for name in ("evt3_sample.raw", "evt2_sample.raw"):
        raw = (shared_data / "prophesee" / name).read_bytes()
        start = read_header(shared_data / "prophesee" / name).data_start
        for trial in range(8):
            data = bytearray(raw)
            for pos in rng.integers(start, len(raw), size=4):
                data[pos] ^= int(rng.integers(1, 256))
            path = tmp_path / f"{trial}_{name}"
            path.write_bytes(bytes(data))
            reader = open_events(path, strict=False)
            last = -1
            for packet in reader.packets():
                validate_events(packet, what=f"{name} flip trial {trial}")
                assert packet["t"][0] >= last
                last = int(packet["t"][-1])


def test_evt3_file_triggers(tmp_path: Path, shared_data: Path) -> None:
    """EXT_TRIGGER words come out of ``triggers()`` with their edge, id and the events' time."""
    raw, start, words = _data_words(_evt3(shared_data), "<u2")
    patched = np.concatenate(
        [words[:1000], np.array([0xA001], "<u2"), words[1000:5000], np.array([0xA500], "<u2")]
    )
    path = tmp_path / "trigger.raw"
    path.write_bytes(raw[:start] + patched.tobytes())
    triggers = np.concatenate(list(open_events(path).triggers()))
    assert triggers["edge"].tolist() == [1, 0] and triggers["id"].tolist() == [0, 5]
    before = open_events(path).read_all()
    assert before["t"][0] <= triggers["t"][0] <= triggers["t"][1] <= before["t"][-1]
    assert list(open_events(shared_data / "prophesee" / "evt2_sample.raw").triggers()) == []


def test_read_all_decodes_into_one_array(shared_data: Path) -> None:
    """read_all of an EVT2/EVT3 file equals its packets joined, and holds the events once:
    decoded into one array, not packets plus a joined copy (which needed twice the memory)."""
    import tracemalloc

    from respike.recorders.prophesee import BLOCK_BYTES

    for name in ("evt2_sample.raw", "evt3_sample.raw"):
        reader = open_events(shared_data / "prophesee" / name)
        events = reader.read_all()
        assert events.dtype == EVENT_DTYPE and events.flags.c_contiguous
        np.testing.assert_array_equal(events, np.concatenate(list(reader.packets())))
    reader = open_events(shared_data / "prophesee" / "evt2_sample.raw")
    tracemalloc.start()
    try:
        events = reader.read_all()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.2 * events.nbytes + BLOCK_BYTES, f"peak {peak} for {events.nbytes} bytes"


def test_read_all_grows_past_one_event_per_word(tmp_path: Path) -> None:
    """EVT3 vectors carry up to 12 events per word: the one-array decode grows to fit them,
    and keeps the valid prefix before damage."""
    words = [0x8000 | 5, 0x6000 | 7, 0x0000 | 3] + [0x3000 | 100, 0x4FFF] * 2000
    path = tmp_path / "vectors.raw"
    body = np.asarray(words, dtype="<u2").tobytes()
    header = b"% format EVT3;height=720;width=1280\n% end\n"
    path.write_bytes(header + body)
    events = open_events(path, packet_events=100).read_all()  # room for 4015 first: grows
    assert events.shape[0] == 12 * 2000, "12 events per VECT_12 word, 6 per word of the file"
    np.testing.assert_array_equal(events, np.concatenate(list(open_events(path).packets())))
    damaged = tmp_path / "damaged.raw"
    damaged.write_bytes(header + body + np.asarray([0xB000], dtype="<u2").tobytes())
    reader = open_events(damaged, strict=False, packet_events=100)
    np.testing.assert_array_equal(reader.read_all(), events)
    assert reader.error is not None and reader.error.offset == len(header) + len(body)
    with pytest.raises(EventFileError):
        open_events(damaged).read_all()
