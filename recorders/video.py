"""Video files through OpenCV: reading frames, telling videos from other files, and video files
as event streams (every frame through the DVS emulator, timed by the file's fps)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from respike.events.types import EventArray

if TYPE_CHECKING:
    from respike.events.emulator import DvsEmulator


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's and FFmpeg's own messages while OpenCV opens a source.

    A source that cannot be opened gets our one-line error; without this, OpenCV logs
    ``[ WARN:0@0.05] … can't open camera by index`` and FFmpeg writes ``[rawvideo @ 0x…]
    Invalid pixel format`` straight to file descriptor 2, past Python and OpenCV's log level.
    """
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        cv2.utils.logging.setLogLevel(level)


def is_video(path: Path) -> bool:
    """Whether OpenCV reads at least one frame from ``path`` (quietly: it may be anything)."""
    with quiet_opencv():
        capture = cv2.VideoCapture(str(path))
        try:
            return bool(capture.isOpened() and capture.read()[0])
        finally:
            capture.release()


def frame_count(path: Path | str) -> tuple[int, float]:
    """A video's frame count (as its container says) and frame rate; OSError when OpenCV
    cannot open it."""
    with quiet_opencv():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open this video")
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS) or 30.0
    finally:
        capture.release()


def read_frames(
    path: Path | str, count: int | None = None, *, start_s: float = 0.0
) -> tuple[list[np.ndarray], float]:
    """Up to ``count`` BGR frames of a video (all of them when None) from ``start_s`` seconds
    on, and its frame rate; OSError when OpenCV cannot open it or it holds no frame there."""
    with quiet_opencv():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open this video")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        if start_s > 0:
            capture.set(cv2.CAP_PROP_POS_MSEC, start_s * 1000.0)
        frames: list[np.ndarray] = []
        while count is None or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise OSError(f"{path}: no frame could be decoded")
    return frames, float(fps)


class VideoEvents:
    """Emulated DVS events of a video: ``packets()`` yields one packet per frame interval.

    Frames are read with OpenCV (BGR), optionally resized to ``size`` = (width, height) with area
    interpolation, and stamped ``i / fps`` seconds (µs) from the start, so the events follow the
    video's own clock.
    """

    def __init__(
        self,
        path: Path | str,
        emulator: DvsEmulator | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        from respike.events.emulator import DvsEmulator

        self.path = Path(path)
        self.emulator = emulator or DvsEmulator(channel_order="bgr")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ValueError(f"{self.path}: OpenCV cannot open this video")
        width, height = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        capture.release()
        self.size = size
        self.sensor_size = size or (width, height)

    def packets(self) -> Iterator[EventArray]:
        capture = cv2.VideoCapture(str(self.path))
        state = None
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    if index == 0:
                        raise ValueError(f"{self.path}: no frame could be read")
                    return
                if self.size is not None and (frame.shape[1], frame.shape[0]) != self.size:
                    frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
                events, state = self.emulator(frame, round(index * 1e6 / self.fps), state)
                index += 1
                yield events
        finally:
            capture.release()
