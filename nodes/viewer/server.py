"""The viewer's HTTP server: the page, its live event stream, the state and the images.

Stdlib :class:`http.server.ThreadingHTTPServer` (no extra dependency), run by the node on a
background thread:

- ``/``: the page (``page.html``, inline CSS and JS), updated live without reloading;
- ``/stream``: Server-Sent Events, one JSON state per update, at most ``max_fps`` per second;
- ``/state.json``: the same state once, for tests and other programs;
- ``/frame.jpg``, ``/events.jpg``, ``/residual.jpg``: the newest images as JPEG;
- ``/teach`` (GET: the Teach panel's state) and ``POST /teach/record`` (``{"label", "count",
  "seconds", "countdown"}``), ``/teach/remove`` (``{"label"}``), ``/teach/fit``: the Teach
  panel (:mod:`respike.nodes.viewer.teach`), when the viewer has one.

The page fetches an image only after the state says it changed, and one at a time per panel,
so a slow browser sees fewer updates instead of a growing backlog.
"""

from __future__ import annotations

import html
import json
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from respike.nodes.viewer.images import IMAGE_KINDS
from respike.nodes.viewer.state import ViewerState
from respike.nodes.viewer.teach import Teacher

log = logging.getLogger(__name__)


def render_page(title: str) -> bytes:
    """The page's HTML with ``title`` filled in; ``page.html`` is package data, so an install
    carries it."""
    template = resources.files("respike.nodes.viewer").joinpath("page.html")
    return template.read_text(encoding="utf-8").replace("{{title}}", html.escape(title)).encode()


def stream_events(
    state: ViewerState, write: Callable[[bytes], None], keepalive_s: float = 15.0
) -> None:
    """Write Server-Sent Events to ``write`` until the viewer stops or the client leaves.

    One ``data:`` line of state JSON per change, at most ``max_fps`` a second (changes in
    between are merged), and a comment line every ``keepalive_s`` so proxies keep the
    connection open.
    """
    sent_version = -1
    with state.connected():
        while True:
            version = state.wait_for_change(sent_version, keepalive_s)
            if version is None:
                return
            if version == sent_version:
                write(b": keepalive\n\n")
                continue
            write(b"data: " + state.snapshot_json() + b"\n\n")
            sent_version = version
            if state.wait_for_stop(state.interval_s):
                return


class ViewerServer(ThreadingHTTPServer):
    """The HTTP server of one viewer; request threads are daemons so a stuck client never
    holds up shutdown."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        state: ViewerState,
        page: bytes,
        teacher: Teacher | None = None,
    ) -> None:
        self.state = state
        self.page = page
        self.teacher = teacher
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
                "%s: %s failed (further ones are not logged)", self.state.name, path, exc_info=exc
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("viewer: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Routes the page, the event stream, the state and the images to the viewer's state."""

    server: ViewerServer
    timeout = 30
    """Seconds a socket read or write may block (a browser that stopped reading)."""

    def do_GET(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._reply(self.server.page, "text/html; charset=utf-8")
            elif path == "/state.json":
                self._reply(state.snapshot_json(), "application/json")
            elif path == "/teach":
                teach = self.server.teacher.snapshot() if self.server.teacher else None
                self._reply(json.dumps({"teach": teach}).encode(), "application/json")
            elif path == "/stream":
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                stream_events(state, self._write)
            elif path.endswith(".jpg") and path[1:-4] in IMAGE_KINDS:
                jpeg = state.jpeg(path[1:-4])
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

    def do_POST(self) -> None:
        """The Teach panel's commands: JSON in, ``{"ok": ...}`` or ``{"error": ...}`` out."""
        path = urlsplit(self.path).path
        teacher = self.server.teacher
        if teacher is None or not path.startswith("/teach/"):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            command = path.removeprefix("/teach/")
            if command == "record":
                teacher.record(
                    str(body.get("label", "")),
                    int(body.get("count", 5)),
                    float(body.get("seconds", 2.0)),
                    float(body.get("countdown", 3.0)),
                )
            elif command == "remove":
                teacher.remove(str(body.get("label", "")))
            elif command == "fit":
                teacher.fit()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            self._reply(json.dumps({"ok": teacher.snapshot()}).encode(), "application/json")
        except (ValueError, TypeError) as exc:
            body_out = json.dumps({"error": str(exc)}).encode()
            self.send_response(HTTPStatus.BAD_REQUEST)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body_out)))
            self.end_headers()
            self.wfile.write(body_out)

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
