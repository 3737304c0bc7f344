"""Bag reader: the real ROS 2 bags, MCAP storage, ROS 1 dvs_msgs, frames, topics, damage."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from respike.events import concat_events, validate_events
from respike.recorders import EventFileError, open_events
from respike.recorders.rosbag import DVS_TYPE, IMAGE_TYPE, event_typestore

TOPIC = "/event_camera/events"


def _bag(shared_data: Path, name: str) -> Path:
    return shared_data / "rosbag2" / name


def test_real_bags_open_by_folder_or_file(shared_data: Path) -> None:
    folder = _bag(shared_data, "test_data_libcaer_rollover")
    for path in (folder, folder / "libcaer_rollover_0.db3"):
        reader = open_events(path)
        assert reader.format == "rosbag2" and reader.sensor_size == (640, 480)
        summary = reader.summary()
        assert summary.event_count == 334_331
        assert summary.topics == {TOPIC: ("event_camera_msgs/msg/EventPacket", 201)}
    packets = list(open_events(folder).packets())
    assert len(packets) == 201, "one packet per message"
    events = concat_events(packets)
    validate_events(events, what="libcaer bag")
    assert int(events["x"].sum()) == 111_651_612 and int(events["p"].sum()) == 181_908
    assert events["t"][0] == 1_702_309_120_762_236, "µs since the epoch, floored from ns"


def test_evt3_bag_in_us(shared_data: Path) -> None:
    reader = open_events(_bag(shared_data, "test_data_evt3_trigger"))
    events = reader.read_all()
    assert reader.sensor_size == (1280, 720)
    assert int(events["t"].sum()) * 1000 == 1_222_326_831_810_000, "evt3 ns are whole µs"
    assert int(events["y"].sum()) == 31_656_267
    windows = list(reader.windows(10_000))
    assert all(w.end - w.start == 10_000 for w in windows)
    assert sum(w.events.shape[0] for w in windows) == events.shape[0]
    assert all(
        w.events.shape[0] == 0 or (w.events["t"][0] >= w.start and w.events["t"][-1] < w.end)
        for w in windows
    )


def _copy_bag(src: Path, dst: Path, storage: str) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = event_typestore(True)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with (
        AnyReader([src], default_typestore=store) as reader,
        Writer(dst, version=8, storage_plugin=plugin) as writer,
    ):
        conns = {}
        for conn, stamp, raw in reader.messages():
            if conn.topic not in conns:
                conns[conn.topic] = writer.add_connection(conn.topic, conn.msgtype, typestore=store)
            writer.write(conns[conn.topic], stamp, raw)


def test_mcap_storage_and_lone_mcap_read_like_sqlite(tmp_path: Path, shared_data: Path) -> None:
    src = _bag(shared_data, "test_data_evt3_trigger")
    dst = tmp_path / "evt3_mcap"
    _copy_bag(src, dst, "mcap")
    mcap_files = list(dst.glob("*.mcap"))
    assert mcap_files, "the copy must use MCAP storage"
    lone = tmp_path / "lone.mcap"
    shutil.copy(mcap_files[0], lone)
    expected = open_events(src).read_all()
    for path in (dst, mcap_files[0], lone):
        assert np.array_equal(open_events(path).read_all(), expected), path
    summary = open_events(lone).summary()
    assert summary.topics == {TOPIC: ("event_camera_msgs/msg/EventPacket", 105)}
    assert summary.sensor_size == (1280, 720)
    torn = tmp_path / "torn.mcap"  # one big chunk cut in half: nothing complete to read
    torn.write_bytes(lone.read_bytes()[: lone.stat().st_size // 2])
    with pytest.raises(EventFileError, match="before its first complete chunk"):
        open_events(torn)


def test_killed_recording_mcap_keeps_complete_chunks(tmp_path: Path, shared_data: Path) -> None:
    """An MCAP written in small chunks and cut mid-file (a recorder killed with SIGKILL) reads
    up to its last complete chunk, then reports the truncation."""
    from mcap.writer import Writer as McapWriter
    from rosbags.highlevel import AnyReader

    from respike.recorders.rosbag import PACKET_MSG

    src = _bag(shared_data, "test_data_evt3_trigger")
    path = tmp_path / "chunks.mcap"
    with path.open("wb") as f, AnyReader([src], default_typestore=event_typestore(True)) as bag:
        writer = McapWriter(f, chunk_size=64 * 1024)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(
            name="event_camera_msgs/msg/EventPacket", encoding="ros2msg", data=PACKET_MSG.encode()
        )
        channel = writer.register_channel(topic=TOPIC, message_encoding="cdr", schema_id=schema)
        for _, stamp, raw in bag.messages():
            writer.add_message(channel, log_time=stamp, data=raw, publish_time=stamp)
        writer.finish()
    expected = open_events(src).read_all()
    assert np.array_equal(open_events(path).read_all(), expected)
    cut = tmp_path / "killed.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reader = open_events(cut, strict=False)
    prefix = reader.read_all()
    assert reader.error is not None and "truncated" in str(reader.error)
    assert 0 < prefix.shape[0] < expected.shape[0]
    assert np.array_equal(prefix, expected[: prefix.shape[0]])


def _write_dvs_bag(path: Path, ros2: bool, rng: np.random.Generator) -> dict[str, Any]:
    store = event_typestore(ros2)
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Event = store.types["dvs_msgs/msg/Event"]
    Array = store.types[DVS_TYPE]
    Image = store.types[IMAGE_TYPE]
    expected: dict[str, Any] = {"t": [], "x": [], "y": [], "p": [], "frames": []}

    def header(sec: int, nsec: int) -> Any:
        fields = {"stamp": Time(sec=sec, nanosec=nsec), "frame_id": "dvs"}
        return Header(seq=0, **fields) if not ros2 else Header(**fields)

    def serialize(msg: Any, typ: str) -> bytes:
        return store.serialize_cdr(msg, typ) if ros2 else store.serialize_ros1(msg, typ)

    if ros2:
        from rosbags.rosbag2 import Writer as Writer2

        writer: Any = Writer2(path, version=8)
    else:
        from rosbags.rosbag1 import Writer as Writer1

        writer = Writer1(path)
    with writer:
        ev_conn = writer.add_connection("/dvs/events", DVS_TYPE, typestore=store)
        img_conn = writer.add_connection("/dvs/image_raw", IMAGE_TYPE, typestore=store)
        other = writer.add_connection("/other/events", DVS_TYPE, typestore=store)
        for k in range(4):
            n = int(rng.integers(1, 50))
            xs = rng.integers(0, 240, n)
            ys = rng.integers(0, 180, n)
            ps = rng.integers(0, 2, n)
            ts = np.sort(rng.integers(0, 10**9, n)) + (10 + k) * 10**9
            events = [
                Event(
                    x=int(x),
                    y=int(y),
                    ts=Time(sec=int(t // 10**9), nanosec=int(t % 10**9)),
                    polarity=bool(p),
                )
                for x, y, t, p in zip(xs, ys, ts, ps, strict=True)
            ]
            msg = Array(header=header(10 + k, 0), height=180, width=240, events=events)
            stamp = int((10 + k) * 10**9)
            writer.write(ev_conn, stamp, serialize(msg, DVS_TYPE))
            writer.write(other, stamp, serialize(msg, DVS_TYPE))
            expected["t"] += (ts // 1000).tolist()
            expected["x"] += xs.tolist()
            expected["y"] += ys.tolist()
            expected["p"] += ps.tolist()
            pixels = rng.integers(0, 256, (180, 240), dtype=np.uint8)
            image = Image(
                header=header(10 + k, 500_000),
                height=180,
                width=240,
                encoding="mono8",
                is_bigendian=0,
                step=240,
                data=pixels.ravel(),
            )
            writer.write(img_conn, stamp + 500_000, serialize(image, IMAGE_TYPE))
            expected["frames"].append(((10 + k) * 10**6 + 500, pixels))
    return expected


@pytest.mark.parametrize("ros2", [False, True])
def test_dvs_msgs_bag_with_frames(tmp_path: Path, ros2: bool, rng: np.random.Generator) -> None:
    path = tmp_path / ("dvs_ros2" if ros2 else "dvs.bag")
    expected = _write_dvs_bag(path, ros2, rng)
    reader = open_events(path, topic="/dvs/events")
    assert reader.format == ("rosbag2" if ros2 else "rosbag1")
    assert reader.sensor_size == (240, 180) and reader.has_frames
    events = reader.read_all()
    for name in ("t", "x", "y", "p"):
        assert events[name].tolist() == expected[name], f"{name} differs from what was written"
    frames = list(reader.frames())
    assert [f.t for f in frames] == [t for t, _ in expected["frames"]]
    assert all(
        np.array_equal(f.image, img) for f, (_, img) in zip(frames, expected["frames"], strict=True)
    )
    in_windows = [f.t for w in reader.windows(100_000) for f in w.frames]
    assert in_windows == [t for t, _ in expected["frames"]], "frames ride along in the windows"
    kinds = [type(item).__name__ for item in reader.stream()]
    assert kinds.count("Frame") == 4 and len(kinds) == 8
    assert set(reader.summary().topics) == {"/dvs/events", "/dvs/image_raw", "/other/events"}
    with pytest.raises(EventFileError, match="event topics: /dvs/events, /other/events"):
        open_events(path, topic="/nope")
    assert open_events(path).topic == "/dvs/events", "default: the first event topic by name"


def test_damaged_message_names_message_and_offset(tmp_path: Path, shared_data: Path) -> None:
    src = _bag(shared_data, "test_data_evt3_trigger")
    dst = tmp_path / "bag"
    shutil.copytree(src, dst)
    db = next(dst.glob("*.db3"))
    db.chmod(0o644)
    full = [p.shape[0] for p in open_events(src).packets()]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, data FROM messages ORDER BY timestamp").fetchall()
    target_id, raw = rows[10]
    store = event_typestore(True)
    payload = bytes(store.deserialize_cdr(raw, "event_camera_msgs/msg/EventPacket").events)
    start = raw.rfind(payload)
    data = bytearray(raw)
    data[start + 2 * 100 + 1] = 0xB0  # word 100 of the payload gets event type 11
    con.execute("UPDATE messages SET data = ? WHERE id = ?", (bytes(data), target_id))
    con.commit()
    con.close()
    with pytest.raises(EventFileError) as info:
        open_events(dst).read_all()
    err = info.value
    assert (
        err.offset == 200 and err.where == f"message 10 on {TOPIC}" and "event type" in err.reason
    )
    reader = open_events(dst, strict=False)
    prefix = reader.read_all()
    assert prefix.shape[0] == sum(full[:10]), "messages before the damaged one are kept whole"
    assert reader.summary().error is not None


def test_truncated_database_is_reported(tmp_path: Path, shared_data: Path) -> None:
    src = _bag(shared_data, "test_data_libcaer_rollover")
    dst = tmp_path / "bag"
    shutil.copytree(src, dst)
    db = next(dst.glob("*.db3"))
    db.chmod(0o644)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    with pytest.raises(EventFileError) as info:
        open_events(dst).read_all()
    assert str(dst) in str(info.value) and "rosbag2" in str(info.value)


def test_evt3_bag_triggers_match_reference(shared_data: Path) -> None:
    """README: trigger events of test_data_evt3_trigger sum to t 29096982000 ns, edge 1, id 0."""
    from respike.recorders import TRIGGER_DTYPE

    reader = open_events(_bag(shared_data, "test_data_evt3_trigger"))
    found = list(reader.triggers())
    assert found and all(a.dtype == TRIGGER_DTYPE and not a.flags.writeable for a in found)
    triggers = np.concatenate(found)
    assert int(triggers["t"].sum()) * 1000 == 29_096_982_000, "trigger times differ"
    assert int(triggers["edge"].sum()) == 1 and int(triggers["id"].sum()) == 0
    assert np.all(np.diff(triggers["t"]) >= 0)
    events = reader.read_all()
    assert events["t"][0] <= triggers["t"][0] <= events["t"][-1], "triggers share the event clock"
    assert list(open_events(_bag(shared_data, "test_data_mono_cd")).triggers()) == []


def _write_packet_bag(path: Path, packets: dict[str, list[tuple[str, int, np.ndarray]]]) -> None:
    """A ROS 2 bag with EventPacket topics: topic -> [(encoding, time_base, payload)]."""
    from rosbags.rosbag2 import Writer

    store = event_typestore(True)
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Packet = store.types["event_camera_msgs/msg/EventPacket"]
    kind = "event_camera_msgs/msg/EventPacket"
    with Writer(path, version=8) as writer:
        for topic, messages in packets.items():
            conn = writer.add_connection(topic, kind, typestore=store)
            for seq, (encoding, time_base, payload) in enumerate(messages):
                head = Header(stamp=Time(sec=time_base // 10**9, nanosec=0), frame_id="cam")
                msg = Packet(
                    header=head,
                    height=260,
                    width=346,
                    seq=seq,
                    time_base=time_base,
                    encoding=encoding,
                    is_bigendian=False,
                    events=payload,
                )
                writer.write(conn, time_base, store.serialize_cdr(msg, kind))


def test_libcaer_cmp_and_trigger_topics(tmp_path: Path, rng: np.random.Generator) -> None:
    from test_recorders_ros_codecs import _random_events, encode_libcaer_cmp, encode_trigger

    bases = [1_700_000_000_000_000_000 + k * 10_000_000_000 for k in range(3)]
    chunks = [_random_events(rng, 500, 2_000_000) for _ in bases]
    damaged = encode_libcaer_cmp(chunks[2]).copy()
    damaged[41] = 0x70  # word 20 gets code 7
    path = tmp_path / "davis"
    _write_packet_bag(
        path,
        {
            "/dvs/events": [
                *(
                    ("libcaer_cmp", b, encode_libcaer_cmp(c))
                    for b, c in zip(bases, chunks, strict=True)
                ),
                ("libcaer_cmp", bases[2] + 5_000_000_000, damaged),
            ],
            "/dvs/triggers": [
                ("trigger", b, encode_trigger([10, 2000], [1, 0], [2, 2])) for b in bases
            ],
        },
    )
    reader = open_events(path, topic="/dvs/events", strict=False)
    events = reader.read_all()
    want = [
        (b // 1000 + t, x, y, p) for b, c in zip(bases, chunks, strict=True) for t, x, y, p in c
    ]
    got = list(zip(*(events[k].tolist() for k in ("t", "x", "y", "p")), strict=True))
    assert got == want and reader.sensor_size == (346, 260)
    assert reader.error is not None and reader.error.offset == 40
    assert "libcaer_cmp" in str(reader.error) and "message 3 on /dvs/events" in str(reader.error)
    triggers = np.concatenate(list(open_events(path, topic="/dvs/triggers").triggers()))
    assert triggers["t"].tolist() == [b // 1000 + d for b in bases for d in (0, 2)]
    assert triggers["edge"].tolist() == [1, 0] * 3 and set(triggers["id"].tolist()) == {2}
    assert open_events(path, topic="/dvs/triggers").read_all().shape[0] == 0


# rosbag2's ros2idl schema of EventPacket as rosidl writes it (docs/message_definition_encoding.md):
# every definition after a separator and an "IDL: <type>" line, with the #include lines and
# @verbatim comment annotations rosidl_adapter generates.
_SEP = "=" * 80 + "\n"
EVENT_PACKET_IDL = (
    _SEP
    + """IDL: event_camera_msgs/msg/EventPacket
// generated from rosidl_adapter/resource/msg.idl.em
// with input from event_camera_msgs/msg/EventPacket.msg
// generated code does not contain a copyright notice

#include "std_msgs/msg/Header.idl"

module event_camera_msgs {
  module msg {
    struct EventPacket {
      std_msgs::msg::Header header;

      uint32 height;

      uint32 width;

      @verbatim (language="comment", text=
        "packet sequence number")
      uint64 seq;

      uint64 time_base;

      string encoding;

      boolean is_bigendian;

      sequence<uint8> events;
    };
  };
};
"""
    + _SEP
    + """IDL: std_msgs/msg/Header
// generated from rosidl_adapter/resource/msg.idl.em
// with input from std_msgs/msg/Header.msg
// generated code does not contain a copyright notice

#include "builtin_interfaces/msg/Time.idl"

module std_msgs {
  module msg {
    @verbatim (language="comment", text=
      "Standard metadata for higher-level stamped data types.")
    struct Header {
      builtin_interfaces::msg::Time stamp;

      string frame_id;
    };
  };
};
"""
    + _SEP
    + """IDL: builtin_interfaces/msg/Time
// generated from rosidl_adapter/resource/msg.idl.em
// with input from builtin_interfaces/msg/Time.msg
// generated code does not contain a copyright notice


module builtin_interfaces {
  module msg {
    struct Time {
      int32 sec;

      uint32 nanosec;
    };
  };
};
"""
)
PACKET_TYPE = "event_camera_msgs/msg/EventPacket"


def _write_mcap(path: Path, src: Path, schema_encoding: str, schema_text: str) -> None:
    """A lone MCAP file holding the CDR messages of the bag ``src`` under the given schema."""
    from mcap.writer import Writer as McapWriter
    from rosbags.highlevel import AnyReader

    with path.open("wb") as f, AnyReader([src], default_typestore=event_typestore(True)) as bag:
        writer = McapWriter(f)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(
            name=PACKET_TYPE, encoding=schema_encoding, data=schema_text.encode()
        )
        channel = writer.register_channel(topic=TOPIC, message_encoding="cdr", schema_id=schema)
        for _, stamp, raw in bag.messages():
            writer.add_message(channel, log_time=stamp, data=raw, publish_time=stamp)
        writer.finish()


def test_ros2idl_schemas_read_like_the_db3_bag(tmp_path: Path, shared_data: Path) -> None:
    """A lone MCAP and a bag folder whose EventPacket schema is ros2idl (rosbag2 writes these)
    decode to the events of the db3 bag, whose sums are the README's reference."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    src = _bag(shared_data, "test_data_evt3_trigger")
    expected = open_events(src).read_all()
    assert int(expected["t"].sum()) * 1000 == 1_222_326_831_810_000
    assert int(expected["x"].sum()) == 42_078_718 and int(expected["p"].sum()) == 41_439
    lone = tmp_path / "idl.mcap"
    _write_mcap(lone, src, "ros2idl", EVENT_PACKET_IDL)
    folder = tmp_path / "idl_bag"
    with (
        AnyReader([src], default_typestore=event_typestore(True)) as bag,
        Writer(folder, version=8, storage_plugin=StoragePlugin.MCAP) as writer,
    ):
        conn = writer.add_connection(
            TOPIC, PACKET_TYPE, msgdef=EVENT_PACKET_IDL, rihs01="RIHS01_" + "0" * 64
        )
        for _, stamp, raw in bag.messages():
            writer.write(conn, stamp, raw)
    for path in (lone, folder):
        reader = open_events(path)
        assert reader.summary().topics == {TOPIC: (PACKET_TYPE, 105)}, path
        assert reader.sensor_size == (1280, 720), path
        assert np.array_equal(reader.read_all(), expected), path


@pytest.mark.parametrize(
    ("encoding", "text", "why"),
    [
        ("ros2idl", "module event_camera_msgs { struct broken", "cannot be parsed"),
        ("protobuf", "syntax = 'proto3';", "cannot be read"),
    ],
)
def test_unreadable_schema_is_an_error_naming_topic_and_encoding(
    tmp_path: Path, shared_data: Path, encoding: str, text: str, why: str
) -> None:
    path = tmp_path / "bad.mcap"
    _write_mcap(path, _bag(shared_data, "test_data_evt3_trigger"), encoding, text)
    with pytest.raises(EventFileError) as info:
        open_events(path).read_all()
    message = str(info.value)
    assert TOPIC in message and repr(encoding) in message and why in message, message
    assert "\n" not in message, "one line"


def _write_ros1_bag(
    path: Path, rng: np.random.Generator, compression: str | None
) -> list[tuple[bytes, list[tuple[int, int, int, int]]]]:
    """A ROS 1 bag of 40 dvs_msgs/EventArray messages in many small chunks (rosbags'
    writer); returns each message's serialised bytes and its events (t µs, x, y, p)."""
    from rosbags.rosbag1 import Writer as Writer1

    store = event_typestore(False)
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Event = store.types["dvs_msgs/msg/Event"]
    Array = store.types[DVS_TYPE]
    written = []
    writer = Writer1(path)
    if compression is not None:
        writer.set_compression(getattr(Writer1.CompressionFormat, compression))
    writer.chunk_threshold = 3000  # a chunk every few messages
    with writer:
        conn = writer.add_connection("/dvs/events", DVS_TYPE, typestore=store)
        for k in range(40):
            n = int(rng.integers(5, 60))
            ts = np.sort(rng.integers(0, 10**8, n)) + (k + 1) * 10**8
            xs, ys, ps = rng.integers(0, 240, n), rng.integers(0, 180, n), rng.integers(0, 2, n)
            events = [
                Event(
                    x=int(x),
                    y=int(y),
                    ts=Time(sec=int(t // 10**9), nanosec=int(t % 10**9)),
                    polarity=bool(p),
                )
                for x, y, t, p in zip(xs, ys, ts, ps, strict=True)
            ]
            stamp = Time(sec=int(ts[0] // 10**9), nanosec=int(ts[0] % 10**9))
            msg = Array(
                header=Header(seq=k, stamp=stamp, frame_id="dvs"),
                height=180,
                width=240,
                events=events,
            )
            raw = bytes(store.serialize_ros1(msg, DVS_TYPE))
            writer.write(conn, int(ts[0]), raw)
            rows = list(
                zip((ts // 1000).tolist(), xs.tolist(), ys.tolist(), ps.tolist(), strict=True)
            )
            written.append((raw, rows))
    return written


@pytest.mark.parametrize("compression", [None, "BZ2"])
def test_cut_ros1_bag_keeps_every_intact_message(
    tmp_path: Path, rng: np.random.Generator, compression: str | None
) -> None:
    """A ROS 1 bag cut anywhere (its index, at the end, is then lost) gives every message that
    lies whole before the cut (for a compressed chunk: every whole chunk), then an error naming
    the byte offset where reading stopped."""
    path = tmp_path / "dvs.bag"
    written = _write_ros1_bag(path, rng, compression)
    data = path.read_bytes()
    everything = [row for _, rows in written for row in rows]
    whole_messages = np.cumsum([0] + [len(rows) for _, rows in written]).tolist()
    assert len(open_events(path).read_all()) == len(everything), "the intact bag reads whole"
    if compression is None:
        ends = [data.find(raw) + len(raw) for raw, _ in written]
        cuts = [len(data) - 1, ends[-1] + 5, (ends[20] + ends[21]) // 2, ends[7] - 1, ends[7]]
    else:
        cuts = [len(data) - 1, len(data) // 2, len(data) // 3]
    for cut in cuts:
        damaged = tmp_path / f"cut{cut}.bag"
        damaged.write_bytes(data[:cut])
        reader = open_events(damaged, strict=False)
        assert reader.topic == "/dvs/events"
        events = reader.read_all()
        got = list(zip(*(events[k].tolist() for k in ("t", "x", "y", "p")), strict=True))
        assert got == everything[: len(got)], f"cut at {cut}: the prefix differs"
        assert len(got) in whole_messages, f"cut at {cut}: messages are kept whole"
        if compression is None:
            before = sum(
                len(rows) for (_, rows), end in zip(written, ends, strict=True) if end <= cut
            )
            assert len(got) == before, f"cut at {cut}: every message before the cut is kept"
        elif cut == len(data) - 1:
            assert len(got) == len(everything), "a cut in the index loses no message"
        else:
            assert 0 < len(got) < len(everything), f"cut at {cut}: the whole chunks before it"
        err = reader.error
        assert err is not None and err.offset is not None, f"cut at {cut}: no offset"
        assert 0 < err.offset <= cut and f"at byte {err.offset}" in str(err), str(err)
        with pytest.raises(EventFileError, match=f"at byte {err.offset}"):
            list(open_events(damaged).packets())
