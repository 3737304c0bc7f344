"""Compile or load from numba's cache every kernel of this package, so no frame pays for it.

A node calls `warm_up()` once at start. Numba compiles one version per argument type, so the
tiny inputs here cover what a node meets: uint8 and float32 frames, 1 and 3 channels, writable
and read-only arrays (buffers decoded from the wire are read-only), every option of the kernels.
"""

from __future__ import annotations

import time

import numpy as np

from respike.events.binning import EventFrames
from respike.events.emulator import DvsEmulator
from respike.events.residual import ResidualFrames
from respike.events.types import make_events


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames: list[np.ndarray] = []
    for shape in ((6, 10, 3), (6, 10)):
        grey = rng.integers(0, 256, shape, dtype=np.uint8)
        for frame in (grey, (grey / 255.0).astype(np.float32)):
            frames.append(frame)
            read_only = frame.copy()
            read_only.setflags(write=False)
            frames.append(read_only)
    return frames


def warm_up() -> float:
    """Run every kernel once on tiny inputs; returns the seconds it took.

    The first call in a fresh environment compiles (tens of seconds) and fills numba's cache;
    later processes load from the cache (about a second).
    """
    start = time.perf_counter()
    frames = _frames()
    residuals = [
        ResidualFrames(),
        ResidualFrames(size=(4, 3)),
        ResidualFrames(color="rgb"),
        ResidualFrames(color="rgb", size=(4, 3)),
    ]
    emulators = [
        DvsEmulator(),
        DvsEmulator(threshold_mismatch=0.05, refractory_us=100, leak_rate_hz=1.0),
        DvsEmulator(shot_noise_rate_hz=100.0),
    ]
    for frame in frames:
        for settings in residuals:
            if settings.color == "rgb" and frame.ndim == 2:
                continue
            state = None
            for step in range(2):
                _, state = settings(frame if step == 0 else frame[::-1].copy(), state)
        for emulator in emulators:
            _, dvs_state = emulator(frame, 0)
            emulator(np.ascontiguousarray(frame[::-1]), 1000, dvs_state)
    events = make_events([0, 5, 9], [1, 2, 3], [0, 1, 2], [0, 1, 1])
    read_only = events.copy()
    read_only.setflags(write=False)
    for dtype in ("float32", "int32"):
        binning = EventFrames(sensor_size=(10, 6), n_time_bins=2, size=(5, 3), dtype=dtype)
        binning(events)
        binning(read_only)
    return time.perf_counter() - start
