"""Recordings: any set of topics in one MCAP file, as the exact wire bytes, and back.

Each topic is one MCAP channel (message encoding ``respike-multipart``); each message record
holds the multipart message exactly as it was received: a little-endian uint32 frame count,
one uint32 length per frame, then the frames. ``log_time`` is the receive time and
``publish_time`` the publisher's stamp, both in ns; the capture time stays inside the header.

The writer finishes a chunk and flushes the file every ``flush_interval`` seconds, so a recorder
killed with SIGKILL loses at most that much; :func:`read_recording` reads such a file (no
summary, possibly a torn last record) up to its last complete chunk.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap.writer import CompressionType, Writer

from respike.stream.messages import frame_bytes

MESSAGE_ENCODING = "respike-multipart"
SCHEMA_NAME = "respike.multipart.v1"
SCHEMA_DESCRIPTION = (
    b"ZeroMQ multipart [topic, msgpack header, *buffers]: uint32 LE frame count, uint32 LE "
    b"length per frame, then the frames (see respike.stream.messages)"
)


class RecordingError(ValueError):
    """A recording that cannot be read; names the file."""


def pack_frames(frames: Sequence[Any]) -> bytes:
    """Serialise multipart ``frames`` into one record payload (lengths, then bytes)."""
    views = [frame_bytes(frame) for frame in frames]
    head = struct.pack(f"<I{len(views)}I", len(views), *(len(v) for v in views))
    return b"".join([head, *views])


def unpack_frames(payload: bytes | memoryview) -> list[memoryview]:
    """Split a record payload back into its frames (views, no copies)."""
    data = memoryview(payload)
    if len(data) < 4:
        raise RecordingError(f"record of {len(data)} bytes has no frame count")
    (count,) = struct.unpack_from("<I", data)
    offset = 4 + 4 * count
    if len(data) < offset:
        raise RecordingError(f"record announces {count} frames but holds {len(data)} bytes")
    lengths = struct.unpack_from(f"<{count}I", data, 4)
    if offset + sum(lengths) != len(data):
        raise RecordingError(
            f"record frame lengths add to {sum(lengths)}, not {len(data) - offset}"
        )
    frames = []
    for length in lengths:
        frames.append(data[offset : offset + length])
        offset += length
    return frames


VIEW_METADATA = {"respike": "view"}
"""Metadata of the channels that hold views of the messages (Foxglove images, JSON) beside
them: readers of the recording skip them, Foxglove shows them."""


class RecordingWriter:
    """Appends multipart messages to an MCAP file, one channel per topic, and views of them
    (:meth:`write_view`) in channels of their own."""

    def __init__(self, path: Path | str, *, compression: bool = True) -> None:
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("wb")
        self._writer = Writer(
            self._file, compression=CompressionType.ZSTD if compression else CompressionType.NONE
        )
        self._writer.start(profile="respike", library="respike-stream")
        self._schema = self._writer.register_schema(SCHEMA_NAME, "text", SCHEMA_DESCRIPTION)
        self._channels: dict[str, int] = {}
        self._sequence: Counter[str] = Counter()
        self._schemas: dict[str, int] = {}
        self.count = 0
        self.views = 0

    def write(
        self, topic: str, frames: Sequence[Any], log_time_ns: int, publish_time_ns: int
    ) -> None:
        """Append one message received on ``topic``."""
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._writer.register_channel(topic, MESSAGE_ENCODING, self._schema)
            self._channels[topic] = channel
        self._writer.add_message(
            channel,
            log_time=log_time_ns,
            data=pack_frames(frames),
            publish_time=publish_time_ns,
            sequence=self._sequence[topic],
        )
        self._sequence[topic] += 1
        self.count += 1

    def write_view(
        self,
        topic: str,
        schema: tuple[str, str, bytes],
        message_encoding: str,
        data: bytes,
        log_time_ns: int,
    ) -> None:
        """Append a view of a message (``schema`` = name, encoding, data) on channel ``topic``
        (a topic of its own: ``/camera/frames`` beside ``camera/frames``)."""
        channel = self._channels.get(topic)
        if channel is None:
            name, encoding, definition = schema
            if name not in self._schemas:
                self._schemas[name] = self._writer.register_schema(name, encoding, definition)
            channel = self._writer.register_channel(
                topic, message_encoding, self._schemas[name], metadata=VIEW_METADATA
            )
            self._channels[topic] = channel
        self._writer.add_message(
            channel,
            log_time=log_time_ns,
            data=data,
            publish_time=log_time_ns,
            sequence=self._sequence[topic],
        )
        self._sequence[topic] += 1
        self.views += 1

    def flush(self) -> None:
        """Finish the chunk in progress and push it to the file (what survives a SIGKILL)."""
        self._writer.flush()

    def close(self) -> None:
        """Write the summary and footer (a complete, indexed MCAP file)."""
        self._writer.finish()
        self._file.close()


@dataclass(frozen=True)
class RecordedMessage:
    """One message of a recording: its topic, exact frames and times (ns)."""

    topic: str
    frames: list[memoryview]
    log_time_ns: int
    publish_time_ns: int


def read_recording(
    path: Path | str, topics: Sequence[str] | None = None
) -> Iterator[RecordedMessage]:
    """Yield the messages of a recording in file order, stopping cleanly at a torn tail.

    A file cut short (a recorder killed mid-write) yields every message of its complete chunks.
    """
    path = Path(path)
    wanted = set(topics) if topics else None
    with path.open("rb") as stream:
        reader = NonSeekingReader(stream)
        try:
            for _, channel, message in reader.iter_messages(log_time_order=False):
                if channel.metadata == VIEW_METADATA:
                    continue
                if channel.message_encoding != MESSAGE_ENCODING:
                    raise RecordingError(
                        f"{path}: channel {channel.topic!r} has encoding {channel.message_encoding!r}; "
                        f"expected {MESSAGE_ENCODING!r} (a respike recording)"
                    )
                if wanted is None or channel.topic in wanted:
                    yield RecordedMessage(
                        channel.topic,
                        unpack_frames(message.data),
                        message.log_time,
                        message.publish_time,
                    )
        except (McapError, EOFError, struct.error) as exc:
            if stream.tell() <= 8:
                raise RecordingError(f"{path}: not an MCAP recording ({exc})") from exc
            return


def recording_topics(path: Path | str) -> dict[str, int]:
    """Message count per topic of a recording (reads the whole file)."""
    counts: Counter[str] = Counter(message.topic for message in read_recording(path))
    return dict(counts)


def recording_summary(path: Path | str) -> dict[str, Any]:
    """What `respike info` shows of a recording: topics with counts, times, duration."""
    counts: Counter[str] = Counter()
    first = last = None
    for message in read_recording(path):
        counts[message.topic] += 1
        first = message.log_time_ns if first is None else first
        last = message.log_time_ns
    return {
        "path": str(path),
        "format": "respike-recording (MCAP)",
        "messages": sum(counts.values()),
        "topics": dict(sorted(counts.items())),
        "first_t_us": None if first is None else first // 1000,
        "last_t_us": None if last is None else last // 1000,
        "duration_us": 0 if first is None or last is None else (last - first) // 1000,
    }
