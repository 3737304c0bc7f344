"""The viewer's Teach panel: record examples from the frames it shows, fit, write a checkpoint.

With the viewer's ``teach`` parameter set to a path, the page gets a Teach panel. Recording an
action (or ``background``) waits out a countdown, then keeps the frames the viewer receives for
``count`` windows of ``seconds`` each; every finished window is run through the base network
(:func:`respike.models.teach.featurize`, on the live path's kernels) on a worker thread. Fit
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

log = logging.getLogger(__name__)


@dataclass
class _Recording:
    label: str
    count: int
    seconds: float
    starts_at: float
    frames: list[np.ndarray] = field(default_factory=list)
    window_start: float | None = None
    done: int = 0


class Teacher:
    """The Teach panel's state and work; methods are called from the node and HTTP threads."""

    def __init__(self, base: str, out: Path) -> None:
        self.base_name = base
        self.out = out
        self._lock = threading.Lock()
        self._recording: _Recording | None = None
        self._pending: list[tuple[str, np.ndarray]] = []
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
        if not (1 <= count <= 50 and 0.5 <= seconds <= 10 and 0 <= countdown <= 30):
            raise ValueError("expected 1-50 examples of 0.5-10 s after a 0-30 s countdown")
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
            rec = self._recording
            if rec is None or now < rec.starts_at:
                return
            if rec.window_start is None:
                rec.window_start = now
            rec.frames.append(frame)
            if now - rec.window_start >= rec.seconds:
                self._pending.append((rec.label, np.stack(rec.frames)))
                rec.frames, rec.window_start = [], None
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
            self._pending.append(("", np.empty(0)))  # the fit marker
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
                label, frames = self._pending[0]
            try:
                if label:
                    example = self._featurize(label, frames)
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
            if base.input_spec.snn_input != "residual":
                raise ValueError(
                    f"{self.base_name} takes events; the Teach panel records camera frames "
                    "(use an RGB base such as actions)"
                )
            self._base = (base, teachable(base.model))
            stored = stored_examples(base)
            with self._lock:
                self._examples = stored + self._examples
                self._classes = list(base.class_names) if stored else []
        return self._base

    def _featurize(self, label: str, frames: np.ndarray) -> Any:
        import torch

        from respike.models.datasets.encoders import FrameEncoder
        from respike.models.teach import Example, featurize

        base, network = self._load()
        spec = base.input_spec
        k = spec.keyframe_interval
        usable = len(frames) // k * k
        if usable < k:
            raise ValueError(
                f"only {len(frames)} frames in a window of {label!r}; is the source running?"
            )
        keyframes, steps = FrameEncoder(spec).encode(frames[:usable])
        features = featurize(network, torch.from_numpy(keyframes), torch.from_numpy(steps))
        return Example(label, f"viewer {time.strftime('%H:%M:%S')}", features)

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
