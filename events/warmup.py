"""Compile or load from numba's cache the kernels a node will run, so no frame pays for it.

Numba compiles one version per argument type (dtype, dimensions, writable or read-only), and a
cold cache costs seconds per version, so a node warms up only what its settings meet:
``warm_up(ResidualFrames(...), DvsEmulator(...))`` runs those steps on tiny read-only uint8 RGB
frames (what the wire delivers); ``warm_up(EventFrames(...))`` bins a read-only packet. Frames of
another type still work: their version compiles on first use. ``warm_up()`` with no steps
compiles every kernel for every input type (uint8 and float32 frames, 1 and 3 channels, writable
and read-only, every option), for tests and benchmarks.

When compiling takes longer than a second (an empty cache: the first start after installing),
a log line says so, since a first start would otherwise sit silent for several seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TypeAlias

import numpy as np

from respike.events.binning import EventFrames
from respike.events.emulator import DvsEmulator
from respike.events.residual import ResidualFrames
from respike.events.types import EventArray, make_events

log = logging.getLogger(__name__)

Step: TypeAlias = ResidualFrames | DvsEmulator | EventFrames


def warm_up(*steps: Step) -> float:
    """Run ``steps`` (or, with none, every kernel) once on tiny inputs; returns the seconds taken.

    A cold cache compiles (seconds per kernel version, once) and fills numba's cache; later
    processes load from it (a few tenths of a second).
    """
    done = threading.Event()
    watcher = threading.Thread(target=_note_compiling, args=(done,), daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        for step, frame in _calls(steps) if steps else _every_call():
            _run(step, frame)
    finally:
        done.set()
    return time.perf_counter() - start


def _note_compiling(done: threading.Event) -> None:
    """Log once if a kernel missed numba's cache: the start then takes seconds, not tenths."""
    while not done.wait(0.25):
        if _compiling():
            log.info(
                "compiling numba kernels (the first start after installing; cached afterwards)"
            )
            return


def _compiling() -> bool:
    from numba.core.dispatcher import Dispatcher

    from respike.events import binning, dvs_step, emulator, frames, key_sort, residual

    return any(
        isinstance(value, Dispatcher) and value.stats.cache_misses
        for module in (binning, dvs_step, emulator, frames, key_sort, residual)
        for value in vars(module).values()
    )


def _calls(steps: tuple[Step, ...]) -> Iterator[tuple[Step, np.ndarray | None]]:
    """Each step with the input a node meets: a read-only uint8 RGB frame (packets for binning)."""
    for step in steps:
        if isinstance(step, EventFrames):
            yield step, None
            continue
        size = step.size if isinstance(step, ResidualFrames) else None
        width, height = (2 * size[0], 2 * size[1]) if size else (10, 6)  # resized: area kernel
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame.setflags(write=False)
        yield step, frame


def _every_call() -> Iterator[tuple[Step, np.ndarray | None]]:
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
        DvsEmulator(threads=2),
    ]
    for frame in _frames():
        for settings in residuals:
            if not (settings.color == "rgb" and frame.ndim == 2):
                yield settings, frame
        for emulator in emulators:
            yield emulator, frame
    for dtype in ("float32", "int32"):
        yield EventFrames(sensor_size=(10, 6), n_time_bins=2, size=(5, 3), dtype=dtype), None


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


def _packets() -> list[EventArray]:
    events = make_events([0, 5, 9], [0, 1, 1], [0, 1, 0], [0, 1, 1])  # inside any 2x2 sensor
    read_only = events.copy()
    read_only.setflags(write=False)
    return [events, read_only]


def _run(step: Step, frame: np.ndarray | None) -> None:
    """Two calls of ``step`` (the second one with state, on a different frame)."""
    if isinstance(step, EventFrames):
        for packet in _packets():
            step(packet)
        return
    assert frame is not None
    second = np.ascontiguousarray(frame[::-1])
    second.setflags(write=frame.flags.writeable)
    if isinstance(step, ResidualFrames):
        _, residual_state = step(frame)
        step(second, residual_state)
    else:
        _, dvs_state = step(frame, 0)
        step(second, 1000, dvs_state)
