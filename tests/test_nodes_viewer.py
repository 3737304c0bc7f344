"""The viewer node: images, predictions and stats over HTTP, and the live page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from respike.events.types import make_events
from respike.nodes.base import ParamError, build_params, get_node_kind
from respike.nodes.runtime import InputWire, NodeRunner, Wiring
from respike.nodes.testing import MockIO
from respike.nodes.viewer import ViewerNode, event_image, residual_image
from respike.stream.messages import Message, now_us
from respike.stream.sockets import Publisher

from helpers import DevTools

HTTP_TIMEOUT = 10.0
VIDEO = (
    Path(os.environ.get("RESPIKE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    / "videos"
    / "kinetics_arm_wrestling.mp4"
)
"""Real frames for the browser test when the shared data is there (synthetic ones otherwise)."""


@pytest.fixture
def viewer() -> Iterator[MockIO]:
    """A viewer on a free port, driven without sockets; its server stops at the end."""
    io = MockIO(ViewerNode, "viewer", ViewerNode.Params(port=0, max_fps=100))
    try:
        yield io
    finally:
        io.end()


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Fetches without any proxy from the environment (the viewer is on loopback)."""


def get(io: MockIO, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` from the viewer: status, content type and body."""
    try:
        with DIRECT.open(io.node.url + path.lstrip("/"), timeout=HTTP_TIMEOUT) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def state(io: MockIO) -> dict[str, Any]:
    status, content_type, body = get(io, "/state.json")
    assert status == 200 and content_type == "application/json"
    return json.loads(body, parse_constant=_reject_constant)


def _reject_constant(name: str) -> None:
    raise AssertionError(f"browsers cannot parse {name} in JSON")


def image(io: MockIO, kind: str) -> np.ndarray:
    """The viewer's ``kind`` image, decoded from JPEG to RGB."""
    status, content_type, body = get(io, f"/{kind}.jpg")
    assert status == 200 and content_type == "image/jpeg", body
    bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "the body is a JPEG"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_message(rgb: np.ndarray, t: int | None = None) -> Message:
    return Message("cam/frames", "frame", now_us() if t is None else t, {"frame": rgb})


def prediction_message(label: str, score: float = 0.8, **meta: Any) -> Message:
    fields: dict[str, Any] = {
        "label": label,
        "topk": [[label, score], ["other", round(1 - score, 3)]],
        "latency_ms": {"e2e": 12.5, "residual": 2.0, "model": 9.5},
        "energy_uj": 3.25,
        "state": "stable",
    }
    captured = now_us() - 20_000  # the frame it refers to, 20 ms ago
    return Message("model/predictions", "prediction", captured, {}, {**fields, **meta})


def stats_message(node: str, uptime: float, received: int, sent: int, **extra: Any) -> Message:
    meta = {
        "node": node,
        "kind": "model",
        "uptime_s": uptime,
        "busy": 0.25,
        "inputs": {
            "in": {"received": received, "dropped": 2, "gaps": 1, "invalid": {"bad-kind": 3}}
        },
        "outputs": {f"{node}/predictions": sent, f"{node}/stats": 99},
        "hop_ms": {"p50": 0.5, "p99": 1.5},
        "age_ms": {"p50": 10.0, "p99": 20.0},
        "errors": {"ValueError": 1},
        "extra": extra,
    }
    return Message(f"{node}/stats", "stats", now_us(), {}, meta)


def test_the_page_state_and_missing_images_before_any_input(viewer: MockIO) -> None:
    status, content_type, page = get(viewer, "/")
    assert status == 200 and content_type.startswith("text/html")
    assert b'new EventSource("/stream")' in page and b'id="label"' in page
    initial = state(viewer)
    assert initial["prediction"] is None and initial["images"] == {} and initial["nodes"] == []
    assert get(viewer, "/frame.jpg")[0] == 404, "no image before the first frame"
    assert get(viewer, "/nothing")[0] == 404


def test_a_frame_is_served_as_jpeg_with_its_colours(viewer: MockIO) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (220, 30, 30)  # red left half, green right half: catches an RGB/BGR mix-up
    rgb[:, 32:] = (30, 200, 40)
    viewer.send("frames", frame_message(rgb, t=now_us() - 5_000))
    shown = image(viewer, "frame")
    assert shown.shape == (48, 64, 3)
    np.testing.assert_allclose(shown[24, 8], (220, 30, 30), atol=12)
    np.testing.assert_allclose(shown[24, 56], (30, 200, 40), atol=12)
    info = state(viewer)["images"]["frame"]
    assert (info["width"], info["height"], info["seq"]) == (64, 48, 1)
    assert info["age_ms"] >= 5, "the age counts from the capture time"


def test_grey_and_float_frames_are_shown_and_bad_frames_rejected(viewer: MockIO) -> None:
    viewer.send("frames", frame_message(np.full((8, 8), 0.5, np.float32)))
    np.testing.assert_allclose(image(viewer, "frame")[4, 4], (128, 128, 128), atol=3)
    with pytest.raises(ValueError, match="expected \\(H, W, 3\\) RGB"):
        viewer.send("frames", frame_message(np.zeros((4, 4, 4), np.uint8)))
    with pytest.raises(ValueError, match="has no array 'frame'"):
        viewer.send(
            "frames", Message("cam/frames", "frame", 0, {"data": np.zeros((2, 2), np.uint8)})
        )


def block_events(x0: int, y0: int, p: int, t0: int = 0) -> np.ndarray:
    """Events on an 8x8 block at (x0, y0) with polarity p, 3 per pixel."""
    ys, xs = np.mgrid[y0 : y0 + 8, x0 : x0 + 8]
    xs, ys = np.repeat(xs.ravel(), 3), np.repeat(ys.ravel(), 3)
    return make_events(t0 + np.arange(xs.size), xs, ys, np.full(xs.size, p))


def test_the_event_image_is_red_where_on_events_and_blue_where_off_events_were(
    viewer: MockIO,
) -> None:
    on, off = block_events(8, 8, 1), block_events(40, 24, 0, t0=1000)
    events = make_events(*(np.concatenate([on[f], off[f]]) for f in ("t", "x", "y", "p")))
    message = Message(
        "dvs/events", "events", now_us(), {"events": events}, {"width": 64, "height": 48}
    )
    viewer.send("events", message)
    shown = image(viewer, "events").astype(int)
    assert shown.shape == (48, 64, 3), "the image has the sensor size from the metadata"
    on, off, quiet = shown[12, 12], shown[28, 44], shown[40, 10]
    assert on[0] > 180 and on[2] < 120, f"ON events are red, got {on}"
    assert off[2] > 180 and off[0] < 120, f"OFF events are blue, got {off}"
    assert quiet.max() < 30, f"no events is black, got {quiet}"
    info = state(viewer)["images"]["events"]
    assert (info["count"], info["on"]) == (384, 192)


def test_without_a_sensor_size_the_event_image_grows_to_the_largest_event_seen() -> None:
    rgb = event_image([block_events(0, 0, 1), block_events(20, 10, 0)], 28, 18)
    assert (
        rgb.shape == (18, 28, 3) and rgb[:8, :8, 0].min() > 200 and rgb[10:18, 20:28, 2].min() > 200
    )
    io = MockIO(ViewerNode, "viewer", ViewerNode.Params(port=0))
    try:
        io.send("events", Message("dvs/events", "events", 0, {"events": block_events(20, 10, 1)}))
        io.send("events", Message("dvs/events", "events", 0, {"events": block_events(0, 30, 0)}))
        info = state(io)["images"]["events"]
        assert (info["width"], info["height"]) == (28, 38)
    finally:
        io.end()


def test_residuals_are_drawn_red_for_positive_and_blue_for_negative(viewer: MockIO) -> None:
    residual = np.zeros((1, 32, 32), np.float32)
    residual[0, :, :16] = 0.4
    residual[0, :, 16:] = -0.4
    viewer.send("residual", Message("res/residual", "residual", now_us(), {"residual": residual}))
    shown = image(viewer, "residual").astype(int)
    red, blue = shown[16, 4], shown[16, 28]
    assert red[0] > 200 and red[0] - red[2] > 80, f"positive is red, got {red}"
    assert blue[2] > 200 and blue[2] - blue[0] > 80, f"negative is blue, got {blue}"
    key_frame = np.zeros_like(residual)
    viewer.send("residual", Message("res/residual", "residual", now_us(), {"residual": key_frame}))
    np.testing.assert_array_equal(
        image(viewer, "residual"), shown, "a key frame's zero residual keeps the last image"
    )
    polarity = np.zeros((2, 4, 4), np.float32)
    polarity[1, 0, 0] = 2.0  # an ON count
    polarity[0, 3, 3] = 2.0  # an OFF count
    drawn = residual_image(polarity).astype(int)
    assert drawn[0, 0, 0] > 200 and drawn[3, 3, 2] > 200 and drawn[1, 1].max() == 0
    rgb = residual_image(np.stack([residual[0]] * 3), scale=0.4).astype(int)
    assert rgb[0, 0, 0] > 200 and rgb[0, 31, 2] > 200, "RGB residuals are drawn by their mean"
    with pytest.raises(ValueError, match="C = 1, 2 or 3"):
        viewer.send(
            "residual", Message("r/r", "residual", 0, {"residual": np.zeros((4, 3, 3), np.float32)})
        )


def test_predictions_are_in_the_state_with_history_and_without_nan(viewer: MockIO) -> None:
    viewer.send("predictions", prediction_message("waving", energy_uj=math.nan))
    viewer.send("predictions", prediction_message("waving", 0.9))
    viewer.send("predictions", prediction_message("clapping", 0.7, extra_field=[1, 2]))
    current = state(viewer)
    prediction = current["prediction"]
    assert prediction["label"] == "clapping" and prediction["seq"] == 3
    assert prediction["topk"] == [["clapping", 0.7], ["other", 0.3]]
    assert prediction["latency_ms"] == {"e2e": 12.5, "residual": 2.0, "model": 9.5}
    assert prediction["energy_uj"] == 3.25 and prediction["state"] == "stable"
    assert prediction["meta"] == {"extra_field": [1, 2]}, "unknown fields are kept for the page"
    assert prediction["age_ms"] >= 20
    assert [h["label"] for h in current["history"]] == ["waving", "clapping"], (
        "the history lists label changes, not every prediction"
    )


def test_a_prediction_with_only_topk_takes_its_label_from_the_first(viewer: MockIO) -> None:
    viewer.send("p", Message("m/p", "prediction", 7, {}, {"topk": [["run", 0.6], "junk"]}))
    prediction = state(viewer)["prediction"]
    assert prediction["label"] == "run" and prediction["topk"] == [["run", 0.6]]
    assert prediction["t"] == 7 and prediction["energy_uj"] is None


def test_stats_become_per_node_rates_latencies_drops_and_errors(viewer: MockIO) -> None:
    viewer.send("model_stats", stats_message("model", uptime=1.0, received=10, sent=5))
    (row,) = state(viewer)["nodes"]
    assert row["in_rate"] is None, "a rate needs two stats of the same node"
    viewer.send("model_stats", stats_message("model", uptime=3.0, received=70, sent=45, fps=30.0))
    viewer.send("cam_stats", stats_message("camera", uptime=1.0, received=0, sent=0))
    rows = state(viewer)["nodes"]
    assert [r["node"] for r in rows] == ["camera", "model"]
    model = rows[1]
    assert model["in_rate"] == pytest.approx(30.0) and model["out_rate"] == pytest.approx(20.0), (
        "rates come from consecutive stats; the stats topic itself is not counted"
    )
    assert (model["dropped"], model["gaps"], model["invalid"], model["errors"]) == (2, 1, 3, 1)
    assert (model["hop_p50"], model["age_p99"], model["busy"]) == (0.5, 20.0, 0.25)
    assert model["extra"] == {"fps": 30.0} and not model["stale"]
    viewer.send("model_stats", stats_message("model", uptime=0.5, received=1, sent=1))
    assert state(viewer)["nodes"][1]["in_rate"] is None, "a restarted node starts its rates afresh"


def test_other_kinds_are_counted_and_ignored(viewer: MockIO) -> None:
    viewer.send("f", Message("snn/features", "features", 0, {"x": np.zeros(3, np.float32)}))
    assert state(viewer)["viewer"]["ignored"] == 1


def test_images_are_encoded_only_when_asked_for_and_once_per_update(viewer: MockIO) -> None:
    for i in range(20):
        viewer.send("frames", frame_message(np.full((16, 16, 3), i, np.uint8)))
    assert viewer.node.stats()["encoded"] == 0, "nobody looked, so nothing was encoded"
    first = get(viewer, "/frame.jpg")[2]
    assert get(viewer, "/frame.jpg")[2] == first
    assert viewer.node.stats()["encoded"] == 1, "an unchanged image is served from the cache"
    viewer.send("frames", frame_message(np.full((16, 16, 3), 200, np.uint8)))
    assert image(viewer, "frame")[8, 8, 0] > 190
    assert viewer.node.stats()["encoded"] == 2


def read_event(response: http.client.HTTPResponse) -> dict[str, Any]:
    """The next ``data:`` event of a Server-Sent Events response."""
    while True:
        line = response.readline()
        assert line, "the event stream ended"
        if line.startswith(b"data: "):
            return json.loads(line[len(b"data: ") :])


def test_the_event_stream_pushes_each_change_to_the_page(viewer: MockIO) -> None:
    port = int(viewer.node.stats()["port"])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.headers["Content-Type"] == "text/event-stream"
        assert read_event(response)["prediction"] is None, "the current state comes first"
        viewer.send("predictions", prediction_message("waving"))
        assert read_event(response)["prediction"]["label"] == "waving"
        viewer.send("predictions", prediction_message("clapping"))
        pushed = read_event(response)
        assert pushed["prediction"]["label"] == "clapping" and pushed["viewer"]["clients"] == 1
    finally:
        connection.close()


def open_stream(io: MockIO) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A page's event stream from the viewer (the viewer counts it as a connected browser)."""
    port = int(io.node.stats()["port"])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    connection.request("GET", "/stream")
    response = connection.getresponse()
    read_event(response)
    return connection, response


def test_with_a_page_open_the_event_image_counts_every_packet_since_the_last(
    viewer: MockIO,
) -> None:
    def send(x0: int) -> None:
        packet = block_events(x0, 8, 1)
        meta = {"width": 64, "height": 32}
        viewer.send("events", Message("dvs/events", "events", now_us(), {"events": packet}, meta))

    send(0)
    send(24)
    assert image(viewer, "events")[12, 4, 0] < 30, "with no page open, only the newest packet"
    connection, _ = open_stream(viewer)
    try:
        send(0)
        send(24)
        shown = image(viewer, "events")
        assert shown[12, 4, 0] > 180 and shown[12, 28, 0] > 180, "both packets are drawn"
        send(48)
        shown = image(viewer, "events")
        assert shown[12, 4, 0] < 30 and shown[12, 52, 0] > 180, "the next image starts afresh"
    finally:
        connection.close()


def test_a_failing_image_is_a_500_logged_once(
    viewer: MockIO, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(residual: np.ndarray, scale: float) -> np.ndarray:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("respike.nodes.viewer.images.residual_image", broken)
    for i in range(2):
        residual = np.full((1, 4, 4), i, np.float32)
        viewer.send("residual", Message("r/residual", "residual", 0, {"residual": residual}))
        assert get(viewer, "/residual.jpg")[0] == 500
    assert caplog.text.count("/residual.jpg failed") == 1, caplog.text
    assert get(viewer, "/state.json")[0] == 200, "the server keeps serving"


def test_params_are_checked_and_a_busy_port_is_a_clear_start_error(viewer: MockIO) -> None:
    assert get_node_kind("viewer") is ViewerNode
    with pytest.raises(ParamError, match="max_fps must be > 0"):
        build_params(ViewerNode, {"max_fps": 0})
    with pytest.raises(ParamError, match="jpeg_quality"):
        build_params(ViewerNode, {"jpeg_quality": "101"})
    port = int(viewer.node.stats()["port"])
    with pytest.raises(OSError, match=f"cannot serve on 127.0.0.1:{port}.*port = 0"):
        MockIO(ViewerNode, "second", ViewerNode.Params(port=port))


# --- the page in headless Chromium -------------------------------------------------------------


def load_clip(count: int = 90) -> list[np.ndarray]:
    """RGB frames of a real video when the shared data is there, else a moving synthetic scene."""
    frames: list[np.ndarray] = []
    if VIDEO.is_file():
        capture = cv2.VideoCapture(str(VIDEO))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 60)
        while len(frames) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        capture.release()
    if not frames:
        ys, xs = np.mgrid[0:240, 0:320]
        for i in range(count):
            cx, cy = 160 + 90 * math.cos(i / 8), 120 + 60 * math.sin(i / 8)
            blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 800.0)
            frames.append(
                (np.stack([blob, 0.6 * blob, 0.3 + 0.2 * blob], -1) * 255).astype(np.uint8)
            )
    return frames


def events_between(previous: np.ndarray, frame: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """DVS-like events from the log-intensity change between two frames (threshold 0.15)."""
    grey = [
        np.log1p(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)) for f in (previous, frame)
    ]
    change = grey[1] - grey[0]
    ys, xs = np.nonzero(np.abs(change) > 0.15)
    t = np.sort(np.random.default_rng(t0).integers(t0, t1, xs.size))
    return make_events(t, xs, ys, change[ys, xs] > 0)


class Feed(threading.Thread):
    """Publishes frames, events, residuals, predictions and stats at 30 Hz, like a pipeline.

    ``label`` is the action the predictions report; the test changes it while the feed runs.
    All sends happen on this thread (a ZeroMQ socket belongs to one thread at a time).
    """

    LABELS = ("arm wrestling", "shaking hands", "high five", "clapping", "waving")
    STAGES: ClassVar[dict[str, float]] = {
        "camera": 1.1,
        "residual": 1.9,
        "snn": 5.4,
        "keyframe": 3.2,
        "fusion": 0.8,
    }

    def __init__(self, publisher: Publisher, frames: list[np.ndarray], label: str) -> None:
        super().__init__(daemon=True)
        self.publisher = publisher
        self.frames = frames
        self.label = label
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        start = time.monotonic()
        i = 0
        while not self.stopping.wait(max(0.0, start + i / 30 - time.monotonic())):
            t = now_us()
            frame = self.frames[i % len(self.frames)]
            previous = self.frames[(i - 1) % len(self.frames)]
            key = self.frames[(i - i % 4) % len(self.frames)]  # ReSpike: a key frame every 4
            height, width = frame.shape[:2]
            events = events_between(previous, frame, t - 33_333, t)
            residual = (frame.mean(-1) - key.mean(-1))[None].astype(np.float32) / 255
            self._send("frames", "frame", t, {"frame": frame})
            self._send(
                "events", "events", t, {"events": events}, {"width": width, "height": height}
            )
            self._send("residual", "residual", t, {"residual": residual})
            self._send("predictions", "prediction", t, {}, self._prediction(t, rng))
            if i % 10 == 0:  # the runtime sends stats every second; faster keeps the test short
                for node, busy in (("camera", 0.08), ("residual", 0.11), ("model", 0.46)):
                    stats = self._stats(node, busy, uptime=1 + i / 30, rng=rng)
                    self._send(f"{node}_stats", "stats", t, {}, stats)
            i += 1

    def _send(
        self,
        topic: str,
        kind: str,
        t: int,
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.publisher.send(Message(f"src/{topic}", kind, t, arrays, meta or {}))

    def _prediction(self, t: int, rng: np.random.Generator) -> dict[str, Any]:
        scores = rng.dirichlet(np.full(len(self.LABELS), 0.6)) * 0.35
        scores[self.LABELS.index(self.label)] += 0.65
        ranked = sorted(zip(self.LABELS, scores.tolist(), strict=True), key=lambda p: -p[1])
        stages = {name: round(ms * rng.uniform(0.9, 1.1), 2) for name, ms in self.STAGES.items()}
        return {
            "label": self.label,
            "topk": [[name, round(score, 3)] for name, score in ranked],
            "t": t - 13_000,
            "latency_ms": {"e2e": round(sum(stages.values()) + 0.6, 2), **stages},
            "energy_uj": round(41.7 * rng.uniform(0.95, 1.05), 1),
            "state": "stable",
        }

    @staticmethod
    def _stats(node: str, busy: float, uptime: float, rng: np.random.Generator) -> dict[str, Any]:
        """Stats as the runtime publishes them, for a node that handles 30 messages a second."""
        count = int(30 * uptime)
        hop = float(rng.uniform(0.2, 0.6))
        source = node == "camera"
        inputs = {"in": {"received": count, "dropped": 0, "gaps": 0, "invalid": {}}}
        return {
            "node": node,
            "kind": node,
            "uptime_s": uptime,
            "busy": busy,
            "inputs": {} if source else inputs,
            "outputs": {f"{node}/out": count},
            "hop_ms": {} if source else {"p50": round(hop, 2), "p99": round(3 * hop, 2)},
            "age_ms": {}
            if source
            else {"p50": round(4 + 6 * hop, 2), "p99": round(9 + 12 * hop, 2)},
            "errors": {},
            "extra": {},
        }


LABEL_JS = "document.getElementById('label').textContent"


def test_the_page_shows_live_predictions_in_headless_chromium(
    chromium: str, ipc_dir: Path, tmp_path: Path
) -> None:
    endpoint = f"ipc://{ipc_dir}/feed.sock"
    publisher = Publisher(endpoint, source="src")
    ports = (
        "frames",
        "events",
        "residual",
        "predictions",
        "camera_stats",
        "residual_stats",
        "model_stats",
    )
    wiring = Wiring(inputs={port: InputWire(endpoint, f"src/{port}") for port in ports})
    runner = NodeRunner(
        ViewerNode, "viewer", ViewerNode.Params(port=0, max_fps=15, title="respike demo"), wiring
    )
    node = runner.node
    assert isinstance(node, ViewerNode)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    feed = Feed(publisher, load_clip(), label="shaking hands")
    try:
        for port in ports:
            assert publisher.wait_for_subscribers(f"src/{port}", 1, timeout=10), f"{port} not wired"
        url = node.wait_until_serving(timeout=10)
        feed.start()
        with DevTools(chromium) as browser:
            page = browser.open(url)
            shown = browser.wait_for(
                page, f"{LABEL_JS} === 'shaking hands' && {LABEL_JS}", timeout=15
            )
            assert shown == "shaking hands", (
                f"the page never showed the first label; feed error: {feed.error!r}"
            )
            feed.label = "arm wrestling"
            changed = browser.wait_for(
                page, f"{LABEL_JS} === 'arm wrestling' && {LABEL_JS}", timeout=15
            )
            assert changed == "arm wrestling", "the displayed prediction must follow the pipeline"
            assert browser.wait_for(
                page,
                "['frame', 'events', 'residual'].every(k => document.querySelector(`#panel-${k} canvas`).width > 1)"
                " && [...document.querySelectorAll('#nodes tr')].filter("
                "r => r.cells[3].textContent === '30.0').length === 3",
                timeout=15,
            ), "the images and the stats table with rates are drawn"
            png = browser.screenshot(page)
        assert feed.error is None, feed.error
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, "the screenshot shows a page"
        (tmp_path / "viewer.png").write_bytes(png)
    finally:
        feed.stopping.set()
        if feed.is_alive():
            feed.join(timeout=10)
        runner.request_stop()
        thread.join(timeout=10)
        publisher.close()
    assert not thread.is_alive(), "the viewer stops when asked"
    assert node.stats()["clients"] == 0, "the browser's event stream ended with the server"


def test_a_holding_viewer_serves_after_its_input_ended_until_stopped() -> None:
    io = MockIO(ViewerNode, "viewer", ViewerNode.Params(port=0, hold=True))
    io.send("predictions", Message("m/predictions", "prediction", now_us(), meta={"label": "wave"}))
    finishing = threading.Thread(target=io.end, daemon=True)
    finishing.start()
    finishing.join(timeout=0.5)
    assert finishing.is_alive(), "with hold, the page stays up after the input ended"
    assert get(io, "/")[0] == 200
    io.node.stop_requested.set()  # what Ctrl-C does through the runtime
    finishing.join(timeout=10)
    assert not finishing.is_alive(), "a stop request ends the hold"
