"""`dvs`: replays any readable event recording as timed event packets, with its frames if any."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from respike.events.images import rgb_image
from respike.nodes.base import Node, Pacer, SourceFailed, param, register
from respike.recorders import EventFileError, EventWindow, Frame, open_events
from respike.stream import kinds
from respike.stream.messages import now_us


@register("dvs")
class DvsNode(Node):
    """Replays an event recording (any format `respike info` reads) as packets of ``window_us``.

    Packets are paced by the recording's own timestamps (times ``speed``; 0 = as fast as the
    consumers take them, for lossless delivery). Each ``events`` message carries the sensor
    size and the window's bounds in sensor time (``window_start``/``window_end``, µs); its ``t``
    is the wall-clock time the window completed in this replay, so latencies downstream are real.
    Frames of the recording go out on ``frames`` as RGB. A recording damaged part-way is
    played up to the damage; then the node fails for good, naming the byte offset.
    """

    @dataclass(frozen=True)
    class Params:
        path: str = param(
            "", "event recording (AEDAT, EVT2/3, DAT, N-MNIST, HDF5, npy, text, ROS bag, ...)"
        )
        window_us: int = param(10_000, "packet duration in µs (1 ms ... 33 ms are typical)")
        speed: float = param(1.0, "replay speed factor; 0 = as fast as consumers take packets")
        start_us: int = param(0, "skip this much of the recording's start (µs)")
        end_us: int = param(0, "stop this far into the recording (µs); 0 = its end")
        loop: bool = param(False, "start again at the end instead of sending `end`")
        format: str = param(
            "", "format name when detection should be overridden; see `respike info`"
        )

        def __post_init__(self) -> None:
            if not self.path:
                raise ValueError("path is required: the recording to replay")
            if self.window_us < 1 or self.speed < 0 or self.start_us < 0 or self.end_us < 0:
                raise ValueError("window_us must be ≥ 1; speed, start_us and end_us ≥ 0")
            if self.end_us and self.end_us <= self.start_us:
                raise ValueError("end_us must be after start_us")

    outputs = ("events", "frames")

    def start(self) -> None:
        self._reader = open_events(self.params.path, format=self.params.format or None)
        first = next(iter(self._reader.packets()), None)
        if first is None or not len(first):
            raise ValueError(f"recording {self.params.path!r} holds no events")
        self._origin = int(first["t"][0])
        width, height = self._reader.sensor_size or (
            int(first["x"].max()) + 1,
            int(first["y"].max()) + 1,
        )
        self._width, self._height = int(width), int(height)
        self.packets = 0
        self.events = 0
        self._restart()

    def _restart(self) -> None:
        end = self._origin + self.params.end_us if self.params.end_us else None
        self._windows: Iterator[EventWindow] = self._reader.windows(
            self.params.window_us, start_us=self._origin + self.params.start_us, end_us=end
        )
        self._pacer: Pacer | None = None
        self._first_end: int | None = None

    def produce(self) -> float | None:
        try:
            window = next(self._windows, None)
        except EventFileError as exc:  # damaged past what was played: that stands, `end` follows
            raise SourceFailed(str(exc)) from exc
        if window is None:
            if not self.params.loop:
                return None
            self._restart()
            return 0.0
        if self._pacer is None:
            self._pacer, self._first_end = Pacer(), window.end
        for frame in window.frames:
            self._publish_frame(frame)
        packet = kinds.Events(
            width=self._width, height=self._height, window_start=window.start, window_end=window.end
        )
        self.publish("events", packet, now_us(), {"events": window.events})
        self.packets += 1
        self.events += len(window.events)
        if self.params.speed == 0:
            return 0.0
        assert self._first_end is not None
        next_end = window.end + self.params.window_us  # windows are consecutive
        return self._pacer.delay_until((next_end - self._first_end) / 1e6 / self.params.speed)

    def _publish_frame(self, frame: Frame) -> None:
        meta = kinds.Frame(sensor_t=frame.t)
        self.publish("frames", meta, now_us(), {"frame": rgb_image(frame.image)})

    def stats(self) -> dict[str, float]:
        return {"packets": float(self.packets), "events": float(self.events)}
