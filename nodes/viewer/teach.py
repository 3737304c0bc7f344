"""The viewer's Teach panel: record examples from what the viewer shows, fit, write a checkpoint.

With the viewer's ``teach`` parameter set to a path, the page gets a Teach panel. Recording an
action (or ``background``) waits out a countdown, then keeps what the viewer receives for
``count`` windows of ``seconds`` each: camera frames for a base that takes residuals (windows
of wall-clock time), event packets for a base that takes events (windows of the events' own
time, so a replay at any speed records the same examples). Every finished window is run
through the base network (:func:`respike.models.teach.featurize`, on the live path's kernels)
on a worker thread. Fit
writes the taught checkpoint to the path (:func:`respike.models.teach.teach`); a model node
watching that path (its ``watch`` parameter, set by ``respike demo --teach``) swaps it in.
Teaching an existing taught checkpoint continues from its examples.

Torch is imported on the worker thread at the first recording, so a viewer without teaching
stays light.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.events.types import concat_events

log = logging.getLogger(__name__)


@dataclass
class _Recording:
    label: str
    count: int
    seconds: float
    starts_at: float
    kept: list[np.ndarray] = field(default_factory=list)
    """Frames, or event packets, of the window being recorded."""
    window_start: float | None = None
    """When the window began: monotonic seconds for frames, the first event's µs for events."""
    done: int = 0


@dataclass(frozen=True)
class _Window:
    """A recorded window waiting to be featurized (``label`` empty: the fit marker)."""

    label: str
    frames: npt.NDArray[np.uint8] | None = None
    events: np.ndarray | None = None
    sensor: tuple[int, int] = (0, 0)


class Teacher:
    """The Teach panel's state and work; methods are called from the node and HTTP threads."""

    def __init__(self, base: str, out: Path) -> None:
        self.base_name = base
        self.out = out
        self._lock = threading.Lock()
        self._recording: _Recording | None = None
        self._pending: list[_Window] = []
        self._work = threading.Condition(self._lock)
        self._examples: list[Any] = []
        self._classes: list[str] = []
        self._busy = ""
        self.message = f"teach on {base}; the result is written to {out}"
        self._base: Any = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="viewer-teach", daemon=True)
        self._thread.start()

    def record(
        self, label: str, count: int = 5, seconds: float = 2.0, countdown: float = 3.0
    ) -> None:
        """Start recording ``count`` windows of ``label`` after ``countdown`` seconds."""
        from respike.models.teach import BACKGROUND_NAMES

        label = label.strip()
        if not label:
            raise ValueError("name the action to record (or `background`)")
        if not (1 <= count <= 50 and 0.2 <= seconds <= 10 and 0 <= countdown <= 30):
            raise ValueError("expected 1-50 examples of 0.2-10 s after a 0-30 s countdown")
        with self._lock:
            if self._recording is not None:
                raise ValueError(f"already recording {self._recording.label!r}")
            taught = {e.label for e in self._examples} - BACKGROUND_NAMES
            if label in self._classes and label in taught:
                raise ValueError(f"{label!r} is already taught; remove it to record it again")
            self._recording = _Recording(label, count, seconds, time.monotonic() + countdown)
            self.message = f"recording {count} x {seconds:g} s of {label!r} in {countdown:g} s"

    def add_frame(self, frame: np.ndarray) -> None:
        """A frame the viewer received (RGB); kept while a recording window is open."""
        now = time.monotonic()
        with self._lock:
            rec = self._open_window(now, now)
            if rec is None:
                return
            rec.kept.append(frame)
            if now - (rec.window_start or now) >= rec.seconds:
                self._close_window(rec, _Window(rec.label, frames=np.stack(rec.kept)))

    def add_events(self, events: np.ndarray, sensor: tuple[int, int]) -> None:
        """An event packet the viewer received (``EVENT_DTYPE``, sensor ``(width, height)``);
        kept while a recording window is open, which closes after ``seconds`` of event time."""
        if events.size == 0:
            return
        with self._lock:
            rec = self._open_window(time.monotonic(), float(events["t"][0]))
            if rec is None:
                return
            rec.kept.append(events)
            start = rec.window_start or 0.0
            if float(events["t"][-1]) - start >= rec.seconds * 1e6:
                window = _Window(rec.label, events=concat_events(rec.kept), sensor=sensor)
                self._close_window(rec, window)

    def _open_window(self, now: float, start: float) -> _Recording | None:
        """The recording to keep input for, its window started at ``start`` if new (the
        caller holds the lock); ``None`` before the countdown ends or when not recording."""
        rec = self._recording
        if rec is None or now < rec.starts_at:
            return None
        if rec.window_start is None:
            rec.window_start = start
        return rec

    def _close_window(self, rec: _Recording, window: _Window) -> None:
        """Hand ``window`` to the worker; end the recording after its last (lock held)."""
        self._pending.append(window)
        rec.kept, rec.window_start = [], None
        rec.done += 1
        if rec.done == rec.count:
            self._recording = None
            self.message = f"recorded {rec.count} examples of {rec.label!r}"
        self._work.notify()

    def remove(self, label: str) -> None:
        """Forget the examples of ``label``."""
        with self._lock:
            before = len(self._examples)
            self._examples = [e for e in self._examples if e.label != label]
            if len(self._examples) == before:
                raise ValueError(f"no examples of {label!r}")
            self.message = f"removed {label!r}; fit to update the model"

    def fit(self) -> None:
        """Fit on the recorded examples and write the checkpoint (on the worker thread)."""
        with self._lock:
            if self._recording is not None or self._pending:
                raise ValueError("wait until the recording has been processed")
            self._pending.append(_Window(""))  # the fit marker
            self._busy = "fitting"
            self._work.notify()

    def snapshot(self) -> dict[str, Any]:
        """What the panel shows."""
        now = time.monotonic()
        with self._lock:
            rec = self._recording
            recording = None
            if rec is not None:
                recording = {
                    "label": rec.label,
                    "countdown": max(0.0, round(rec.starts_at - now, 1)),
                    "done": rec.done,
                    "count": rec.count,
                }
            return {
                "base": self.base_name,
                "out": str(self.out),
                "examples": dict(Counter(e.label for e in self._examples)),
                "classes": list(self._classes),
                "recording": recording,
                "busy": self._busy or ("processing" if self._pending else ""),
                "message": self.message,
            }

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._work.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopped:
                    self._work.wait()
                if self._stopped:
                    return
                window = self._pending[0]
                label = window.label
            try:
                if label:
                    example = self._featurize(window)
                    with self._lock:
                        self._examples.append(example)
                else:
                    self._fit()
            except Exception as exc:  # shown on the page; the viewer keeps running
                log.warning("viewer: teaching failed: %s", exc)
                with self._lock:
                    self.message = f"error: {exc}"
            finally:
                with self._lock:
                    self._pending.pop(0)
                    if not label:
                        self._busy = ""

    def _load(self) -> Any:
        if self._base is None:
            import torch

            from respike.models.checkpoint import load_checkpoint, resolve_checkpoint
            from respike.models.teach import stored_examples, teachable

            torch.set_num_threads(1)
            base = load_checkpoint(resolve_checkpoint(self.base_name))
            self._base = (base, teachable(base.model))
            stored = stored_examples(base)
            with self._lock:
                self._examples = stored + self._examples
                self._classes = list(base.class_names) if stored else []
        return self._base

    def _featurize(self, window: _Window) -> Any:
        import torch

        from respike.models.datasets.encoders import EventEncoder, FrameEncoder, no_keyframes
        from respike.models.teach import Example, featurize

        base, network = self._load()
        spec = base.input_spec
        k = spec.keyframe_interval
        takes = "events" if spec.snn_input == "events" else "frames"
        got = "events" if window.events is not None else "frames"
        if takes != got:
            raise ValueError(
                f"{self.base_name} takes {takes} but the viewer received {got}; teach a base "
                f"for this source ({'gestures-dvs' if got == 'events' else 'actions-late'})"
            )
        source = f"viewer {time.strftime('%H:%M:%S')}"
        if window.events is not None:
            t = window.events["t"]
            steps = int(t[-1] - t[0]) // spec.time_bin_us // k * k
            if steps < k:
                raise ValueError(f"the window of {window.label!r} holds under {k} time bins")
            inputs = EventEncoder(spec).encode(window.events, window.sensor, int(t[0]), steps)
            features = featurize(network, no_keyframes(steps // k), torch.from_numpy(inputs))
            return Example(window.label, source, features)
        frames = window.frames
        if frames is None:
            raise ValueError(f"the window of {window.label!r} holds neither frames nor events")
        usable = len(frames) // k * k
        if usable < k:
            raise ValueError(
                f"only {len(frames)} frames in a window of {window.label!r}; is the source running?"
            )
        keyframes, steps_in = FrameEncoder(spec).encode(frames[:usable])
        features = featurize(network, torch.from_numpy(keyframes), torch.from_numpy(steps_in))
        return Example(window.label, source, features)

    def _fit(self) -> None:
        from respike.models.checkpoint import read_checkpoint_info
        from respike.models.teach import teach

        base, _ = self._load()
        if self.out.exists() and "teach" not in read_checkpoint_info(self.out).extra:
            raise ValueError(f"{self.out} exists and is not a taught checkpoint; not replacing it")
        with self._lock:
            examples = list(self._examples)
        taught = teach(base, examples)
        path = taught.save(self.out)
        with self._lock:
            self._classes = list(taught.class_names)
            self.message = (
                f"taught {', '.join(taught.class_names)} in {taught.fit_seconds:.2f} s; "
                f"wrote {path}"
            )
        log.info("viewer: %s", self.message)
