"""What the viewer keeps: the newest image of each kind, predictions, node rows and rates.

Messages arrive on the node's thread and requests on the server's threads, so one condition
guards all of it, and every change wakes the page's event streams. Images are encoded lazily,
when a browser asks for them, and at most ``max_fps`` times a second per image, so a viewer
nobody looks at costs only the bookkeeping of its inputs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from respike.nodes.viewer.images import IMAGE_KINDS, draw, encode_jpeg
from respike.nodes.viewer.inputs import (
    read_events,
    read_frame,
    read_prediction,
    read_residual,
    read_stats,
)
from respike.stream.messages import Message, now_us

if TYPE_CHECKING:
    from respike.nodes.viewer.node import ViewerNode

MAX_PENDING_EVENTS = 1_000_000
"""Events kept for the next event image (16 MB); older packets are dropped beyond this."""

HISTORY = 8
STALE_AFTER_S = 3.0
"""A node whose stats are older than this is shown as stale (stopped, restarting or gone)."""


class _Rate:
    """Messages per second over the last two seconds (0 when nothing came for that long)."""

    WINDOW_S = 2.0

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=128)

    def add(self, now: float) -> None:
        self._times.append(now)

    def per_second(self, now: float) -> float:
        recent = [t for t in self._times if now - t <= self.WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


@dataclass
class _Panel:
    """One image: its newest input, what the page needs to know about it, and its last JPEG."""

    received: int = 0
    data: Any = None
    """The newest array; for events, the packets that arrived since the last image."""
    info: dict[str, Any] = field(default_factory=dict)
    rate: _Rate = field(default_factory=_Rate)
    jpeg: bytes | None = None
    jpeg_seq: int = -1
    encoded_at: float = -math.inf
    encoding: threading.Lock = field(default_factory=threading.Lock)
    """Held while this image is encoded, so concurrent requests wait for one encode."""


@dataclass
class _NodeRow:
    """The stats row of one node, and its previous counters for the rates."""

    row: dict[str, Any]
    uptime_s: float
    received: int
    sent: int
    updated: float


class ViewerState:
    """The state of one viewer, shared by its node (which adds inputs) and its server (which
    reads snapshots and images and waits for changes)."""

    def __init__(self, name: str, params: ViewerNode.Params) -> None:
        self.name = name
        self.params = params
        self.interval_s = 1.0 / params.max_fps
        """The shortest time between two page updates, and between two encodes of an image."""
        self._changed = threading.Condition()
        """Guards all state below; notified whenever the state changes or the viewer stops."""
        self._stopping = False
        self._version = 0
        self._panels = {kind: _Panel() for kind in IMAGE_KINDS}
        self._prediction: dict[str, Any] | None = None
        self._predictions = 0
        self._prediction_rate = _Rate()
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._nodes: dict[str, _NodeRow] = {}
        self._sensor = (0, 0)
        self._ignored = 0
        self._clients = 0
        self._encoded = 0
        self._encode_s = 0.0

    def add_frame(self, message: Message) -> None:
        """Make a frame message's frame the newest frame image."""
        frame, info = read_frame(message)
        with self._changed:
            self._store("frame", message, frame, info)

    @property
    def sensor(self) -> tuple[int, int]:
        """The event sensor's (width, height) as known from the events so far."""
        return self._sensor

    def add_events(self, message: Message) -> None:
        """Add an events packet to the next event image (the only one when no page is open)."""
        events, sensor, info = read_events(message, self._sensor)
        with self._changed:
            self._sensor = sensor
            pending = self._panels["events"].data if self._clients else None
            packets = [*(pending or []), events]  # a new list: the old one may be being drawn
            while len(packets) > 1 and sum(p.size for p in packets) > MAX_PENDING_EVENTS:
                packets.pop(0)
            self._store("events", message, packets, info)

    def add_residual(self, message: Message) -> None:
        """Make a residual message's residual the newest residual image."""
        residual, info = read_residual(message)
        with self._changed:
            self._store("residual", message, residual, info)

    def _store(self, kind: str, message: Message, data: Any, info: dict[str, Any]) -> None:
        """Make ``data`` the newest ``kind`` image (the caller holds the lock)."""
        panel = self._panels[kind]
        panel.received += 1
        panel.data = data
        panel.info = {**info, "t": message.t, "source": message.topic}
        panel.rate.add(time.monotonic())
        self._version += 1
        self._changed.notify_all()

    def add_prediction(self, message: Message) -> None:
        """Make a prediction the one shown, and add its label to the history when it changed."""
        prediction = read_prediction(message, self.params.topk)
        with self._changed:
            self._predictions += 1
            self._prediction_rate.add(time.monotonic())
            prediction["seq"] = self._predictions
            self._prediction = prediction
            if not self._history or self._history[-1]["label"] != prediction["label"]:
                self._history.append({"label": prediction["label"], "t": prediction["t"]})
            self._version += 1
            self._changed.notify_all()

    def add_stats(self, message: Message) -> None:
        """Update a node's row, its rates from the counters of its previous stats."""
        stats = read_stats(message)
        row = dict(stats.row)
        now = time.monotonic()
        with self._changed:
            previous = self._nodes.get(stats.name)
            if previous is not None and stats.uptime_s > previous.uptime_s:
                span = stats.uptime_s - previous.uptime_s
                if stats.has_inputs:
                    row["in_rate"] = max(0.0, (stats.received - previous.received) / span)
                row["out_rate"] = max(0.0, (stats.sent - previous.sent) / span)
            elif previous is not None and stats.uptime_s == previous.uptime_s:
                return  # the same stats again (a second wire to the same topic)
            self._nodes[stats.name] = _NodeRow(row, stats.uptime_s, stats.received, stats.sent, now)
            self._version += 1
            self._changed.notify_all()

    def ignore(self) -> None:
        """Count a message of a kind the viewer does not show."""
        with self._changed:
            self._ignored += 1

    def snapshot(self) -> dict[str, Any]:
        """The current state as plain JSON values: what the page shows, for any program."""
        now = time.monotonic()
        with self._changed:
            images = {
                kind: {
                    **panel.info,
                    "seq": panel.received,
                    "rate": round(panel.rate.per_second(now), 2),
                    "age_ms": round((now_us() - panel.info["t"]) / 1000, 1),
                }
                for kind, panel in self._panels.items()
                if panel.received
            }
            nodes = [
                {**entry.row, "stale": now - entry.updated > STALE_AFTER_S}
                for _, entry in sorted(self._nodes.items())
            ]
            return {
                "title": self.params.title,
                "node": self.name,
                "version": self._version,
                "time_us": now_us(),
                "images": images,
                "prediction": self._prediction,
                "prediction_rate": round(self._prediction_rate.per_second(now), 2),
                "history": list(self._history),
                "nodes": nodes,
                "viewer": {
                    "clients": self._clients,
                    "encoded": self._encoded,
                    "ignored": self._ignored,
                    "max_fps": self.params.max_fps,
                },
            }

    def snapshot_json(self) -> bytes:
        """:meth:`snapshot` as strict JSON (no NaN), UTF-8."""
        return json.dumps(self.snapshot(), allow_nan=False, separators=(",", ":")).encode()

    def jpeg(self, kind: str) -> bytes | None:
        """The newest ``kind`` image as JPEG, or None before the first input of that kind.

        Encoded on demand and cached by sequence number; a new encode waits until
        ``1 / max_fps`` after the previous one, so however many browsers ask, each image is
        encoded at most ``max_fps`` times a second, and the answer is never older than that.
        """
        panel = self._panels[kind]
        with panel.encoding:
            with self._changed:
                if not panel.received:
                    return None
                if panel.jpeg is not None and panel.jpeg_seq == panel.received:
                    return panel.jpeg
                wait = panel.encoded_at + self.interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self._changed:
                seq, data, info = panel.received, panel.data, panel.info
                if kind == "events":
                    panel.data = []  # the next image counts the packets that arrive from now
            if kind == "residual" and panel.jpeg is not None and not np.any(data):
                with self._changed:  # a key frame's residual: keep the previous image
                    panel.jpeg_seq = seq
                return panel.jpeg
            begin = time.perf_counter()
            rgb = draw(kind, data, info, self.params.residual_scale)
            jpeg = encode_jpeg(rgb, self.params.jpeg_quality)
            with self._changed:
                panel.jpeg, panel.jpeg_seq, panel.encoded_at = jpeg, seq, time.monotonic()
                self._encoded += 1
                self._encode_s += time.perf_counter() - begin
            return jpeg

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Count a page (an event stream) as connected while inside: with one, the event
        image counts every packet since the last image, not only the newest."""
        with self._changed:
            self._clients += 1
        try:
            yield
        finally:
            with self._changed:
                self._clients -= 1
                self._changed.notify_all()

    def wait_for_change(self, version: int, timeout: float) -> int | None:
        """The state's version once it differs from ``version`` (or ``timeout`` seconds
        passed, then possibly still ``version``); None when the viewer stops."""
        with self._changed:
            self._changed.wait_for(partial(self._news_since, version), timeout)
            return None if self._stopping else self._version

    def _news_since(self, version: int) -> bool:
        return self._stopping or self._version != version

    def wait_for_stop(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds unless the viewer stops first; True when it stops."""
        with self._changed:
            return self._changed.wait_for(lambda: self._stopping, timeout)

    def stop(self, timeout: float) -> None:
        """Stop the event streams, waiting up to ``timeout`` seconds for the pages to leave
        (a write to a stalled browser may hold one up)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._clients == 0, timeout=timeout)

    def stats(self) -> dict[str, float]:
        """Pages connected, images encoded (and the mean time it took), messages ignored."""
        with self._changed:
            return {
                "clients": float(self._clients),
                "encoded": float(self._encoded),
                "encode_ms": 1000 * self._encode_s / self._encoded if self._encoded else 0.0,
                "ignored": float(self._ignored),
            }
