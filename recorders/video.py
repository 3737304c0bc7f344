"""Video files as event streams: every frame through the DVS emulator, timed by the file's fps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2

from respike.events.emulator import DvsEmulator
from respike.events.types import EventArray


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
