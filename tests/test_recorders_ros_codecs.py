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
        PacketDecoder("libcaer_cmp")


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
