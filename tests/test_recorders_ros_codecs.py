"""ROS payload decoders against the event_camera_codecs reference checksums and hand-built data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.recorders.ros_codecs import (
    PacketDecoder,
    PayloadError,
    decode_dvs_array,
    decode_libcaer,
    decode_mono,
    decode_trigger,
)
from respike.recorders.rosbag import DVS_TYPE, event_typestore

MOD = 1 << 64

# ../shared/data/README.md: (sum t [ns], sum x, sum y, sum p) over all CD events of the bag
REFERENCE = {
    "test_data_evt3_trigger": (1222326831810000, 42078718, 31656267, 41439),
    "test_data_mono_cd": (4950000, 34450, 26450, 50),
    "test_data_libcaer_rollover": (15762826572202229126, 111651612, 82801007, 181908),
}


def _checksums(bag: Path) -> tuple[tuple[int, int, int, int], tuple[int, int, int], bool]:
    from rosbags.highlevel import AnyReader

    sums = [0, 0, 0, 0]
    trig = [0, 0, 0]
    monotonic = True
    last = -1
    decoder = None
    with AnyReader([bag], default_typestore=event_typestore(True)) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if decoder is None:
                decoder = PacketDecoder(msg.encoding, msg.width, msg.height)
            ev = decoder.decode(msg.events, msg.time_base)
            sums[0] = (sums[0] + int(ev.t_ns.astype(np.uint64).sum(dtype=np.uint64))) % MOD
            for i in (1, 2, 3):
                sums[i] += int(ev[i].sum(dtype=np.int64))
            if ev.t_ns.shape[0]:
                monotonic &= bool(np.all(np.diff(ev.t_ns) >= 0)) and int(ev.t_ns[0]) >= last
                last = int(ev.t_ns[-1])
            trig[0] += int(decoder.triggers.t_ns.sum())
            trig[1] += int(decoder.triggers.edge.sum())
            trig[2] += int(decoder.triggers.id.sum())
    return (sums[0], sums[1], sums[2], sums[3]), (trig[0], trig[1], trig[2]), monotonic


@pytest.mark.parametrize("bag", sorted(REFERENCE))
def test_bags_match_reference_checksums(shared_data: Path, bag: str) -> None:
    sums, triggers, monotonic = _checksums(shared_data / "rosbag2" / bag)
    assert sums == REFERENCE[bag], f"{bag}: (sum t, x, y, p) differ from event_camera_codecs"
    assert monotonic, f"{bag}: times must never go backwards"
    if bag == "test_data_evt3_trigger":
        assert triggers == (29096982000, 1, 0), "trigger sums (t, edge, id) differ"


def test_libcaer_rollover_inside_a_packet() -> None:
    data = [(10 << 17) | (20 << 2) | 2, (11 << 17) | (21 << 2)]
    times = [(1 << 31) - 5, 3]
    rec = np.array(list(zip(data, times, strict=True)), dtype="<u4")
    ev = decode_libcaer(rec.view(np.uint8).ravel(), 1_000_000_007)
    assert ev.t_ns.tolist() == [
        1_000_000_007 + ((1 << 31) - 5) * 1000,
        1_000_000_007 + ((1 << 31) + 3) * 1000,
    ]
    assert ev.x.tolist() == [10, 11] and ev.y.tolist() == [20, 21] and ev.p.tolist() == [1, 0]
    with pytest.raises(PayloadError, match="8-byte"):
        decode_libcaer(np.zeros(12, np.uint8), 0)


def test_mono_layout() -> None:
    v = np.array([(1 << 63) | (7 << 48) | (9 << 32) | 500, (3 << 48) | (4 << 32) | 900], "<u8")
    ev = decode_mono(v.view(np.uint8), 10_000)
    assert ev.t_ns.tolist() == [10_500, 10_900]
    assert ev.x.tolist() == [9, 4] and ev.y.tolist() == [7, 3] and ev.p.tolist() == [1, 0]


def test_evt3_damage_names_payload_offset() -> None:
    words = np.array([0x8001, 0x6002, 0x0003, 0x2004, 0xB000], dtype="<u2")
    decoder = PacketDecoder("evt3", 640, 480)
    with pytest.raises(PayloadError) as info:
        decoder.decode(words.view(np.uint8), 0)
    assert info.value.offset == 8 and "event type" in info.value.reason
    with pytest.raises(PayloadError, match="not supported"):
        PacketDecoder("evt4")


@pytest.mark.parametrize("ros2", [True, False])
def test_dvs_array_bytes_equal_rosbags(ros2: bool, rng: np.random.Generator) -> None:
    store = event_typestore(ros2)
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Event = store.types["dvs_msgs/msg/Event"]
    Array = store.types[DVS_TYPE]
    for n in (0, 1, 2, 7):
        events = [
            Event(
                x=int(rng.integers(0, 346)),
                y=int(rng.integers(0, 260)),
                ts=Time(sec=100 + i, nanosec=int(rng.integers(0, 10**9))),
                polarity=bool(rng.integers(0, 2)),
            )
            for i in range(n)
        ]
        head = {"stamp": Time(sec=5, nanosec=6), "frame_id": "cam" * (n + 1)}
        if not ros2:
            head["seq"] = 3
        msg = Array(header=Header(**head), height=260, width=346, events=events)
        raw = store.serialize_cdr(msg, DVS_TYPE) if ros2 else store.serialize_ros1(msg, DVS_TYPE)
        arr = decode_dvs_array(raw, cdr=ros2)
        assert (arr.width, arr.height) == (346, 260)
        assert arr.events.x.tolist() == [e.x for e in events]
        assert arr.events.y.tolist() == [e.y for e in events]
        assert arr.events.p.tolist() == [int(e.polarity) for e in events]
        assert arr.events.t_ns.tolist() == [e.ts.sec * 10**9 + e.ts.nanosec for e in events]
    with pytest.raises(PayloadError):
        decode_dvs_array(raw[:-4], cdr=ros2)


# libcaer_cmp words after event_camera_codecs libcaer_cmp_types.h: code in bits 12-15
TIME_HIGH, TIME_LOW, ADDR_X, ADDR_Y, VECT_BASE_Y, VECT_8 = range(6)


def _word(code: int, value: int) -> int:
    return (code << 12) | value


def encode_libcaer_cmp(events: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Encode (t µs since time_base, x, y, p) events, sorted by (t, x, p, y), as a packet.

    Written from the word layout, not from the decoder: a time word when a time part changes
    (both start at 0), ADDR_X when x changes, then per 8-row block of y either one ADDR_Y (a
    lone event) or VECT_BASE_Y + VECT_8 (two or more events of one time, x and polarity).
    """
    words: list[int] = []
    high = low = 0
    x_now = -1
    i = 0
    while i < len(events):
        t, x, y, p = events[i]
        block = [e for e in events[i : i + 8] if (e[0], e[1], e[3], e[2] // 8) == (t, x, p, y // 8)]
        if t >> 12 != high:
            high = t >> 12
            words.append(_word(TIME_HIGH, high))
        if t & 0xFFF != low:
            low = t & 0xFFF
            words.append(_word(TIME_LOW, low))
        if x != x_now:
            x_now = x
            words.append(_word(ADDR_X, x))
        if len(block) == 1:
            words.append(_word(ADDR_Y, (p << 11) | y))
        else:
            mask = sum(1 << (e[2] % 8) for e in block)
            words += [_word(VECT_BASE_Y, (p << 11) | (y // 8 * 8)), _word(VECT_8, mask)]
        i += len(block)
    return np.array(words, dtype="<u2").view(np.uint8)


def _random_events(rng: np.random.Generator, n: int, span_us: int) -> list[tuple[int, ...]]:
    t = np.sort(rng.integers(0, span_us, n))
    t[: n // 4] = t[0]  # a burst at one time: vectors of neighbouring rows
    events = {
        (int(a), int(b), int(c), int(d))
        for a, b, c, d in zip(
            t, rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n), strict=True
        )
    }
    burst = {(int(t[0]), 17, y, 1) for y in range(40, 60)}
    return sorted(events | burst, key=lambda e: (e[0], e[1], e[3], e[2]))


def test_libcaer_cmp_round_trip(rng: np.random.Generator) -> None:
    decoder = PacketDecoder("libcaer_cmp", 346, 260)
    time_base = 1_700_000_000_123_456_789
    for span in (3000, 5_000_000):  # inside one TIME_HIGH step, then across many
        events = _random_events(rng, 2000, span)
        payload = encode_libcaer_cmp(events)
        assert (payload.view("<u2") >> 12 == VECT_8).any(), "the test must exercise VECT_8"
        ev = decoder.decode(payload, time_base)
        got = list(zip(ev.t_ns.tolist(), ev.x.tolist(), ev.y.tolist(), ev.p.tolist(), strict=True))
        want = [(time_base + t * 1000, x, y, p) for t, x, y, p in events]
        assert got == want, "decoded events differ from the encoded ones"
        assert decoder.triggers.t_ns.shape[0] == 0


def test_libcaer_cmp_state_rules() -> None:
    decoder = PacketDecoder("libcaer_cmp", 64, 64)
    first = [_word(TIME_HIGH, 1), _word(TIME_LOW, 2), _word(ADDR_X, 9), _word(ADDR_Y, 3)]
    ev = decoder.decode(np.array(first, "<u2").view(np.uint8), 1000)
    assert ev.t_ns.tolist() == [1000 + (4096 + 2) * 1000]
    # next packet: times restart at 0, x is kept, a VECT_8 moves the base by 8 rows
    second = [_word(VECT_BASE_Y, (1 << 11) | 8), _word(VECT_8, 0b11), _word(VECT_8, 0b1)]
    ev = decoder.decode(np.array(second, "<u2").view(np.uint8), 5000)
    assert ev.t_ns.tolist() == [5000] * 3
    assert ev.x.tolist() == [9, 9, 9] and ev.y.tolist() == [8, 9, 16] and ev.p.tolist() == [1] * 3


@pytest.mark.parametrize(
    ("words", "offset", "reason"),
    [
        ([_word(ADDR_X, 5), _word(ADDR_Y, 1), _word(7, 0), _word(ADDR_Y, 2)], 4, "event type"),
        ([_word(ADDR_X, 70), _word(ADDR_Y, 1)], 2, "x outside"),
        ([_word(VECT_BASE_Y, 56), _word(VECT_8, 0x81)], 2, "y outside"),
        ([_word(TIME_LOW, 9), _word(ADDR_Y, 1), _word(TIME_LOW, 8), _word(ADDR_Y, 2)], 6, "back"),
    ],
)
def test_libcaer_cmp_damage_names_encoding_and_offset(
    words: list[int], offset: int, reason: str
) -> None:
    with pytest.raises(PayloadError) as info:
        PacketDecoder("libcaer_cmp", 64, 60).decode(np.array(words, "<u2").view(np.uint8), 0)
    assert info.value.offset == offset and reason in info.value.reason
    assert info.value.reason.startswith("libcaer_cmp")
    payload = np.array([_word(ADDR_X, 1), _word(ADDR_Y, 2)], "<u2").view(np.uint8)
    with pytest.raises(PayloadError, match="libcaer_cmp payload has an odd") as cut:
        PacketDecoder("libcaer_cmp").decode(payload[:3], 0)
    assert cut.value.offset == 2


def encode_trigger(t_ns: list[int], edge: list[int], ident: list[int]) -> np.ndarray:
    """trigger packet words from trigger_decoder.h: bits 0-31 ns offset, 48-62 id, 63 edge."""
    words = [(e << 63) | (i << 48) | t for t, e, i in zip(t_ns, edge, ident, strict=True)]
    return np.array(words, dtype="<u8").view(np.uint8)


def test_trigger_packets() -> None:
    payload = encode_trigger([0, 1500, (1 << 32) - 1], [1, 0, 1], [0, 3, 200])
    decoder = PacketDecoder("trigger")
    ev = decoder.decode(payload, 10**18)
    assert ev.t_ns.shape[0] == 0, "trigger packets carry no CD events"
    found = decoder.triggers
    assert found.t_ns.tolist() == [10**18, 10**18 + 1500, 10**18 + (1 << 32) - 1]
    assert found.edge.tolist() == [1, 0, 1] and found.id.tolist() == [0, 3, 200]
    with pytest.raises(PayloadError, match="trigger payload") as info:
        decode_trigger(payload[:20], 0)
    assert info.value.offset == 16


def _events_with_gaps(rng: np.random.Generator, n: int, side: int = 2048) -> np.ndarray:
    from respike.events.types import make_events

    steps = rng.choice(
        [0, 1, 37, 4096, 9_000_000, 40_000_000], n, p=[0.5, 0.3, 0.15, 0.03, 0.01, 0.01]
    )
    t = 3_000_000 + np.cumsum(steps)
    return make_events(t, rng.integers(0, side, n), rng.integers(0, side, n), rng.integers(0, 2, n))


def _decoded(decoder: PacketDecoder, payload: np.ndarray) -> np.ndarray:
    from respike.events.types import make_events

    out = decoder.decode(payload, 0)
    return make_events(out.t_ns // 1000, out.x, out.y, out.p)


def test_evt3_encoder_round_trips_across_wraps_pauses_and_packets(
    rng: np.random.Generator,
) -> None:
    """Times span 2**24 µs wraps and pauses of 9 and 40 s (past half the TIME_HIGH range);
    one decoder over all packets gets every event back, times from the first wrap it saw."""
    from respike.recorders.ros_codecs import Evt3Encoder

    events = _events_with_gaps(rng, 20_000)
    assert events["t"][-1] - events["t"][0] > 3 * (1 << 24)
    encoder, decoder = Evt3Encoder(), PacketDecoder("evt3", 2048, 2048)
    packets = np.array_split(events, np.sort(rng.integers(0, len(events), 30)))
    decoded = np.concatenate([_decoded(decoder, encoder.encode(p)) for p in packets])
    wraps = (events["t"][0] >> 24) << 24
    assert np.array_equal(decoded["t"], events["t"] - wraps)
    for name in ("x", "y", "p"):
        assert np.array_equal(decoded[name], events[name]), name


def test_each_evt3_packet_decodes_on_its_own(rng: np.random.Generator) -> None:
    """A subscriber that joins late, or loses packets, decodes each packet it gets."""
    from respike.recorders.ros_codecs import Evt3Encoder

    events = _events_with_gaps(rng, 5_000, side=640)
    encoder = Evt3Encoder()
    for packet in np.array_split(events, 10):
        decoded = _decoded(PacketDecoder("evt3", 640, 640), encoder.encode(packet))
        assert np.array_equal(decoded["t"], packet["t"] - ((packet["t"][0] >> 24) << 24))
        assert np.array_equal(decoded["x"], packet["x"])


def test_evt3_encoder_vectorises_rows_and_checks_its_input() -> None:
    from respike.events.types import make_events
    from respike.recorders.ros_codecs import Evt3Encoder

    x, y = np.tile(np.arange(0, 640, 2), 480), np.repeat(np.arange(480), 320)
    row_events = make_events(np.full(x.size, 70_000), x, y, np.ones(x.size))
    payload = Evt3Encoder().encode(row_events)
    assert payload.size < 0.5 * x.size, "rows of events at one time travel as VECT_12 words"
    decoded = _decoded(PacketDecoder("evt3", 640, 480), payload)
    assert np.array_equal(decoded["x"], x) and np.array_equal(decoded["y"], y)
    shuffled = row_events[::-1].copy()
    shuffled["t"] = np.arange(shuffled.size)[::-1]
    assert np.array_equal(
        _decoded(PacketDecoder("evt3"), Evt3Encoder().encode(shuffled))["t"],
        np.arange(shuffled.size),
    )
    with pytest.raises(ValueError, match="event x up to 2048; evt3 addresses are below 2048"):
        Evt3Encoder().encode(make_events([0], [2048], [0], [1]))
    with pytest.raises(ValueError, match="event times from -5 µs; evt3 needs times >= 0"):
        Evt3Encoder().encode(make_events([-5], [0], [0], [1]))


def test_real_evt3_recording_re_encodes_to_the_same_events(shared_data: Path) -> None:
    from respike.recorders import open_events
    from respike.recorders.ros_codecs import Evt3Encoder

    events = open_events(shared_data / "prophesee" / "evt3_sample.raw").read_all()
    decoded = _decoded(PacketDecoder("evt3", 1280, 720), Evt3Encoder().encode(events))
    for name in ("t", "x", "y", "p"):
        assert np.array_equal(decoded[name], events[name]), name
