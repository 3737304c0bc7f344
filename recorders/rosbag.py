"""ROS bags (ROS 2 sqlite3 / MCAP storage, ROS 1): event topics as packets, image topics as frames.

Bags are read with ``rosbags``; event message types are registered from their ``.msg``
definitions (../shared/data/README.md) so bags without embedded definitions still deserialise,
and the definitions a ROS 2 bag embeds (``ros2msg`` or ``ros2idl``) take their place when present.
One packet per message, decoded by :mod:`respike.recorders.ros_codecs`; times in µs (the
nanosecond times of the codecs floored). The event clock depends on the encoding: evt3 packets
carry sensor time, libcaer, libcaer_cmp, mono, trigger and dvs_msgs carry ROS (epoch) time;
frames carry their header stamp. Trigger events (evt3 EXT_TRIGGER words, ``trigger`` packets)
come from ``reader.triggers()``. A ROS 1 bag whose index is cut off or damaged is read record by
record instead (:mod:`respike.recorders.rosbag1`): every whole message, then the error.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from respike.events import empty_events
from respike.events.images import IMAGE_ENCODINGS, image_pixels
from respike.events.types import EventArray
from respike.recorders.base import EventReader, Frame, ReadOptions, TriggerArray, trigger_array
from respike.recorders.ros_codecs import (
    DecodedEvents,
    PacketDecoder,
    PayloadError,
    Triggers,
    decode_dvs_array,
)
from respike.recorders.rosbag1 import BagDamage, Ros1Scan

PACKET_TYPES = ("event_camera_msgs/msg/EventPacket", "event_array_msgs/msg/EventArray")
DVS_TYPE = "dvs_msgs/msg/EventArray"
IMAGE_TYPE = "sensor_msgs/msg/Image"
MCAP_MAGIC = b"\x89MCAP0\r\n"
#: the line before each definition in a concatenated ros2msg/ros2idl schema (rosbag2's encoding)
SCHEMA_SEPARATOR = "=" * 80 + "\n"
#: schema encodings whose CDR messages can be deserialised
SCHEMA_ENCODINGS = ("ros2msg", "ros2idl")

PACKET_MSG = """std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
"""
DVS_EVENT_MSG = "uint16 x\nuint16 y\ntime ts\nbool polarity\n"
DVS_ARRAY_MSG = "std_msgs/Header header\nuint32 height\nuint32 width\ndvs_msgs/Event[] events\n"


def event_typestore(ros2: bool) -> Any:
    """A small rosbags typestore: the event-camera messages, images and what they use.

    Small on purpose: ``AnyReader`` re-registers every type of its default store on each open,
    which for a full ROS distribution store costs about 0.1 s per open.
    """
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.EMPTY)
    store.register(_event_types(ros2))
    return store


@functools.cache
def _event_types(ros2: bool) -> dict[str, Any]:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    full = get_typestore(Stores.ROS2_HUMBLE if ros2 else Stores.ROS1_NOETIC)
    types: dict[str, Any] = {name: full.fielddefs[name] for name in _BASE_TYPES}
    for name in PACKET_TYPES:
        types.update(get_types_from_msg(PACKET_MSG, name))
    types.update(get_types_from_msg(DVS_EVENT_MSG, "dvs_msgs/msg/Event"))
    types.update(get_types_from_msg(DVS_ARRAY_MSG, DVS_TYPE))
    return types


def schema_types(encoding: str, name: str, text: str) -> dict[str, Any]:
    """The message types an embedded ROS 2 definition declares (rosbags parse trees).

    ``ros2msg``: the top-level ``.msg`` first, dependencies after ``MSG: <type>`` lines;
    ``ros2idl``: every definition after an ``IDL: <type>`` line (rosbag2's
    docs/message_definition_encoding.md). IDL preprocessor lines (``#include``, which rosidl
    writes and rosbags' IDL parser rejects) are dropped: the included types come as their own
    sections. Raises ValueError with a one-line reason when the text cannot be parsed.
    """
    from rosbags.typesys import TypesysError, get_types_from_idl, get_types_from_msg

    if encoding not in SCHEMA_ENCODINGS:
        raise ValueError(
            f"schema encoding {encoding!r} cannot be read (readable: {', '.join(SCHEMA_ENCODINGS)})"
        )
    types: dict[str, Any] = {}
    try:
        if encoding == "ros2msg":
            types.update(get_types_from_msg(text, name))
        else:
            sections = text.split(SCHEMA_SEPARATOR) if SCHEMA_SEPARATOR in text else [text]
            for section in sections:
                head, _, body = section.partition("\n")
                if not head.startswith("IDL: "):
                    body = section
                body = re.sub(r"(?m)^[ \t]*#.*$", "", body)
                if body.strip():
                    types.update(get_types_from_idl(body))
    except TypesysError as exc:
        raise ValueError(
            f"{encoding} schema of {name} cannot be parsed ({_parse_failure(exc)})"
        ) from None
    if name not in types:
        raise ValueError(f"{encoding} schema named {name} does not define that type")
    return types


def _parse_failure(exc: Exception) -> str:
    """rosbags' multi-line parse error ("Could not parse:", the whole text, the position, the
    text there, what was expected) as a short phrase naming where it stopped."""
    lines = str(exc).splitlines()
    if len(lines) >= 4 and lines[0].startswith("Could not parse") and lines[2].isdigit():
        near = lines[3].strip()[:40]
        return f"stopped at {near!r}" if near else "the definition ends too early"
    return lines[0] if lines else type(exc).__name__


@functools.lru_cache(maxsize=16)
def _typestore(embedded: tuple[tuple[str, str, str], ...]) -> Any:
    """A ROS 2 typestore: the event types of :func:`event_typestore` overridden by the
    definitions a bag embeds ((encoding, type, text) triples, already checked by
    :func:`schema_types`); cached, since each register generates and compiles code."""
    from rosbags.typesys import Stores, get_typestore

    types = dict(_event_types(True))
    for encoding, name, text in embedded:
        types.update(schema_types(encoding, name, text))
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store


def _readable(encoding: str, name: str, text: str) -> str | None:
    """None when the schema parses, else the one-line reason."""
    try:
        schema_types(encoding, name, text)
    except ValueError as exc:
        return str(exc)
    return None


_BASE_TYPES = ("builtin_interfaces/msg/Time", "std_msgs/msg/Header", IMAGE_TYPE)


class RosBagReader(EventReader):
    """One event topic of a ROS 1 or ROS 2 bag (``topic`` option; default: the first by name).

    ``path`` may be the bag folder (ROS 2, with metadata.yaml), a file inside it, a lone ROS 2
    ``.mcap`` file, or a ROS 1 ``.bag`` file. Frames come from the ``sensor_msgs/Image`` topic
    that shares the longest name prefix with the event topic.
    """

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        super().__init__(path, options)
        self._bag = self._bag_path(self._path)
        self._ros2 = self._bag.suffix != ".bag"
        self.format_name = "rosbag2" if self._ros2 else "rosbag1"
        self._size_seen = False
        self._scan: Ros1Scan | None = None
        reader = self._open()
        try:
            conns = list(reader.connections)
            self._all_topics = {c.topic: (c.msgtype, int(c.msgcount)) for c in conns}
            event_topics = sorted(
                {c.topic for c in conns if c.msgtype in (*PACKET_TYPES, DVS_TYPE)}
            )
            self._refuse_unreadable(getattr(reader, "unreadable", {}), event_topics)
            if self._options.topic is not None:
                if self._options.topic not in event_topics:
                    raise self._damaged(
                        f"topic {self._options.topic!r} has no event messages; event topics: "
                        f"{', '.join(event_topics) or 'none'}"
                    )
                self._topic: str | None = self._options.topic
            else:
                self._topic = event_topics[0] if event_topics else None
            self._image_topic = _closest(
                self._topic or "", sorted({c.topic for c in conns if c.msgtype == IMAGE_TYPE})
            )
        finally:
            reader.close()

    def _refuse_unreadable(
        self, unreadable: dict[str, Unreadable], event_topics: list[str]
    ) -> None:
        """Raise, naming the topic and its schema encoding, when a channel that holds (or may
        hold) the events asked for has a schema that cannot be read: better than 0 events.

        That is: the topic asked for, any channel whose type is an event message, or, when no
        event topic was found at all, every unreadable channel (its type is then unknown).
        """
        wanted = self._options.topic
        bad = [
            u
            for u in unreadable.values()
            if u.topic == wanted
            or u.msgtype in (*PACKET_TYPES, DVS_TYPE)
            or (not event_topics and wanted is None)
        ]
        if bad:
            raise self._damaged(
                "; ".join(
                    f"topic {u.topic} (schema encoding {u.encoding!r}): {u.reason}" for u in bad
                )
            )

    def _lookup_sensor_size(self) -> tuple[int, int] | None:
        """(width, height) of the first event message (EventPacket/EventArray carry them)."""
        if self._topic is None:
            return None
        reader = self._open()
        try:
            return self._first_size(reader)
        finally:
            reader.close()

    @property
    def topic(self) -> str | None:
        """The event topic read (None when the bag has none)."""
        return self._topic

    @property
    def image_topic(self) -> str | None:
        """The image topic frames come from (None when the bag has none)."""
        return self._image_topic

    @property
    def has_frames(self) -> bool:
        return self._image_topic is not None

    def _topics(self) -> dict[str, tuple[str, int]]:
        return dict(self._all_topics)

    @staticmethod
    def _bag_path(path: Path) -> Path:
        if path.is_dir() or path.suffix == ".bag":
            return path
        if (path.parent / "metadata.yaml").exists():
            return path.parent
        return path

    def _open(self) -> Any:
        from rosbags.highlevel import AnyReader

        try:
            if self._ros2 and not self._bag.is_dir():
                if self._bag.suffix != ".mcap":
                    raise ValueError("a sqlite3 bag needs the metadata.yaml of its folder")
                return McapBag(self._bag)
            if self._ros2:
                return Ros2Folder(self._bag)
            if self._scan is not None:
                return self._scan
            reader = AnyReader([self._bag], default_typestore=event_typestore(self._ros2))
            reader.open()
        except Exception as exc:
            if self._ros2:
                raise self._damaged(f"bag cannot be opened ({exc})") from None
            return self._scan_ros1(str(exc))
        return reader

    def _scan_ros1(self, why: str) -> Ros1Scan:
        """A ROS 1 bag whose index rosbags cannot use (cut, killed, damaged): read it record
        by record from the start (kept for later passes), or say where it breaks."""
        try:
            self._scan = Ros1Scan(self._bag, why, event_typestore(False))
        except BagDamage as exc:
            raise self._damaged(exc.reason, offset=exc.offset) from None
        except OSError as exc:
            raise self._damaged(f"bag cannot be opened ({why}; {exc})") from None
        return self._scan

    def _first_size(self, reader: Any) -> tuple[int, int] | None:
        """Width and height of the first event message (EventPacket/EventArray carry them)."""
        if self._topic is None:
            return None
        conns = [c for c in reader.connections if c.topic == self._topic]
        try:
            for conn, _, raw in reader.messages(connections=conns):
                if conn.msgtype == DVS_TYPE:
                    arr = decode_dvs_array(raw, cdr=self._ros2)
                    width, height = arr.width, arr.height
                else:
                    msg = reader.deserialize(raw, conn.msgtype)
                    width, height = int(msg.width), int(msg.height)
                return (width, height) if width and height else None
        except Exception as exc:
            raise self._damaged(f"first message on {self._topic} cannot be read ({exc})") from None
        return None

    def _learn_size(self, width: int, height: int) -> None:
        """Keep the first message's geometry, so no extra bag open is needed for it later."""
        if not self._size_seen and width and height:
            self._sensor_size = (width, height)
            self._size_seen = True

    def _items(self) -> Iterator[EventArray | Frame]:
        if self._topic is None:
            return
        reader = self._open()
        try:
            yield from self._messages(reader)
        finally:
            reader.close()

    def _trigger_items(self) -> Iterator[TriggerArray]:
        if self._topic is None:
            return
        reader = self._open()
        try:
            yield from self._messages(reader, triggers=True)
        finally:
            reader.close()

    def _messages(self, reader: Any, *, triggers: bool = False) -> Iterator[Any]:
        """Event packets and frames, or with ``triggers`` the trigger events of each message
        (µs, same clock as the events), in bag order."""
        topics = {self._topic} if triggers else {self._topic, self._image_topic}
        conns = [c for c in reader.connections if c.topic in topics]
        decoders: dict[str, PacketDecoder] = {}
        last_t = np.iinfo(np.int64).min
        index = 0
        messages = reader.messages(connections=conns)
        while True:
            where = f"message {index} on {self._topic}"
            found: Triggers | None = None
            try:
                item = next(messages, None)
                if item is None:
                    return
                conn, _stamp, raw = item
                if conn.topic == self._image_topic:
                    frame = _frame(reader.deserialize(raw, conn.msgtype))
                    if frame is not None:
                        yield frame
                    continue
                if conn.msgtype == DVS_TYPE:
                    array = decode_dvs_array(raw, cdr=self._ros2)
                    decoded = array.events
                    self._learn_size(array.width, array.height)
                else:
                    msg = reader.deserialize(raw, conn.msgtype)
                    self._learn_size(int(msg.width), int(msg.height))
                    decoder = decoders.get(msg.encoding)
                    if decoder is None:
                        decoder = PacketDecoder(msg.encoding, int(msg.width), int(msg.height))
                        decoders[msg.encoding] = decoder
                    decoded = decoder.decode(np.asarray(msg.events), int(msg.time_base))
                    found = decoder.triggers
            except PayloadError as exc:
                raise self._damaged(exc.reason, offset=exc.offset, where=where) from None
            except BagDamage as exc:
                after = f"after {index} whole messages on {self._topic}"
                raise self._damaged(exc.reason, offset=exc.offset, where=after) from None
            except Exception as exc:
                raise self._damaged(f"message cannot be read ({exc})", where=where) from None
            index += 1
            if triggers:
                if found is not None and found.t_ns.shape[0]:
                    yield trigger_array(found.t_ns // 1000, found.edge, found.id)
                continue
            packet = _packet(decoded)
            if packet.shape[0]:
                if packet["t"][0] < last_t or np.any(np.diff(packet["t"]) < 0):
                    raise self._damaged("event times go backwards", where=where)
                last_t = int(packet["t"][-1])
            yield packet


class BagConnection(NamedTuple):
    """The part of a rosbags connection the reader uses."""

    topic: str
    msgtype: str
    msgcount: int


class Unreadable(NamedTuple):
    """A channel whose schema cannot be read: its topic, type name, schema encoding, why."""

    topic: str
    msgtype: str
    encoding: str
    reason: str


class Ros2Folder:
    """A ROS 2 bag folder (metadata.yaml beside sqlite3 or MCAP files), read with rosbags.

    Offers the subset of rosbags' ``AnyReader`` the bag reader uses (``connections``,
    ``messages``, ``deserialize``, ``close``), but parses the definitions the bag embeds with
    :func:`schema_types`, which reads the ``ros2idl`` definitions rosbag2 writes (``AnyReader``
    rejects their ``#include`` lines). Connections without a definition use the event types of
    :func:`event_typestore`; those whose definition cannot be parsed are left out of
    ``connections`` and listed in ``unreadable``.
    """

    def __init__(self, path: Path) -> None:
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.rosbag2 import Reader

        self._reader = Reader(path)
        self._reader.open()
        self.unreadable: dict[str, Unreadable] = {}
        good: dict[tuple[str, str, str], None] = {}
        for conn in self._reader.connections:
            if conn.msgdef.format == MessageDefinitionFormat.NONE:
                continue
            encoding = "ros2msg" if conn.msgdef.format == MessageDefinitionFormat.MSG else "ros2idl"
            key = (encoding, conn.msgtype, conn.msgdef.data)
            why = _readable(*key)
            if why is None:
                good[key] = None
            else:
                self.unreadable[conn.topic] = Unreadable(conn.topic, conn.msgtype, encoding, why)
        self._store = _typestore(tuple(good))
        self.connections = [c for c in self._reader.connections if c.topic not in self.unreadable]

    def messages(self, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, receive time in ns, CDR bytes) of ``connections``, in time order."""
        if not connections:
            return iter(())
        return iter(self._reader.messages(connections=connections))

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self._store.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        self._reader.close()


class McapBag:
    """A ROS 2 MCAP file on its own (no metadata.yaml beside it), read with the mcap package.

    Offers the subset of rosbags' ``AnyReader`` the bag reader uses (``connections``,
    ``messages``, ``deserialize``, ``close``). CDR channels with a ``ros2msg`` or ``ros2idl``
    schema are read with the types that schema defines; other channels are left out of
    ``connections`` and listed in ``unreadable`` with the reason. A file without a summary
    section (a recorder that was killed) is scanned once for its channels and then read in
    file order up to its torn end, which the pass reports.
    """

    def __init__(self, path: Path) -> None:
        from mcap.reader import NonSeekingReader, make_reader

        self._path = path
        counts: dict[str, int] = {}
        types: dict[str, str] = {}
        self.unreadable: dict[str, Unreadable] = {}
        good: dict[tuple[str, str, str], None] = {}
        checked: dict[tuple[int, str], str | None] = {}

        def add(schema: Any, channel: Any, count: int) -> None:
            key = (channel.schema_id, channel.message_encoding)
            if key not in checked:
                checked[key] = self._check(schema, channel, good)
            if checked[key] is None:
                types[channel.topic] = str(schema.name)
                counts[channel.topic] = counts.get(channel.topic, 0) + count
            else:
                self.unreadable[channel.topic] = Unreadable(
                    channel.topic,
                    str(schema.name) if schema is not None else "",
                    str(schema.encoding) if schema is not None else "",
                    checked[key] or "",
                )

        with path.open("rb") as f:
            try:
                summary = make_reader(f).get_summary()
            except Exception:
                summary = None
            self.indexed = summary is not None and summary.statistics is not None
            if summary is not None and summary.statistics is not None:
                stats = summary.statistics.channel_message_counts
                for cid, channel in summary.channels.items():
                    add(summary.schemas.get(channel.schema_id), channel, stats.get(cid, 0))
            else:
                f.seek(0)
                scan = NonSeekingReader(f).iter_messages(log_time_order=False)
                try:
                    for schema, channel, _ in scan:
                        add(schema, channel, 1)
                except Exception:
                    if not types and not self.unreadable:
                        raise ValueError(
                            "MCAP file is truncated before its first complete chunk"
                        ) from None
                    # a torn tail: the channels before it are known, the pass reports the tear
        self._store = _typestore(tuple(good))
        self.connections = [BagConnection(t, types[t], counts[t]) for t in sorted(types)]

    @staticmethod
    def _check(schema: Any, channel: Any, good: dict[tuple[str, str, str], None]) -> str | None:
        """None when the channel can be deserialised (its schema joins ``good``), else why not."""
        if schema is None:
            return "the channel has no schema"
        if channel.message_encoding != "cdr":
            return f"messages are {channel.message_encoding!r}, not ROS 2 CDR"
        text = bytes(schema.data).decode("utf-8", errors="replace")
        key = (str(schema.encoding), str(schema.name), text)
        why = _readable(*key)
        if why is None:
            good[key] = None
        return why

    def messages(self, connections: list[BagConnection]) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, log time in ns, CDR bytes): in log-time order when the file has its
        summary, in file order (the order it was written) when it does not."""
        from mcap.reader import NonSeekingReader, make_reader

        by_topic = {c.topic: c for c in connections}
        with self._path.open("rb") as f:
            reader = make_reader(f) if self.indexed else NonSeekingReader(f)
            items = iter(reader.iter_messages(topics=list(by_topic), log_time_order=self.indexed))
            while True:
                try:
                    _, channel, message = next(items)
                except StopIteration:
                    break
                except Exception as exc:
                    raise ValueError(
                        f"the file ends inside an MCAP record (truncated) at byte {f.tell()}; "
                        f"the messages up to its last complete chunk were read ({exc!r})"
                    ) from None
                yield by_topic[channel.topic], message.log_time, message.data
            f.seek(-len(MCAP_MAGIC), 2)
            if f.read() != MCAP_MAGIC:
                raise ValueError(
                    "the file ends without its MCAP footer (truncated); the messages up to its "
                    "last complete chunk were read"
                )

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self._store.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing stays open between calls (each ``messages`` pass opens the file)."""


def _packet(decoded: DecodedEvents) -> EventArray:
    out = empty_events(decoded.t_ns.shape[0])
    out["t"] = decoded.t_ns // 1000
    out["x"] = decoded.x
    out["y"] = decoded.y
    out["p"] = decoded.p
    return out


def _frame(msg: Any) -> Frame | None:
    """A Frame from a sensor_msgs/Image, or None for an encoding respike does not read."""
    if str(msg.encoding) not in IMAGE_ENCODINGS:
        return None
    image = image_pixels(
        np.asarray(msg.data),
        int(msg.width),
        int(msg.height),
        str(msg.encoding),
        int(msg.step),
        bool(msg.is_bigendian),
    )
    image.flags.writeable = False
    stamp = msg.header.stamp
    return Frame(int(stamp.sec) * 1_000_000 + int(stamp.nanosec) // 1000, image)


def _closest(topic: str, candidates: list[str]) -> str | None:
    """The candidate sharing the longest prefix with ``topic`` (first by name on ties)."""
    if not candidates:
        return None

    def shared(name: str) -> int:
        n = 0
        for a, b in zip(topic, name, strict=False):
            if a != b:
                break
            n += 1
        return n

    return max(candidates, key=lambda c: (shared(c), -candidates.index(c)))
