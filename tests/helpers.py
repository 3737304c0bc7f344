"""Helpers shared by several test modules (imported as `helpers`; pytest puts tests/ on the path)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from respike.recorders.video import read_frames


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
