"""`camera`: OpenCV capture from a device index, a video file or a URL, as timestamped RGB frames.

A camera before a still scene can go quiet (``still_below``): a frame whose grey 8x8-pixel
block means all stay within ``still_below`` of the last frame that changed is still, and after
``still_after`` still frames in a row the camera sends only one every ``still_heartbeat``
seconds until the scene moves. Everything downstream (residuals, SNN steps, key frames, the
messages between them) then rests with it, which an idle model node alone cannot do: its inputs
still arrive at the frame rate. Like a DVS pixel, the comparison is with the last frame that
changed, not the previous one, so a slow drift adds up until it is sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from respike.nodes.base import Node, Pacer, param, register
from respike.stream import kinds
from respike.stream.messages import now_us

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class CaptureError(RuntimeError):
    """A camera, file or stream that cannot be opened or read."""


def source_kind(source: str) -> str:
    """``device`` for an integer index, ``url`` for scheme://…, otherwise ``file``."""
    if source.isdigit():
        return "device"
    if "://" in source:
        return "url"
    return "file"


def open_capture(
    source: str, width: int = 0, height: int = 0, fps: float = 0.0, decode_threads: int = 0
) -> Any:
    """Open ``source`` with OpenCV and apply the requested mode; raise :class:`CaptureError`.

    ``decode_threads`` sets FFmpeg's decoder threads for files and streams (0: its default,
    one per core); devices deliver decoded frames and ignore it.
    """
    import cv2

    from respike.recorders.video import quiet_opencv

    kind = source_kind(source)
    if kind == "file" and not Path(source).is_file():
        raise CaptureError(f"video file {source!r} does not exist")
    with quiet_opencv():
        if kind == "device":
            capture = cv2.VideoCapture(int(source))
        elif decode_threads:
            capture = cv2.VideoCapture(
                source, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, decode_threads]
            )
        else:
            capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = {"device": "camera device", "url": "video stream", "file": "video file"}[kind]
        raise CaptureError(
            f"cannot open {what} {source!r} (no such device, unreachable or unreadable)"
        )
    if kind == "device":
        if width and height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            capture.set(cv2.CAP_PROP_FPS, fps)
    return capture


@register("camera")
class CameraNode(Node):
    """Publishes RGB frames (H, W, 3) uint8 on ``frames``, stamped with their capture time in µs.

    Files are paced by their own frame rate times ``speed`` (0 = as fast as the consumers take
    them: use lossless delivery), loop if asked, and send ``end`` at their end. A live camera or
    stream that stops delivering is reopened with a backoff up to 5 s instead of ending.
    """

    @dataclass(frozen=True)
    class Params:
        source: str = param("0", "device index, video file or URL (rtsp://, http://)")
        width: int = param(0, "output width in pixels; 0 = the source's")
        height: int = param(0, "output height in pixels; 0 = the source's")
        fps: float = param(
            0.0, "frame rate: asked of a device, or the pace of a file; 0 = the source's"
        )
        speed: float = param(
            1.0, "files: playback speed factor; 0 = as fast as consumers take frames"
        )
        loop: bool = param(False, "files: start again at the end instead of sending `end`")
        still_below: float = param(
            -1.0,
            "a frame whose grey 8x8 block means stay within this (0-1 units) of the last frame "
            "that changed is still; negative: send every frame",
        )
        still_after: int = param(
            12,
            "still frames in a row sent before the camera goes quiet (a model node's "
            "idle_after of 8 plus a segment of 4: it holds its prediction by then)",
        )
        still_heartbeat: float = param(1.0, "seconds between the frames sent while quiet")
        threads: int = param(
            1,
            "OpenCV's threads in this node, and FFmpeg's decoding a file or stream (0: one per "
            "core); one decodes 1080p MPEG-4 in 3.4 ms a frame here, and more cost CPU waking "
            "each other (4K at 30 fps may need more)",
        )

        def __post_init__(self) -> None:
            if self.width < 0 or self.height < 0 or (self.width == 0) != (self.height == 0):
                raise ValueError("width and height must both be 0 (source size) or both positive")
            if self.fps < 0 or self.speed < 0:
                raise ValueError("fps and speed must be ≥ 0")
            if self.still_below >= 1:
                raise ValueError(f"still_below is {self.still_below}; expected < 1 (0-1 units)")
            if self.still_after < 0 or self.still_heartbeat <= 0:
                raise ValueError("still_after must be ≥ 0 and still_heartbeat > 0")
            if self.threads < 0:
                raise ValueError(f"threads is {self.threads}; expected ≥ 0")

    outputs = ("frames",)

    def start(self) -> None:
        import cv2

        if self.params.threads:  # idle workers of OpenCV's pool spin between frames
            cv2.setNumThreads(self.params.threads)
        self._kind = source_kind(self.params.source)
        self._capture = self._open()
        self._index = 0
        self._failures = 0
        p = self.params
        self._still = StillFilter(p.still_below, p.still_after, p.still_heartbeat)
        self._reopen = False
        self._file_fps = self.params.fps or self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        self._period = self._frame_period()

    def _open(self) -> Any:
        p = self.params
        return open_capture(p.source, p.width, p.height, p.fps, p.threads)

    def _frame_period(self) -> float:
        if self._kind != "file" or self.params.speed == 0:
            return 0.0  # devices and streams deliver at their own pace; read() blocks
        return 1.0 / (self._file_fps * self.params.speed)

    def produce(self) -> float | None:
        if self._reopen:
            self._reopen = False
            try:
                self._capture = self._open()
            except CaptureError as exc:
                log.warning("%s: %s", self.name, exc)
                return self._on_read_failure()
        if self._index == 0:
            self._pacer = Pacer()  # the schedule starts with the first frame, after wiring
        ok, frame = self._capture.read()
        if not ok:
            return self._on_read_failure()
        self._failures = 0
        if self._still.send(frame, self._clock()):
            meta = kinds.Frame(index=self._index, source=self.params.source)
            self.publish("frames", meta, now_us(), {"frame": self._to_rgb(frame)})
        self._index += 1
        return self._pacer.delay_until(self._index * self._period)

    def _clock(self) -> float:
        """Seconds on the source's clock: a file's own frame times (whatever its playback
        speed), a device's or stream's wall time."""
        if self._kind == "file":
            return self._index / self._file_fps
        return time.monotonic()

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if self.params.width and frame.shape[:2] != (self.params.height, self.params.width):
            frame = cv2.resize(
                frame, (self.params.width, self.params.height), interpolation=cv2.INTER_AREA
            )
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _on_read_failure(self) -> float | None:
        import cv2

        if self._kind == "file":
            if self._index == 0:
                raise CaptureError(f"video file {self.params.source!r} holds no readable frame")
            if not self.params.loop:
                return None
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return 0.0
        self._failures += 1
        backoff = min(MAX_BACKOFF_S, 0.1 * 2**self._failures)
        log.warning(
            "%s: %s stopped delivering; reopening in %.1f s", self.name, self.params.source, backoff
        )
        self._capture.release()
        self._reopen = True
        return backoff

    def stats(self) -> dict[str, float]:
        return {"frames": float(self._index), "still_frames_held": float(self._still.held)}

    def finish(self) -> None:
        self._capture.release()


class StillFilter:
    """Which frames a camera before a still scene sends (see the module docstring).

    ``below`` < 0 sends every frame. Frames are compared as grey 8x8-pixel block means, where
    sensor noise and codec artefacts average out (2-3 grey levels on the clips measured, against
    12-24 where an edge moves); a frame of another size always changes.
    """

    BLOCK = 8

    def __init__(self, below: float, after: int, heartbeat_s: float) -> None:
        self._below = below * 255
        self._after = after
        self._heartbeat_s = heartbeat_s
        self._reference: np.ndarray | None = None
        self._still_run = 0
        self._last_sent = 0.0
        self.held = 0
        """Frames not sent."""

    def send(self, frame: np.ndarray, now: float) -> bool:
        """Whether to send ``frame`` (as decoded, any channel order), read at ``now`` seconds."""
        if self._below < 0:
            return True
        import cv2

        height, width = frame.shape[:2]
        size = (max(1, width // self.BLOCK), max(1, height // self.BLOCK))
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        blocks = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)  # half the CPU in grey
        reference = self._reference
        if (
            reference is None
            or reference.shape != blocks.shape
            or cv2.absdiff(blocks, reference).max() > self._below
        ):
            self._reference, self._still_run = blocks, 0
        else:
            self._still_run += 1
            quiet = self._still_run > self._after
            if quiet and now - self._last_sent < self._heartbeat_s:
                self.held += 1
                return False
        self._last_sent = now
        return True
