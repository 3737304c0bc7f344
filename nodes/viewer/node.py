"""The `viewer` node: dispatches its inputs to the viewer's state and runs its HTTP server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from respike.events.images import rgb_image
from respike.nodes.base import Node, Output, param, register
from respike.nodes.viewer.server import ViewerServer, render_page
from respike.nodes.viewer.state import ViewerState
from respike.nodes.viewer.teach import Teacher
from respike.stream.messages import Message
from respike.stream.security import LOOPBACK_NAMES

log = logging.getLogger(__name__)


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
        teach: str = param(
            "", "a Teach panel on the page writes the taught checkpoint here (empty: no panel)"
        )
        teach_base: str = param(
            "actions-late", "the network the Teach panel teaches on (late fusion)"
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
        self._state = ViewerState(name, self.params)
        self._teacher: Teacher | None = None
        self._serving = threading.Event()
        self._server: ViewerServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        host, port = self.params.host, self.params.port
        page = render_page(self.params.title)
        if self.params.teach:
            self._teacher = Teacher(self.params.teach_base, Path(self.params.teach))
        try:
            self._server = ViewerServer((host, port), self._state, page, self._teacher)
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
            "frame": self._state.add_frame,
            "events": self._state.add_events,
            "residual": self._state.add_residual,
            "prediction": self._state.add_prediction,
            "stats": self._state.add_stats,
        }
        handler = handlers.get(message.kind)
        if handler is None:
            self._state.ignore()
            return
        handler(message)
        if self._teacher is not None and message.kind == "frame":
            self._teacher.add_frame(rgb_image(message.arrays["frame"]))
        elif self._teacher is not None and message.kind == "events":
            self._teacher.add_events(message.arrays["events"], self._state.sensor)

    def stats(self) -> dict[str, float]:
        return {
            "port": float(self._server.server_address[1] if self._server else 0),
            **self._state.stats(),
        }

    def finish(self) -> None:
        if self.params.hold and not self.stop_requested.is_set():
            log.info("%s: the input has ended; serving %s until stopped", self.name, self.url)
            while not self.stop_requested.wait(0.5):
                pass
        self._state.stop(timeout=1.0)
        if self._teacher is not None:
            self._teacher.stop()
        if self._thread is not None and self._thread.is_alive():
            assert self._server is not None
            self._server.shutdown()  # waits for serve_forever to return
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.server_close()
