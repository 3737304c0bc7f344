"""Helpers shared by several test modules (imported as `helpers`; pytest puts tests/ on the path)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from respike.recorders.video import read_frames


def receive_count(subscriber: Any, count: int, timeout: float = 10.0) -> list[Any]:
    """Messages of a :class:`~respike.stream.sockets.Subscriber` until ``count`` came or
    ``timeout`` seconds passed (then fewer: the test says what it expected)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += subscriber.receive(timeout=0.05)
    return got


def read_clip(path: Path, n_frames: int) -> list[np.ndarray]:
    """The first ``n_frames`` BGR uint8 frames of a video file."""
    return read_frames(path, n_frames)[0]


def read_json_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> list[dict]:
    """Up to ``count`` JSON lines from a running process's stdout, waiting at most ``timeout``."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    records: list[dict] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        chunk = process.stdout.read() or b""
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        records += [json.loads(line) for line in lines if line]
        if not chunk:
            time.sleep(0.05)
    return records


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

    The pipe needs no port and no WebSocket client: Chromium reads JSON commands, each ended by
    a NUL byte, on its fd 3 and answers on fd 4.
    """

    def __init__(self, binary: str, width: int = 1280, height: int = 800) -> None:
        self._profile = tempfile.mkdtemp(prefix="rs-chromium-")
        self._log = Path(self._profile) / "chromium.log"
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-proxy-server",
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # bash (dash cannot name fds above 9) moves the pipe ends to fds 3 and 4 for Chromium
        script = f'exec 3<&{commands_read} 4>&{replies_write} {commands_read}<&- {replies_write}>&- && exec "$@"'
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", script, "bash", binary, *flags],
                pass_fds=(commands_read, replies_write),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._id = 0
        self.size = (width, height)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self._id += 1
        command: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        data = json.dumps(command).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._commands, data) :]
        except BrokenPipeError:
            raise RuntimeError(
                f"Chromium is gone; cannot send {method}{self._log_tail()}"
            ) from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                raise TimeoutError(f"Chromium did not answer {method}{self._log_tail()}")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(
                    f"Chromium exited (code {self.process.poll()}) during {method}{self._log_tail()}"
                )
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _log_tail(self) -> str:
        lines = self._log.read_text(errors="replace").splitlines()[-15:]
        return "; Chromium said:\n" + "\n".join(lines) if lines else ""

    def open(self, url: str) -> str:
        """Open ``url`` in a new page; returns the session for :meth:`evaluate` and friends."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        width, height = self.size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        self.call("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float) -> Any:
        """Poll ``expression`` in the page until it is truthy; its last value otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(session, expression)
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.1)

    def screenshot(self, session: str) -> bytes:
        return base64.b64decode(
            self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
        )

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
            self.process.wait(timeout=5)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):  # renderers left behind, if any
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> DevTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
