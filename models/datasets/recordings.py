"""Event datasets: recordings (N-MNIST, DVS Gesture, any event file) cut into clips."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from respike.events.inputs import InputSpec
from respike.events.types import EventArray
from respike.models.datasets.base import ClipDataset, ClipSample, check_segments
from respike.models.datasets.encoders import EventEncoder, no_keyframes
from respike.recorders import EventReader, open_events
from respike.recorders.datasets import scan_dataset


class _EventFile(NamedTuple):
    """One recording of an event dataset: its reader (opened on use) and its label."""

    open: Callable[[], EventReader]
    label: int


class _EventClipDataset(ClipDataset):
    """Recordings cut into clips of ``S*K`` steps of ``time_bin_us``, binned by EventFrames.

    ``windows="all"`` makes one clip per consecutive window that starts before the recording
    ends (at least one); ``"first"`` only the first. With ``augment``, each epoch shifts the
    window start at random within the recording and the events by up to ``shift`` pixels.
    Each recording is read whole by its reader, whose sensor size the binning scales from.
    """

    has_keyframes = False

    def __init__(
        self,
        spec: InputSpec,
        recordings: Sequence[_EventFile],
        class_names: Sequence[str],
        *,
        segments: int,
        windows: str = "first",
        augment: bool = False,
        shift: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if spec.snn_input != "events":
            raise ValueError(
                f"{type(self).__name__} yields events; the spec has snn_input='{spec.snn_input}'"
            )
        if windows not in ("first", "all"):
            raise ValueError(f"windows is {windows!r}; expected 'first' or 'all'")
        if not recordings:
            raise ValueError(f"{type(self).__name__}: no recordings found")
        self.input_spec = spec
        self.class_names = tuple(class_names)
        self.segments = check_segments(segments)
        self.augment = augment
        self.shift = int(shift)
        self.seed = int(seed)
        self.encoder = EventEncoder(spec)
        self._recordings = list(recordings)
        self._index: list[tuple[int, int]] = []  # (recording, window offset in µs)
        window_us = self.steps * spec.time_bin_us
        self._loaded: dict[int, tuple[EventArray, tuple[int, int]]] = {}
        for r, _ in enumerate(self._recordings):
            if windows == "first":
                self._index.append((r, 0))
                continue
            events, _size = self._events(r)
            duration = int(events["t"][-1] - events["t"][0]) + 1 if len(events) else 1
            for w in range(max(1, math.ceil(duration / window_us))):
                self._index.append((r, w * window_us))

    def _events(self, r: int) -> tuple[EventArray, tuple[int, int]]:
        cached = self._loaded.get(r)
        if cached is None:
            reader = self._recordings[r].open()
            events = reader.read_all()
            cached = (events, reader.sensor_size or (1, 1))
            if len(self._loaded) < 4096:
                self._loaded[r] = cached
        return cached

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in index order."""
        return [self._recordings[r].label for r, _ in self._index]

    def window(self, index: int) -> tuple[int, int]:
        """Sample ``index``'s recording (its number in the folder's order) and start in µs
        after the recording's first event."""
        return self._index[index]

    def __getitem__(self, index: int) -> ClipSample:
        r, offset = self._index[index]
        events, size = self._events(r)
        start = int(events["t"][0]) + offset if len(events) else 0
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            duration = int(events["t"][-1]) - start if len(events) else 0
            window_us = self.steps * self.input_spec.time_bin_us
            start += int(rng.integers(0, max(1, duration - window_us // 2)))
            if self.shift:
                events = shift_events(events, size, rng.integers(-self.shift, self.shift + 1, 2))
        steps = self.encoder.encode(events, size, start, self.steps)
        return ClipSample(
            no_keyframes(self.segments), torch.from_numpy(steps), self._recordings[r].label
        )

    def describe(self) -> dict[str, Any]:
        """Plain metadata (stored in checkpoints and eval reports)."""
        return {**super().describe(), "recordings": len(self._recordings), "augment": self.augment}


def shift_events(
    events: EventArray, sensor_size: tuple[int, int], offset: npt.ArrayLike
) -> EventArray:
    """``events`` moved by ``offset`` = (dx, dy) pixels; events leaving the sensor are dropped."""
    dx, dy = (int(v) for v in np.asarray(offset).reshape(2))
    x = events["x"].astype(np.int64) + dx
    y = events["y"].astype(np.int64) + dy
    keep = (x >= 0) & (x < sensor_size[0]) & (y >= 0) & (y < sensor_size[1])
    out = events[keep].copy()
    out["x"] = x[keep]
    out["y"] = y[keep]
    return out


class _FolderClips(_EventClipDataset):
    """A dataset folder of recordings, one of the layouts of :mod:`respike.recorders.datasets`,
    as clips; subclasses name the layouts they read."""

    LAYOUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | Path,
        spec: InputSpec,
        *,
        split: str,
        folder_split: str,
        segments: int,
        windows: str,
        augment: bool,
        shift: int,
        seed: int,
    ) -> None:
        root = Path(root)
        folder = scan_dataset(root)
        if folder.layout not in self.LAYOUTS:
            raise ValueError(
                f"{root} holds the {folder.layout} layout; {type(self).__name__} reads "
                f"{' or '.join(self.LAYOUTS)}"
            )
        files = [
            _EventFile(partial(folder.open, i), folder.samples[i].label)
            for i in folder.in_split(folder_split)
        ]
        super().__init__(
            spec,
            files,
            folder.class_names,
            segments=segments,
            windows=windows,
            augment=augment,
            shift=shift if augment else 0,
            seed=seed,
        )
        self.root = root
        self.split = split

    def describe(self) -> dict[str, Any]:
        """Plain metadata (stored in checkpoints and eval reports)."""
        return {**super().describe(), "root": str(self.root), "split": self.split}


class NMnist(_FolderClips):
    """N-MNIST from a local folder: ``split`` is ``"train"`` or ``"test"``.

    Layouts (:mod:`respike.recorders.datasets`): split files ``train*.txt``/``test*.txt`` with
    lines ``sample class`` and the samples as ``<sample>.bs2``/``.bin`` beside them
    (``../shared/data/nmnist_small``), or the original ``[NMNIST/]Train/<digit>/<id>.bin`` and
    ``Test/<digit>/<id>.bin``. Each sample gives one clip starting at its first event (34x34
    sensor); ``augment`` shifts the events by up to ``shift`` pixels.
    """

    LAYOUTS = ("nmnist-split", "nmnist")

    def __init__(
        self,
        root: str | Path,
        spec: InputSpec,
        *,
        split: str = "train",
        segments: int = 1,
        augment: bool = False,
        shift: int = 2,
        seed: int = 0,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"N-MNIST split is {split!r}; expected 'train' or 'test'")
        super().__init__(
            root,
            spec,
            split=split,
            folder_split=split,
            segments=segments,
            windows="first",
            augment=augment,
            shift=shift,
            seed=seed,
        )


class DvsGesture(_FolderClips):
    """DVS Gesture from a local folder, as consecutive clips of every recording.

    Layouts (:mod:`respike.recorders.datasets`): tonic's
    (``[DVSGesture/]ibmGesture{Train,Test}/userNN_lighting/<label>.npy``, times in ms; any
    ``split`` but ``"train"`` reads the test recordings, DVS Gesture has no validation split) or
    a folder of recordings with ``labels.csv`` (``file,class_id,class_name``, DVS Gesture's ids
    1-11, e.g. ``../shared/data/dvs_gesture10``; no split: every recording). Classes are always
    the 11 of DVS Gesture (:data:`~respike.recorders.datasets.DVS_GESTURE_CLASSES`); sensor
    128x128.
    """

    LAYOUTS = ("dvsgesture", "labels-csv")

    def __init__(
        self,
        root: str | Path,
        spec: InputSpec,
        *,
        split: str = "test",
        segments: int = 4,
        windows: str = "all",
        augment: bool = False,
        shift: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(
            root,
            spec,
            split=split,
            folder_split="train" if split == "train" else "test",
            segments=segments,
            windows=windows,
            augment=augment,
            shift=shift,
            seed=seed,
        )


class EventRecording(_EventClipDataset):
    """One event file (or array) cut into consecutive clips, all labelled ``label``.

    ``label`` indexes ``class_names``; -1 means unknown (evaluation then reports predictions
    only). The file is anything :func:`respike.recorders.open_events` reads (a dataset sample
    as ``FOLDER#INDEX`` too); the sensor size is the reader's.
    """

    def __init__(
        self,
        path: str | Path,
        spec: InputSpec,
        *,
        class_names: Sequence[str],
        label: int = -1,
        segments: int = 4,
    ) -> None:
        path = Path(path)
        if not -1 <= label < len(class_names):
            raise ValueError(f"label {label} out of range for {len(class_names)} classes")
        super().__init__(
            spec,
            [_EventFile(partial(open_events, path), label)],
            class_names,
            segments=segments,
            windows="all",
        )
        self.path = path
