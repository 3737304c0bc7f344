"""`viewer`: a local web page of live frames, event and residual images, predictions and stats.

The node keeps only the newest input of each kind and serves it over HTTP from a background
thread (stdlib :class:`http.server.ThreadingHTTPServer`, no extra dependency):

- ``/``: the page (inline CSS and JS), updated live without reloading;
- ``/stream``: Server-Sent Events, one JSON state per update, at most ``max_fps`` per second;
- ``/state.json``: the same state once, for tests and other programs;
- ``/frame.jpg``, ``/events.jpg``, ``/residual.jpg``: the newest images as JPEG.

Images are encoded lazily, when a browser asks for them, and at most ``max_fps`` times a second
per image, so a viewer nobody looks at costs only the bookkeeping of its inputs. The page
fetches an image only after the state says it changed, and one at a time per panel, so a slow
browser sees fewer updates instead of a growing backlog.

Input messages are dispatched on their kind (any port names):

- ``frame``: ``arrays["frame"]`` (H, W, 3) uint8 RGB (also (H, W) grey, or floats in [0, 1]);
- ``events``: ``arrays["events"]`` packet of :data:`~respike.events.types.EVENT_DTYPE`; the
  sensor size is ``meta["width"]``/``meta["height"]`` when given, else the largest x/y seen;
  the image counts ON (red) and OFF (blue) events of the packets since the last image (with
  no page open, of the newest packet);
- ``residual``: ``arrays["residual"]`` float32 (C, H, W), signed; C = 1 grey, 3 RGB (mean), or
  2 polarity (channel 1 ON minus channel 0 OFF); drawn red (positive) / blue (negative); an
  all-zero residual (a key frame's, by construction) keeps the previous image, so the panel
  does not blink black every K frames;
- ``prediction``: ``meta`` with ``label``, ``topk`` ``[[label, score], ...]``, ``t`` (capture
  time in µs of the frame it refers to), ``latency_ms`` (``e2e`` and per-stage), ``energy_uj``
  and ``state``; every field is optional;
- ``stats``: the per-node stats of :class:`respike.nodes.runtime.NodeRunner`; rates come from
  consecutive stats of the same node.

Other kinds (``features``) are counted and ignored.
"""

from __future__ import annotations

import html
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from respike.nodes.base import Node, Output, param, register
from respike.stream.messages import Message, now_us
from respike.stream.security import LOOPBACK_NAMES

log = logging.getLogger(__name__)

EVENT_FIELDS = frozenset({"x", "y", "p"})
"""Fields an event packet needs to be drawn: :data:`~respike.events.types.EVENT_DTYPE` has them."""

IMAGE_KINDS = ("frame", "events", "residual")
"""Message kinds drawn as images; each is served as ``/<kind>.jpg``."""

ON_RGB = np.array([255, 72, 64], np.float32)
OFF_RGB = np.array([64, 144, 255], np.float32)
MIN_EVENT_LEVEL = 0.35
"""Brightness of a pixel with a single event, so sparse events stay visible at any count peak."""

MAX_PENDING_EVENTS = 1_000_000
"""Events kept for the next event image (16 MB); older packets are dropped beyond this."""

PREDICTION_FIELDS = frozenset({"label", "topk", "t", "latency_ms", "energy_uj", "state"})
"""The prediction fields the page draws; any others are passed on under ``meta``."""

HISTORY = 8
STALE_AFTER_S = 3.0
"""A node whose stats are older than this is shown as stale (stopped, restarting or gone)."""


def _diverging_lut() -> npt.NDArray[np.uint8]:
    """255 RGB colours from light blue (-1) through black (0, index 127) to orange (+1)."""
    stops = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    colours = np.array(
        [[110, 200, 255], [40, 110, 255], [0, 0, 0], [255, 60, 40], [255, 170, 90]], np.float64
    )
    s = np.linspace(-1.0, 1.0, 255)
    lut = np.stack([np.interp(s, stops, colours[:, c]) for c in range(3)], axis=1)
    return np.rint(lut).astype(np.uint8)


DIVERGING_LUT = _diverging_lut()


def check_frame(frame: np.ndarray) -> None:
    """Raise ValueError unless ``frame`` is RGB (H, W, 3) or grey (H, W[, 1]), uint8 or float."""
    shape = frame.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))) or frame.size == 0:
        raise ValueError(f"frame has shape {shape}; expected (H, W, 3) RGB or (H, W) grey")
    if frame.dtype != np.uint8 and frame.dtype.kind != "f":
        raise ValueError(f"frame has dtype {frame.dtype}; expected uint8 or floats in [0, 1]")


def frame_image(frame: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """A frame as (H, W, 3) uint8 RGB: RGB or grey, uint8 or floats in [0, 1]."""
    array = np.asarray(frame)
    check_frame(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array


def event_image(
    packets: list[npt.NDArray[np.void]], width: int, height: int
) -> npt.NDArray[np.uint8]:
    """ON (red) and OFF (blue) event counts of ``packets`` as an (height, width, 3) RGB image.

    Brightness grows with the count up to the 99th percentile of the non-zero pixels, so one
    busy pixel does not darken the rest; events outside the sensor are left out.
    """
    size = width * height
    on = np.zeros(size, np.int64)
    off = np.zeros(size, np.int64)
    for events in packets:
        x = events["x"].astype(np.intp)
        y = events["y"].astype(np.intp)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        index = y[inside] * width + x[inside]
        is_on = events["p"][inside] > 0
        on += np.bincount(index[is_on], minlength=size)
        off += np.bincount(index[~is_on], minlength=size)
    hit = np.flatnonzero(on + off)  # events are sparse: colour only the pixels that have some
    on_hit, off_hit = on[hit], off[hit]
    peak = max(1.0, float(np.percentile(on_hit + off_hit, 99))) if hit.size else 1.0

    def level(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        scaled = MIN_EVENT_LEVEL + (1 - MIN_EVENT_LEVEL) * np.minimum(counts / peak, 1.0)
        return np.where(counts > 0, scaled, 0.0).astype(np.float32)

    rgb = np.zeros((size, 3), np.uint8)
    colours = level(on_hit)[:, None] * ON_RGB + level(off_hit)[:, None] * OFF_RGB
    rgb[hit] = np.clip(colours, 0, 255).astype(np.uint8)
    return rgb.reshape(height, width, 3)


def residual_image(residual: npt.ArrayLike, scale: float = 0.0) -> npt.NDArray[np.uint8]:
    """A signed residual (C, H, W) as a diverging RGB image: positive red, negative blue, 0 black.

    C = 1 is drawn as is, C = 3 (RGB) as its channel mean, C = 2 (OFF, ON polarity) as ON minus
    OFF. ``scale`` is the magnitude drawn at full colour; 0 takes the 99th percentile of the
    magnitudes, so faint residuals stay visible.
    """
    array = np.asarray(residual, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 2, 3) or array.size == 0:
        raise ValueError(f"residual has shape {array.shape}; expected (C, H, W) with C = 1, 2 or 3")
    if array.shape[0] == 1:
        values = array[0]
    elif array.shape[0] == 2:
        values = array[1] - array[0]
    else:
        values = array.mean(axis=0)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if scale <= 0:
        magnitude = np.abs(values[::2, ::2])  # a quarter of the pixels is plenty for a percentile
        scale = float(np.percentile(magnitude, 99)) if magnitude.size else 0.0
        scale = scale if scale > 1e-6 else max(float(magnitude.max(initial=0.0)), 1e-6)
    index = np.clip(np.rint(values * (127 / scale) + 127), 0, 254).astype(np.uint8)
    return DIVERGING_LUT[index]


def encode_jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of an RGB image (OpenCV wants BGR, so the channels are swapped first)."""
    import cv2

    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {rgb.shape}")
    return bytes(data)


def plain(value: Any) -> Any:
    """``value`` with only JSON values: non-finite floats become None, unknown types strings.

    Browsers reject ``NaN`` in JSON, and a model may well report one.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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


@register("viewer")
class ViewerNode(Node):
    """Serves a live web page of frames, event and residual images, predictions and node stats.

    Wire any topics to it (``inputs = { frames = "cam/frames", predictions = "model/predictions",
    model_stats = "model/stats" }``); it dispatches on the message kind. The URL is logged at
    start; with ``port = 0`` a free port is chosen. When its input ends (a finite source) it
    stops with the pipeline, unless ``hold`` keeps the page up until Ctrl-C.
    """

    @dataclass(frozen=True)
    class Params:
        host: str = param("127.0.0.1", "address to serve on; other than loopback exposes the page")
        port: int = param(8765, "HTTP port; 0 = any free port (the URL is logged)")
        max_fps: float = param(10.0, "most page updates and image encodes per second")
        jpeg_quality: int = param(80, "JPEG quality of the images (1-100)")
        topk: int = param(5, "how many of a prediction's top-k labels to show")
        residual_scale: float = param(
            0.0, "residual magnitude drawn at full colour; 0 = per image (99th percentile)"
        )
        title: str = param("respike", "page title")
        hold: bool = param(
            False, "when the input ends, keep serving its last state until stopped (Ctrl-C)"
        )

        def __post_init__(self) -> None:
            if not 0 <= self.port <= 65535:
                raise ValueError(f"port must be in 0..65535, got {self.port}")
            if not self.max_fps > 0:
                raise ValueError(f"max_fps must be > 0, got {self.max_fps}")
            if not 1 <= self.jpeg_quality <= 100:
                raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
            if self.topk < 1:
                raise ValueError(f"topk must be ≥ 1, got {self.topk}")
            if self.residual_scale < 0:
                raise ValueError(f"residual_scale must be ≥ 0, got {self.residual_scale}")

    any_inputs = True

    def __init__(self, name: str, params: Any, output: Output) -> None:
        super().__init__(name, params, output)
        self._changed = threading.Condition()
        """Guards all state below; notified whenever the state changes or the node stops."""
        self._serving = threading.Event()
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        host, port = self.params.host, self.params.port
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            raise OSError(
                f"viewer cannot serve on {host}:{port}: {exc.strerror or exc}; "
                "pick another port, or port = 0 for any free one"
            ) from exc
        bound_port = self._server.server_address[1]
        shown_host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
        if ":" in shown_host and not shown_host.startswith("["):
            shown_host = f"[{shown_host}]"
        self.url = f"http://{shown_host}:{bound_port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.name}-http",
            daemon=True,
        )
        self._thread.start()
        if host not in LOOPBACK_NAMES:
            log.warning(
                "%s: serving on %s: anyone who can reach it sees the camera", self.name, host
            )
        log.info("%s: viewer at %s", self.name, self.url)
        self._serving.set()

    def wait_until_serving(self, timeout: float) -> str:
        """The page URL once the server listens (``start`` may run on another thread)."""
        if not self._serving.wait(timeout):
            raise TimeoutError(f"viewer {self.name!r} did not start serving within {timeout} s")
        return self.url

    def on_message(self, port: str, message: Message) -> None:
        handlers: dict[str, Callable[[Message], None]] = {
            "frame": self._on_frame,
            "events": self._on_events,
            "residual": self._on_residual,
            "prediction": self._on_prediction,
            "stats": self._on_stats,
        }
        handler = handlers.get(message.kind)
        if handler is None:
            with self._changed:
                self._ignored += 1
            return
        handler(message)

    def _array(self, message: Message, name: str) -> np.ndarray:
        if name not in message.arrays:
            raise ValueError(
                f"{message.kind} message on {message.topic} has no array {name!r}; "
                f"arrays: {sorted(message.arrays)}"
            )
        return message.arrays[name]

    def _on_frame(self, message: Message) -> None:
        frame = self._array(message, "frame")
        check_frame(frame)  # now, so a bad input is counted here; converted only when drawn
        height, width = frame.shape[:2]
        with self._changed:
            self._store("frame", message, frame, {"width": width, "height": height})

    def _on_events(self, message: Message) -> None:
        events = self._array(message, "events")
        if events.ndim != 1 or not set(events.dtype.names or ()) >= EVENT_FIELDS:
            raise ValueError(
                f"events on {message.topic} are {events.dtype} {events.shape}; "
                "expected a 1-D packet with fields x, y, p (EVENT_DTYPE)"
            )
        width, height = message.meta.get("width"), message.meta.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            sensor = (width, height)
        else:
            seen_x = int(events["x"].max()) + 1 if events.size else 0
            seen_y = int(events["y"].max()) + 1 if events.size else 0
            sensor = (max(self._sensor[0], seen_x), max(self._sensor[1], seen_y))
        on = int(np.count_nonzero(events["p"]))
        info = {"width": sensor[0], "height": sensor[1], "count": events.size, "on": on}
        with self._changed:
            self._sensor = sensor
            pending = self._panels["events"].data if self._clients else None
            packets = [*(pending or []), events]  # a new list: the old one may be being drawn
            while len(packets) > 1 and sum(p.size for p in packets) > MAX_PENDING_EVENTS:
                packets.pop(0)
            self._store("events", message, packets, info)

    def _on_residual(self, message: Message) -> None:
        residual = self._array(message, "residual")
        shape = residual.shape
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] not in (1, 2, 3)):
            raise ValueError(
                f"residual on {message.topic} has shape {shape}; expected (C, H, W), C = 1, 2 or 3"
            )
        channels = 1 if len(shape) == 2 else shape[0]
        info = {"width": shape[-1], "height": shape[-2], "channels": channels}
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

    def _on_prediction(self, message: Message) -> None:
        meta = message.meta
        topk = []
        for entry in meta.get("topk") or []:
            if isinstance(entry, list | tuple) and len(entry) == 2:
                score = _number(entry[1])
                topk.append([str(entry[0]), score])
        latency = meta.get("latency_ms")
        latency_ms = (
            {str(k): _number(v) for k, v in latency.items()} if isinstance(latency, Mapping) else {}
        )
        t = meta.get("t")
        t = t if isinstance(t, int) and not isinstance(t, bool) else message.t
        label = str(meta.get("label", topk[0][0] if topk else ""))
        prediction = {
            "label": label,
            "topk": topk[: self.params.topk],
            "t": t,
            "age_ms": round((now_us() - t) / 1000, 3),
            "latency_ms": latency_ms,
            "energy_uj": _number(meta.get("energy_uj")),
            "state": str(meta.get("state", "")),
            "source": message.topic,
            "meta": plain({k: v for k, v in meta.items() if k not in PREDICTION_FIELDS}),
        }
        with self._changed:
            self._predictions += 1
            self._prediction_rate.add(time.monotonic())
            prediction["seq"] = self._predictions
            self._prediction = prediction
            if not self._history or self._history[-1]["label"] != label:
                self._history.append({"label": label, "t": t})
            self._version += 1
            self._changed.notify_all()

    def _on_stats(self, message: Message) -> None:
        meta = message.meta
        name = str(meta.get("node") or message.source or message.topic.partition("/")[0])
        inputs = [p for p in (meta.get("inputs") or {}).values() if isinstance(p, Mapping)]
        outputs = meta.get("outputs") or {}
        received = sum(int(p.get("received", 0)) for p in inputs)
        sent = sum(int(n) for topic, n in outputs.items() if not str(topic).endswith("/stats"))
        uptime = _number(meta.get("uptime_s")) or 0.0
        hop, age = meta.get("hop_ms") or {}, meta.get("age_ms") or {}
        errors = meta.get("errors") or {}
        row: dict[str, Any] = {
            "node": name,
            "kind": str(meta.get("kind", "")),
            "uptime_s": uptime,
            "busy": _number(meta.get("busy")),
            "in_rate": None,
            "out_rate": None,
            "received": received,
            "dropped": sum(int(p.get("dropped", 0)) for p in inputs),
            "gaps": sum(int(p.get("gaps", 0)) for p in inputs),
            "invalid": sum(sum((p.get("invalid") or {}).values()) for p in inputs),
            "sent": sent,
            "hop_p50": _number(hop.get("p50")),
            "hop_p99": _number(hop.get("p99")),
            "age_p50": _number(age.get("p50")),
            "age_p99": _number(age.get("p99")),
            "errors": sum(int(n) for n in errors.values()),
            "extra": plain(meta.get("extra") or {}),
        }
        now = time.monotonic()
        with self._changed:
            previous = self._nodes.get(name)
            if previous is not None and uptime > previous.uptime_s:
                span = uptime - previous.uptime_s
                if inputs:  # a source has no input rate, rather than a rate of 0
                    row["in_rate"] = max(0.0, (received - previous.received) / span)
                row["out_rate"] = max(0.0, (sent - previous.sent) / span)
            elif previous is not None and uptime == previous.uptime_s:
                return  # the same stats again (a second wire to the same topic)
            self._nodes[name] = _NodeRow(row, uptime, received, sent, now)
            self._version += 1
            self._changed.notify_all()

    def state(self) -> dict[str, Any]:
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

    def state_json(self) -> bytes:
        """:meth:`state` as strict JSON (no NaN), UTF-8."""
        return json.dumps(self.state(), allow_nan=False, separators=(",", ":")).encode()

    def jpeg(self, kind: str) -> bytes | None:
        """The newest ``kind`` image as JPEG, or None before the first input of that kind.

        Encoded on demand and cached by sequence number; a new encode waits until
        ``1 / max_fps`` after the previous one, so however many browsers ask, each image is
        encoded at most ``max_fps`` times a second, and the answer is never older than that.
        """
        interval = 1.0 / self.params.max_fps
        panel = self._panels[kind]
        with panel.encoding:
            with self._changed:
                if not panel.received:
                    return None
                if panel.jpeg is not None and panel.jpeg_seq == panel.received:
                    return panel.jpeg
                wait = panel.encoded_at + interval - time.monotonic()
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
            jpeg = encode_jpeg(self._draw(kind, data, info), self.params.jpeg_quality)
            with self._changed:
                panel.jpeg, panel.jpeg_seq, panel.encoded_at = jpeg, seq, time.monotonic()
                self._encoded += 1
                self._encode_s += time.perf_counter() - begin
            return jpeg

    def _draw(self, kind: str, data: Any, info: Mapping[str, Any]) -> npt.NDArray[np.uint8]:
        if kind == "frame":
            return frame_image(data)
        if kind == "events":
            return event_image(data, max(1, info["width"]), max(1, info["height"]))
        return residual_image(data, self.params.residual_scale)

    def stream(self, write: Callable[[bytes], None], keepalive_s: float = 15.0) -> None:
        """Write Server-Sent Events to ``write`` until the node stops or the client leaves.

        One ``data:`` line of state JSON per change, at most ``max_fps`` a second (changes in
        between are merged), and a comment line every ``keepalive_s`` so proxies keep the
        connection open.
        """
        interval = 1.0 / self.params.max_fps
        sent_version = -1
        with self._changed:
            self._clients += 1
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(partial(self._news_since, sent_version), keepalive_s)
                    if self._stopping:
                        return
                    version = self._version
                if version == sent_version:
                    write(b": keepalive\n\n")
                    continue
                write(b"data: " + self.state_json() + b"\n\n")
                sent_version = version
                with self._changed:
                    if self._changed.wait_for(lambda: self._stopping, interval):
                        return
        finally:
            with self._changed:
                self._clients -= 1
                self._changed.notify_all()

    def _news_since(self, version: int) -> bool:
        return self._stopping or self._version != version

    def page(self) -> bytes:
        """The page's HTML."""
        return PAGE.replace("{{title}}", html.escape(self.params.title)).encode()

    def stats(self) -> dict[str, float]:
        with self._changed:
            return {
                "port": float(self._server.server_address[1] if self._server else 0),
                "clients": float(self._clients),
                "encoded": float(self._encoded),
                "encode_ms": 1000 * self._encode_s / self._encoded if self._encoded else 0.0,
                "ignored": float(self._ignored),
            }

    def finish(self) -> None:
        if self.params.hold and not self.stop_requested.is_set():
            log.info("%s: the input has ended; serving %s until stopped", self.name, self.url)
            while not self.stop_requested.wait(0.5):
                pass
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            # event streams end at once unless a write to a stalled browser blocks them
            self._changed.wait_for(lambda: self._clients == 0, timeout=1.0)
        if self._thread is not None and self._thread.is_alive():
            assert self._server is not None
            self._server.shutdown()  # waits for serve_forever to return
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.server_close()


class _Server(ThreadingHTTPServer):
    """The HTTP server of one viewer; request threads are daemons so a stuck client never
    holds up shutdown."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], viewer: ViewerNode) -> None:
        self.viewer = viewer
        self._reported: set[tuple[str, str]] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def report(self, path: str, exc: Exception) -> None:
        """Log a failed request once per path and exception type (browsers retry often)."""
        cause = (path, type(exc).__name__)
        if cause not in self._reported:
            self._reported.add(cause)
            log.error(
                "%s: %s failed (further ones are not logged)", self.viewer.name, path, exc_info=exc
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("viewer: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Routes the page, the event stream, the state and the images to the viewer."""

    server: _Server
    timeout = 30
    """Seconds a socket read or write may block (a browser that stopped reading)."""

    def do_GET(self) -> None:
        viewer = self.server.viewer
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._reply(viewer.page(), "text/html; charset=utf-8")
            elif path == "/state.json":
                self._reply(viewer.state_json(), "application/json")
            elif path == "/stream":
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                viewer.stream(self._write)
            elif path.endswith(".jpg") and path[1:-4] in IMAGE_KINDS:
                jpeg = viewer.jpeg(path[1:-4])
                if jpeg is None:
                    self.send_error(HTTPStatus.NOT_FOUND, "no image of this kind yet")
                else:
                    self._reply(jpeg, "image/jpeg")
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the browser went away; nothing to answer
        except Exception as exc:
            self.server.report(path, exc)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, type(exc).__name__)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _reply(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("viewer: %s " + format, self.address_string(), *args)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
  :root {
    --bg: #0e1014; --panel: #161a21; --line: #252b36; --text: #e4e7ee; --muted: #8a93a6;
    --accent: #4fd1b5; --bar: #3a4558; --on: #ff4840; --off: #4090ff; --warn: #f6b94a;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text);
    font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: center; gap: 12px; padding: 10px 20px;
    border-bottom: 1px solid var(--line); }
  header h1 { font-size: 16px; font-weight: 600; margin: 0; letter-spacing: .02em; }
  header .sub { color: var(--muted); font-size: 13px; }
  #conn { width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
  #conn.live { background: var(--accent); box-shadow: 0 0 8px var(--accent); }
  #conn.lost { background: var(--on); }
  header .right { margin-left: auto; color: var(--muted); font-size: 12px;
    font-variant-numeric: tabular-nums; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 340px; gap: 16px; padding: 16px 20px;
    align-items: start; }
  .column { display: flex; flex-direction: column; gap: 16px; min-width: 0; }
  .card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
  .card h2 { margin: 0 0 8px; font-size: 11px; font-weight: 600; color: var(--muted);
    text-transform: uppercase; letter-spacing: .08em; }
  #images { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px; }
  .image { display: flex; flex-direction: column; }
  .image canvas { width: 100%; aspect-ratio: 4 / 3; object-fit: contain; background: #000;
    border-radius: 6px; }
  .image.pixelated canvas { image-rendering: pixelated; }
  .image .caption { margin-top: 6px; color: var(--muted); font-size: 12px; white-space: nowrap;
    font-variant-numeric: tabular-nums; display: flex; justify-content: space-between; gap: 8px; }
  .image .caption .name { color: var(--text); }
  .legend i { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin: 0 3px 0 8px; }
  .empty { color: var(--muted); padding: 40px 0; text-align: center; }
  #label { font-size: 30px; font-weight: 650; line-height: 1.15; word-break: break-word; }
  #label.none { color: var(--muted); }
  .badges { margin-top: 6px; display: flex; gap: 6px; flex-wrap: wrap; }
  .badge { font-size: 11px; padding: 2px 8px; border-radius: 999px; background: #222938; color: var(--muted); }
  .badge.state { color: var(--accent); background: rgba(79, 209, 181, .12); }
  .bars { margin-top: 12px; display: flex; flex-direction: column; gap: 7px; }
  .bar .row { display: flex; justify-content: space-between; font-size: 13px; }
  .bar .row .score { color: var(--muted); font-variant-numeric: tabular-nums; }
  .bar .track { height: 6px; background: #222938; border-radius: 3px; overflow: hidden; margin-top: 3px; }
  .bar .fill { height: 100%; background: var(--bar); border-radius: 3px; transition: width .15s; }
  .bar.top .fill { background: var(--accent); }
  .big { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .big small { font-size: 12px; color: var(--muted); font-weight: 400; }
  .pair { display: flex; gap: 18px; }
  .stack { display: flex; height: 8px; border-radius: 4px; overflow: hidden; margin: 10px 0 6px; background: #222938; }
  .stages { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; color: var(--muted);
    font-variant-numeric: tabular-nums; }
  .stages i { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin-right: 4px; }
  #history { display: flex; flex-wrap: wrap; gap: 4px; }
  #history .badge:last-child { color: var(--text); }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
  th { color: var(--muted); font-weight: 500; text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); }
  td { text-align: right; padding: 4px 8px; border-bottom: 1px solid #1d222b; }
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
  tr.stale td { color: var(--muted); opacity: .6; }
  td.bad { color: var(--warn); }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <div id="conn" title="connection"></div>
  <h1>{{title}}</h1>
  <span class="sub">live action recognition</span>
  <span class="right" id="clock"></span>
</header>
<main>
 <div class="column">
  <section class="card">
    <h2>Input</h2>
    <div id="images">
      <div class="image" id="panel-frame" hidden><canvas></canvas>
        <div class="caption"><span class="name">frame</span><span class="info"></span></div></div>
      <div class="image pixelated" id="panel-events" hidden><canvas></canvas>
        <div class="caption"><span class="legend"><span class="name">events</span><i style="background:var(--on)"></i>ON<i style="background:var(--off)"></i>OFF</span><span class="info"></span></div></div>
      <div class="image pixelated" id="panel-residual" hidden><canvas></canvas>
        <div class="caption"><span class="legend"><span class="name">residual</span><i style="background:var(--on)"></i>+<i style="background:var(--off)"></i>&minus;</span><span class="info"></span></div></div>
    </div>
    <div class="empty" id="no-images">waiting for frames, events or residuals&hellip;</div>
  </section>
  <section class="card">
    <h2>Nodes</h2>
    <table>
      <thead><tr><th>node</th><th>kind</th><th>in/s</th><th>out/s</th><th>busy</th>
        <th>hop p50/p99 ms</th><th>age p50/p99 ms</th><th>dropped</th><th>gaps</th>
        <th>invalid</th><th>errors</th></tr></thead>
      <tbody id="nodes"><tr><td colspan="11" class="empty">no stats yet</td></tr></tbody>
    </table>
  </section>
 </div>
  <aside class="column">
    <div class="card">
      <h2>Prediction</h2>
      <div id="label" class="none">waiting&hellip;</div>
      <div class="badges"><span class="badge state" id="state" hidden></span><span class="badge" id="pred-rate"></span></div>
      <div class="bars" id="bars"></div>
    </div>
    <div class="card">
      <h2>Latency &amp; energy</h2>
      <div class="pair">
        <div class="big"><span id="e2e">&ndash;</span> <small>ms end-to-end</small></div>
        <div class="big"><span id="energy">&ndash;</span> <small>&micro;J / step</small></div>
      </div>
      <div class="stack" id="stack"></div>
      <div class="stages" id="stages"></div>
    </div>
    <div class="card">
      <h2>Recent labels</h2>
      <div id="history"></div>
    </div>
  </aside>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const STAGE_COLOURS = ["#4fd1b5", "#6c8cff", "#f6b94a", "#e76f9a", "#9b7bff", "#57c3f2", "#c3d65a"];
const fmt = (x, digits = 1) => (x === null || x === undefined) ? "\\u2013" : Number(x).toFixed(digits);
function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

const panels = {};
for (const kind of ["frame", "events", "residual"]) {
  const root = $("panel-" + kind);
  panels[kind] = { root, canvas: root.querySelector("canvas"), info: root.querySelector(".info"),
                   wanted: 0, shown: 0, loading: false };
}

async function load(kind) {
  const panel = panels[kind];
  panel.loading = true;
  const seq = panel.wanted;
  try {
    const response = await fetch(`/${kind}.jpg?seq=${seq}`, { cache: "no-store" });
    if (response.ok) {
      const bitmap = await createImageBitmap(await response.blob());
      const canvas = panel.canvas;
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width; canvas.height = bitmap.height;
      }
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      panel.shown = seq;
    }
  } catch (error) { /* the next state update asks again */ }
  panel.loading = false;
  if (panel.wanted !== panel.shown) setTimeout(() => load(kind), 50);
}

function showImages(images) {
  let any = false;
  for (const [kind, panel] of Object.entries(panels)) {
    const info = images[kind];
    panel.root.hidden = !info;
    if (!info) continue;
    any = true;
    const size = kind === "events" ? `${info.count} ev` : `${info.width}\\u00d7${info.height}`;
    panel.info.textContent = `${size} \\u00b7 ${fmt(info.rate, 0)}/s \\u00b7 ${fmt(info.age_ms, 0)} ms`;
    panel.info.title = `${info.width}\\u00d7${info.height}, ${fmt(info.rate)} per second, captured ${fmt(info.age_ms, 0)} ms ago`;
    if (info.seq !== panel.wanted) {
      panel.wanted = info.seq;
      if (!panel.loading) load(kind);
    }
  }
  $("no-images").hidden = any;
}

function showPrediction(p, rate) {
  const label = $("label");
  if (!p) return;
  label.textContent = p.label || "\\u2013";
  label.className = (!p.label || p.label === "no action") ? "none" : "";
  label.dataset.seq = p.seq;
  $("state").hidden = !p.state;
  $("state").textContent = p.state;
  $("pred-rate").textContent = `${fmt(rate)} predictions/s \\u00b7 ${fmt(p.age_ms, 0)} ms old`;
  const bars = p.topk.map(([name, score], i) => {
    const width = Math.max(0, Math.min(1, score || 0)) * 100;
    return el("div", { className: "bar" + (i === 0 && name === p.label ? " top" : "") }, [
      el("div", { className: "row" }, [el("span", { textContent: name }),
        el("span", { className: "score", textContent: fmt(score, 2) })]),
      el("div", { className: "track" }, [el("div", { className: "fill", style: `width:${width}%` })]),
    ]);
  });
  $("bars").replaceChildren(...bars);
  const latency = p.latency_ms || {};
  $("e2e").textContent = fmt(latency.e2e);
  $("energy").textContent = fmt(p.energy_uj, 2);
  const stages = Object.entries(latency).filter(([name, ms]) => name !== "e2e" && ms !== null);
  const total = Math.max(latency.e2e || 0, stages.reduce((sum, [, ms]) => sum + ms, 0)) || 1;
  $("stack").replaceChildren(...stages.map(([name, ms], i) => el("div", {
    title: `${name} ${fmt(ms)} ms`,
    style: `width:${100 * ms / total}%;background:${STAGE_COLOURS[i % STAGE_COLOURS.length]}`,
  })));
  $("stages").replaceChildren(...stages.map(([name, ms], i) => el("span", {}, [
    el("i", { style: `background:${STAGE_COLOURS[i % STAGE_COLOURS.length]}` }), `${name} ${fmt(ms)} ms`,
  ])));
}

function showHistory(history) {
  $("history").replaceChildren(...history.map((h) => el("span", { className: "badge", textContent: h.label })));
}

function showNodes(nodes) {
  if (!nodes.length) return;
  $("nodes").replaceChildren(...nodes.map((n) => {
    const cell = (text, bad = false) => el("td", { textContent: text, className: bad ? "bad" : "" });
    return el("tr", { className: n.stale ? "stale" : "" }, [
      cell(n.node), cell(n.kind), cell(fmt(n.in_rate)), cell(fmt(n.out_rate)),
      cell(n.busy === null ? "\\u2013" : `${fmt(100 * n.busy, 0)}%`),
      cell(`${fmt(n.hop_p50)} / ${fmt(n.hop_p99)}`), cell(`${fmt(n.age_p50)} / ${fmt(n.age_p99)}`),
      cell(n.dropped, n.dropped > 0), cell(n.gaps, n.gaps > 0), cell(n.invalid, n.invalid > 0),
      cell(n.errors, n.errors > 0),
    ]);
  }));
}

function show(state) {
  showImages(state.images);
  showPrediction(state.prediction, state.prediction_rate);
  showHistory(state.history);
  showNodes(state.nodes);
  $("clock").textContent = `${state.node} \\u00b7 ${new Date(state.time_us / 1000).toLocaleTimeString()}`;
}

const source = new EventSource("/stream");
source.onopen = () => { $("conn").className = "live"; };
source.onerror = () => { $("conn").className = "lost"; };
source.onmessage = (event) => show(JSON.parse(event.data));
</script>
</body>
</html>
"""
