"""`recorder` and `replay`: any set of topics to one MCAP file, and back with the original timing."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from respike.nodes.base import Node, Pacer, param, register
from respike.recorders.recording import RecordedMessage, RecordingWriter, read_recording
from respike.stream.messages import Message, now_us

log = logging.getLogger(__name__)

REPLAY_PORTS = ("frames", "events", "residual", "keyframes", "features", "predictions", "ticks")
"""Ports a replay can republish: a recorded topic ``node/port`` comes out as ``replay/port``."""


@register("recorder")
class RecorderNode(Node):
    """Writes every message of its inputs (any names) to one MCAP file, exact bytes and times.

    Beside them go Foxglove views (``views``): frames, residuals and event packets as
    ``foxglove.CompressedImage`` or ``RawImage``, predictions as JSON, on ``/NODE/PORT``, the
    topics and schemas the ``foxglove`` node serves live; replay skips them. The file is flushed every ``flush_interval`` seconds, so a SIGKILL loses at most that much
    and leaves a readable file; a clean stop writes the index and summary.
    """

    @dataclass(frozen=True)
    class Params:
        path: str = param("recording.mcap", "MCAP file to write (overwritten)")
        flush_interval: float = param(0.5, "seconds between flushes: what a crash can lose")
        compress: bool = param(True, "zstd-compress chunks")
        views: str = param("jpeg", "Foxglove views beside the messages: jpeg, raw or off")

        def __post_init__(self) -> None:
            if self.flush_interval <= 0:
                raise ValueError("flush_interval must be > 0")
            if self.views not in ("jpeg", "raw", "off"):
                raise ValueError(f"views {self.views!r}; expected jpeg, raw or off")

    any_inputs = True
    tick_interval = 0.1

    def start(self) -> None:
        Path(self.params.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = RecordingWriter(self.params.path, compression=self.params.compress)
        self._dirty_since: float | None = None
        self._view_errors: Counter[str] = Counter()

    def on_message(self, port: str, message: Message) -> None:
        received_ns = now_us() * 1000
        self._writer.write(message.topic, message.frames, received_ns, message.pt * 1000)
        if self.params.views != "off":
            self._write_view(message, received_ns)
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def _write_view(self, message: Message, received_ns: int) -> None:
        from respike.nodes.foxglove import foxglove_topic, view_bytes, view_schema

        view = view_schema(message.kind, self.params.views)
        if view is None:
            return
        schema, encoding = view
        try:
            data = view_bytes(message, self.params.views)
        except ValueError as error:  # the message itself is recorded; only its picture is not
            if not self._view_errors[message.kind]:
                log.warning("%s: no view of a %s: %s", self.name, message.kind, error)
            self._view_errors[message.kind] += 1
            return
        self._writer.write_view(
            foxglove_topic(message.topic),
            (schema.name, schema.encoding, schema.data),
            encoding,
            data,
            received_ns,
        )

    def tick(self) -> None:
        if (
            self._dirty_since is not None
            and time.monotonic() - self._dirty_since >= self.params.flush_interval
        ):
            self._writer.flush()
            self._dirty_since = None

    def stats(self) -> dict[str, float]:
        return {"recorded": float(self._writer.count), "views": float(self._writer.views)}

    def finish(self) -> None:
        self._writer.close()
        log.info("%s: wrote %d messages to %s", self.name, self._writer.count, self.params.path)


@register("replay")
class ReplayNode(Node):
    """Republishes a recording with its original timing (or ``speed``), payloads bit-identical.

    A recorded topic ``node/port`` comes out on this node's ``port`` (header and buffers
    unchanged, including the original sequence numbers and times); ``topics`` picks which ones.
    """

    @dataclass(frozen=True)
    class Params:
        path: str = param("recording.mcap", "MCAP recording made by the recorder node")
        speed: float = param(1.0, "playback speed factor; 0 = as fast as consumers take it")
        topics: str = param("", "comma-separated recorded topics to replay; empty = all")
        loop: bool = param(False, "start again at the end instead of sending `end`")

        def __post_init__(self) -> None:
            if self.speed < 0:
                raise ValueError("speed must be ≥ 0")

    outputs = REPLAY_PORTS

    def start(self) -> None:
        if not Path(self.params.path).is_file():
            raise FileNotFoundError(f"recording {self.params.path!r} does not exist")
        self._messages = self._open()
        self._next = next(self._messages, None)
        if self._next is None:
            raise ValueError(f"recording {self.params.path!r} holds no message to replay")
        self._first_log_ns = self._next.log_time_ns
        self.replayed = 0

    def _open(self) -> Iterator[RecordedMessage]:
        topics = [t.strip() for t in self.params.topics.split(",") if t.strip()] or None
        for message in read_recording(self.params.path, topics):
            port = message.topic.rpartition("/")[2]
            if port in REPLAY_PORTS:
                yield message

    def produce(self) -> float | None:
        message = self._next
        if message is None:
            if not self.params.loop:
                return None
            self.start()
            return 0.0
        if self.replayed == 0:
            self._pacer = Pacer()  # the schedule starts with the first message, after wiring
        self.publish_frames(message.topic.rpartition("/")[2], message.frames)
        self.replayed += 1
        self._next = next(self._messages, None)
        if self._next is None or self.params.speed == 0:
            return 0.0
        offset_s = (self._next.log_time_ns - self._first_log_ns) / 1e9
        return self._pacer.delay_until(offset_s / self.params.speed)

    def stats(self) -> dict[str, float]:
        return {"replayed": float(self.replayed)}
