"""Datasets of respike: every source yields one clip layout, made by the live path's own kernels.

A sample is a :class:`ClipSample`: ``keyframes (S, 3, Hk, Wk)`` (RGB, ImageNet-normalised, as
:func:`~respike.models.ann.keyframe_tensor` makes them), ``steps (S*K, C, h, w)`` (the SNN inputs) and an integer
``label``; the default collate stacks samples into the ``(B, ...)`` batch that
:class:`~respike.models.hybrid.Clip` takes. The SNN inputs come from exactly the code a live
pipeline runs, so training and serving cannot drift apart:

- frames -> residual steps: :class:`respike.events.ResidualFrames` with ``stride = K`` at the
  model's SNN size (grey for 1 channel, RGB for 3); the key frame of segment ``s`` is frame
  ``s * K``, the frame the residual kernel keys on;
- frames -> event steps: :class:`respike.events.DvsEmulator` on each frame, each frame
  interval's events binned by :class:`respike.events.EventFrames` into one ``(2, h, w)`` step
  (one extra leading frame primes the emulator, as a running camera would have);
- recorded events -> event steps: :class:`respike.events.EventFrames` with ``S*K`` bins of
  ``time_bin_us`` each, the binning of the live ``snn`` node.

Sources (:func:`open_dataset` builds each from a SPEC string, see :func:`parse_data_spec`):

- :class:`SyntheticActions`: the synthetic generator (:mod:`respike.synthetic`), split by
  seed (:func:`~respike.synthetic.split_seed`) and by background family (training on
  ``TRAIN_BACKGROUNDS``, testing on ``HELDOUT_BACKGROUNDS``); cached to ``.npz`` on request;
- :class:`NMnist`: N-MNIST from a folder: ``train*.txt``/``test*.txt`` split files beside the
  samples (the ``nmnist_small`` layout) or ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``;
- :class:`DvsGesture`: tonic's layout (``ibmGestureTrain/userNN_light/<label>.npy``) or a folder
  of recordings with a ``labels.csv`` (``file,class_id,class_name``, ids 1-11);
- :class:`VideoFolder`: UCF-101 / HMDB-51 style class folders of videos with optional split
  files (``trainlist01.txt``/``testlist01.txt``, or ``*_test_split1.txt``);
- :class:`EventRecording`: any event array (from any event file) cut into consecutive clips.

Dataset folders and event files are read through :mod:`respike.recorders`: its
:mod:`~respike.recorders.datasets` is the one home of the layouts (listing, labels, splits, sensor
sizes, class names) and ``open_events`` reads every format; the datasets here add only the cut
into clips and the encoding.

Example::

    from respike.models import InputSpec
    from respike.models.datasets import SyntheticActions

    spec = InputSpec(snn_size=(64, 64), snn_input="residual", snn_channels=1)
    data = SyntheticActions(spec, split="train", clips=190, segments=4)
    sample = data[0]      # ClipSample(keyframes (4, 3, 112, 112), steps (16, 1, 64, 64), label)
"""

from __future__ import annotations

import abc
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from respike.events import DvsEmulator, ResidualFrames
from respike.events.inputs import InputSpec, parse_size
from respike.events.types import EventArray
from respike.models.ann import keyframe_tensor
from respike.recorders import EventReader, open_events
from respike.recorders.datasets import scan_dataset
from respike.recorders.video import read_frames
from respike.synthetic import (
    CLASS_NAMES,
    HELDOUT_BACKGROUNDS,
    SPLITS,
    TRAIN_BACKGROUNDS,
    SceneConfig,
    class_id,
    render_clip,
    split_seed,
)

#: Bump when the tensors a dataset makes change, so stale ``.npz`` caches are never read.
CACHE_VERSION = 1

#: The kinds a data SPEC may name (``KIND:PATH``; ``synthetic`` takes no path).
DATA_KINDS: tuple[str, ...] = ("synthetic", "nmnist", "dvsgesture", "videos", "events")

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")

TRAINING_SCENE = SceneConfig(width=160, height=120, fps=30.0)
"""The synthetic scenes rendered for training and evaluation unless a checkpoint says others."""


class ClipSample(NamedTuple):
    """One clip: ``keyframes (S, 3, Hk, Wk)``, ``steps (S*K, C, h, w)``, class ``label``.

    Sources without frames (event recordings) give ``keyframes`` of shape ``(S, 3, 0, 0)``: only
    an ``snn``-mode model can use them.
    """

    keyframes: torch.Tensor
    steps: torch.Tensor
    label: int


# --------------------------------------------------------------------------------------------
# Encoders: frames or events to model inputs, through the live kernels


@dataclass(frozen=True)
class FrameEncoder:
    """Frames to ``(keyframes, steps)`` through the residual or DVS kernels of the live path.

    ``spec`` decides everything: ``snn_input`` picks residuals (its
    :meth:`~respike.events.inputs.InputSpec.residual_frames`) or events (``dvs``, then its
    :meth:`~respike.events.inputs.InputSpec.event_frames` per frame interval), its sizes the
    outputs, ``time_bin_us`` the frame interval used as event time. ``channel_order`` is the
    order of the frames given (the synthetic generator renders RGB, OpenCV captures BGR);
    ``dvs.channel_order`` must match it.
    """

    spec: InputSpec
    channel_order: str = "rgb"
    dvs: DvsEmulator = field(default_factory=lambda: DvsEmulator(channel_order="rgb"))

    def __post_init__(self) -> None:
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order is {self.channel_order!r}; expected 'rgb' or 'bgr'")
        if self.dvs.channel_order != self.channel_order:
            raise ValueError(
                f"dvs.channel_order is {self.dvs.channel_order!r} but frames are "
                f"{self.channel_order!r}"
            )

    @property
    def events(self) -> bool:
        """Whether the SNN steps are binned emulator events (else residuals)."""
        return self.spec.snn_input == "events"

    @property
    def residual(self) -> ResidualFrames:
        """The residual kernel's settings for this spec."""
        return self.spec.residual_frames(self.channel_order)

    def frames_needed(self, steps: int) -> int:
        """Frames to render for ``steps`` steps (events need one more to prime the emulator)."""
        return steps + 1 if self.events else steps

    def encode(
        self, frames: npt.NDArray[np.uint8], dvs: DvsEmulator | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``keyframes (S, 3, Hk, Wk)`` and ``steps (T, C, h, w)`` of ``frames (N, H, W, 3)``.

        Residuals: ``T = N`` (a multiple of K). Events: ``T = N - 1``; frame ``i`` is taken at
        ``i * time_bin_us`` and step ``t`` holds the events between frames ``t`` and ``t + 1``;
        key frame ``s`` is frame ``1 + s * K``. ``dvs`` overrides the emulator settings (e.g.
        randomised thresholds per clip).
        """
        k = self.spec.keyframe_interval
        steps_count = len(frames) - (1 if self.events else 0)
        if steps_count < k or steps_count % k:
            raise ValueError(
                f"{len(frames)} frames give {steps_count} steps; expected a positive multiple "
                f"of K = {k} (events need one priming frame more)"
            )
        first = 1 if self.events else 0
        keyframes = np.stack(
            [
                keyframe_tensor(
                    frames[first + s],
                    (self.spec.keyframe_width, self.spec.keyframe_height),
                    self.channel_order,
                )
                for s in range(0, steps_count, k)
            ]
        )
        if self.events:
            steps = self._event_steps(frames, dvs or self.dvs)
        else:
            residual = self.residual
            state = None
            out = []
            for frame in frames:
                step, state = residual(frame, state)
                out.append(step)
            steps = np.stack(out)
        return keyframes, steps

    def _event_steps(
        self, frames: npt.NDArray[np.uint8], dvs: DvsEmulator
    ) -> npt.NDArray[np.float32]:
        if dvs.channel_order != self.channel_order:
            raise ValueError("the emulator's channel_order must match the frames'")
        height, width = frames.shape[1:3]
        binning = self.spec.event_frames((width, height))
        bin_us = self.spec.time_bin_us
        state = None
        out = []
        for i, frame in enumerate(frames):
            events, state = dvs(frame, i * bin_us, state)
            if i:
                out.append(binning(events, t_start=(i - 1) * bin_us, t_end=i * bin_us)[0])
        return np.stack(out).astype(np.float32, copy=False)


@dataclass(frozen=True)
class EventEncoder:
    """Recorded events to ``steps (T, 2, h, w)``: ``T`` bins of ``time_bin_us`` at ``snn_size``."""

    spec: InputSpec

    def encode(
        self, events: EventArray, sensor_size: tuple[int, int], t_start: int, steps: int
    ) -> npt.NDArray[np.float32]:
        """Counts of ``events`` in ``[t_start, t_start + steps * time_bin_us)`` per step."""
        if self.spec.snn_input != "events":
            raise ValueError("recorded events feed only a model whose snn_input is 'events'")
        binning = self.spec.event_frames((int(sensor_size[0]), int(sensor_size[1])), steps)
        end = int(t_start) + steps * self.spec.time_bin_us
        return np.asarray(binning(events, t_start=int(t_start), t_end=end), dtype=np.float32)


def no_keyframes(segments: int) -> torch.Tensor:
    """The ``keyframes`` of a frameless source: shape ``(S, 3, 0, 0)``."""
    return torch.zeros(segments, 3, 0, 0)


# --------------------------------------------------------------------------------------------
# Base class


class ClipDataset(Dataset[ClipSample], abc.ABC):
    """What every respike dataset offers besides ``len`` and indexing.

    ``class_names`` are the names of the labels, ``labels`` the label of every sample (for
    per-class statistics without decoding), ``input_spec`` the model input it makes,
    ``segments`` the key frames per clip (``S``), ``has_keyframes`` whether it carries RGB
    key frames (frameless sources serve only ``snn``-mode models). :meth:`set_epoch` lets
    random augmentation and per-epoch resampling differ between epochs yet stay reproducible.
    """

    class_names: tuple[str, ...]
    input_spec: InputSpec
    segments: int
    has_keyframes: bool = True

    def __init__(self) -> None:
        self.epoch = 0

    @property
    @abc.abstractmethod
    def labels(self) -> list[int]:
        """The label of every sample, in index order."""

    @property
    def steps(self) -> int:
        """SNN steps per clip: ``S * K``."""
        return self.segments * self.input_spec.keyframe_interval

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (augmentation, resampled clips)."""
        self.epoch = int(epoch)

    def describe(self) -> dict[str, Any]:
        """Plain metadata (stored in checkpoints and eval reports)."""
        return {
            "kind": type(self).__name__,
            "clips": len(self),
            "segments": self.segments,
            "classes": list(self.class_names),
        }

    def __len__(self) -> int:
        return len(self.labels)


def _check_segments(segments: int) -> int:
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments is {segments!r}; expected an integer >= 1")
    return segments


# --------------------------------------------------------------------------------------------
# Synthetic actions


@dataclass(frozen=True)
class DvsRandomisation:
    """Per-clip ranges of emulator settings for synthetic event data (domain randomisation).

    Each clip draws its ON and OFF thresholds independently from ``threshold_range``, a
    threshold mismatch from ``mismatch_range`` and a shot-noise rate (Hz per pixel) from
    ``noise_hz_range``; equal bounds fix a setting.
    """

    threshold_range: tuple[float, float] = (0.2, 0.2)
    mismatch_range: tuple[float, float] = (0.0, 0.0)
    noise_hz_range: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            low, high = getattr(self, f.name)
            if not 0.0 <= low <= high:
                raise ValueError(f"{f.name} is {(low, high)}; expected 0 <= low <= high")

    def draw(self, seed: int, channel_order: str) -> DvsEmulator:
        """The emulator of the clip with ``seed``."""
        rng = np.random.default_rng([seed, 0xD75])
        on, off = rng.uniform(*self.threshold_range, size=2)
        return DvsEmulator(
            on_threshold=float(on),
            off_threshold=float(off),
            threshold_mismatch=float(rng.uniform(*self.mismatch_range)),
            shot_noise_rate_hz=float(rng.uniform(*self.noise_hz_range)),
            channel_order=channel_order,
            seed=int(seed % (1 << 62)),
        )


class SyntheticActions(ClipDataset):
    """Clips of the synthetic action generator, rendered and encoded on demand (or cached).

    Clip ``i`` shows class ``classes[i % len(classes)]`` performed by the seed
    ``split_seed(split, seed * 2**24 + i)`` (with ``resample=True``, epoch ``e`` uses indices
    ``e * clips + i`` instead, so every epoch sees new performers and scenes). Backgrounds come
    from ``TRAIN_BACKGROUNDS`` for ``split="train"`` and ``"val"`` and from
    ``HELDOUT_BACKGROUNDS`` for ``"test"`` unless ``scene`` says otherwise, so a test set shares
    neither seeds nor background families with training.

    ``scene`` sets size, fps, framing and nuisances (default 160x120 at 30 fps, the 4:3 of the
    demo's 320x240 camera); ``dvs`` randomises the emulator per clip for event inputs.
    ``cache_dir``: the encoded tensors are saved once to an ``.npz`` named by a hash of every
    setting and loaded from it afterwards (not with ``resample``, whose clips change).
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        split: str = "train",
        clips: int = 190,
        segments: int = 4,
        seed: int = 0,
        classes: Sequence[str] = CLASS_NAMES,
        scene: SceneConfig | None = None,
        dvs: DvsRandomisation | None = None,
        resample: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        if clips < 1:
            raise ValueError(f"clips is {clips}; expected >= 1")
        if not 0 <= seed < 1 << 16:
            raise ValueError(f"seed is {seed}; expected 0..65535")
        self.input_spec = spec
        self.split = split
        self.clips = int(clips)
        self.segments = _check_segments(segments)
        self.seed = int(seed)
        self.class_names = tuple(CLASS_NAMES[class_id(c)] for c in classes)
        if not self.class_names:
            raise ValueError("classes must name at least one class")
        backgrounds = HELDOUT_BACKGROUNDS if split == "test" else TRAIN_BACKGROUNDS
        self.scene = scene or replace(TRAINING_SCENE, backgrounds=backgrounds)
        self.dvs = dvs or DvsRandomisation()
        self.resample = resample
        self.encoder = FrameEncoder(spec, channel_order="rgb")
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        if cache_dir is not None and not resample:
            self._cache = self._load_or_build_cache(Path(cache_dir))

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in index order."""
        n = len(self.class_names)
        return [i % n for i in range(self.clips)]

    def clip_seed(self, index: int) -> int:
        """The generator seed of clip ``index`` in the current epoch."""
        offset = self.epoch * self.clips if self.resample else 0
        return split_seed(self.split, self.seed * (1 << 24) + offset + index)

    def frames(self, index: int) -> npt.NDArray[np.uint8]:
        """The rendered RGB frames of clip ``index`` (what :meth:`encode` gets)."""
        action = self.class_names[index % len(self.class_names)]
        count = self.encoder.frames_needed(self.steps)
        return render_clip(action, self.clip_seed(index), count, self.scene)

    def encode(self, index: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Render clip ``index`` and run it through the kernels (no cache)."""
        frames = self.frames(index)
        dvs = self.dvs.draw(self.clip_seed(index), "rgb") if self.encoder.events else None
        keyframes, steps = self.encoder.encode(frames, dvs)
        if not self.has_keyframes:
            keyframes = keyframes[:, :, :0, :0]
        return keyframes, steps

    def __getitem__(self, index: int) -> ClipSample:
        if not 0 <= index < self.clips:
            raise IndexError(f"clip {index} out of range 0..{self.clips - 1}")
        if self._cache is not None:
            keyframes, steps = self._cache[0][index], self._cache[1][index]
        else:
            keyframes, steps = self.encode(index)
        label = index % len(self.class_names)
        return ClipSample(torch.from_numpy(keyframes), torch.from_numpy(steps), label)

    def settings(self) -> dict[str, Any]:
        """Everything that decides the tensors (the cache key and checkpoint metadata)."""
        return {
            "version": CACHE_VERSION,
            "spec": repr(self.input_spec),
            "split": self.split,
            "clips": self.clips,
            "segments": self.segments,
            "seed": self.seed,
            "classes": list(self.class_names),
            "scene": repr(self.scene),
            "dvs": repr(self.dvs),
        }

    def describe(self) -> dict[str, Any]:
        """Plain metadata (stored in checkpoints and eval reports)."""
        return {
            **super().describe(),
            "split": self.split,
            "seed": self.seed,
            "segments": self.segments,
            "resample": self.resample,
            "scene": scene_to_dict(self.scene),
            "dvs": {f.name: list(getattr(self.dvs, f.name)) for f in fields(self.dvs)},
        }

    def _load_or_build_cache(self, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        key = hashlib.sha256(repr(sorted(self.settings().items())).encode()).hexdigest()[:16]
        path = folder / f"synthetic-{self.split}-{key}.npz"
        if path.is_file():
            with np.load(path) as data:
                return data["keyframes"], data["steps"]
        encoded = [self.encode(i) for i in range(self.clips)]
        keyframes = np.stack([k for k, _ in encoded])
        steps = np.stack([s for _, s in encoded])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keyframes=keyframes, steps=steps)
        tmp.replace(path)
        return keyframes, steps


def scene_to_dict(scene: SceneConfig) -> dict[str, Any]:
    """A :class:`SceneConfig` as plain data (tuples as lists), for checkpoints and JSON."""
    return {
        f.name: list(v) if isinstance(v := getattr(scene, f.name), tuple) else v
        for f in fields(scene)
    }


def scene_from_dict(data: Mapping[str, Any]) -> SceneConfig:
    """Inverse of :func:`scene_to_dict`."""
    return SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --------------------------------------------------------------------------------------------
# Event recordings


class _EventFile(NamedTuple):
    """One recording of an event dataset: its reader (opened on use) and its label."""

    open: Callable[[], EventReader]
    label: int


class _Recording(NamedTuple):
    path: Path
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
        self.segments = _check_segments(segments)
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


# --------------------------------------------------------------------------------------------
# Video folders


class VideoFolder(ClipDataset):
    """UCF-101 / HMDB-51 style videos: ``root/<class>/<video>``, decoded with OpenCV.

    Classes are the sorted class folders (or UCF-101's ``classInd.txt``). The split comes from,
    in order: ``split_file`` (lines ``class/video [label]``); UCF-101 files
    ``{split}list01.txt`` (in ``root`` or ``root/splits``); HMDB-51 files
    ``*_test_split1.txt`` (``video id``: 1 train, 2 test); otherwise every video. Each video
    gives one clip of ``S*K`` frames (plus one priming frame for events) from ``start`` seconds;
    a short video repeats its last frame.
    """

    def __init__(
        self,
        root: str | Path,
        spec: InputSpec,
        *,
        split: str = "train",
        segments: int = 4,
        split_file: str | Path | None = None,
        start: float = 0.0,
        dvs: DvsEmulator | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.input_spec = spec
        self.segments = _check_segments(segments)
        self.split = split
        self.start = float(start)
        self.encoder = FrameEncoder(
            spec, channel_order="bgr", dvs=dvs or DvsEmulator(channel_order="bgr")
        )
        self.class_names = self._classes()
        self._videos = self._find(split_file)
        if not self._videos:
            raise FileNotFoundError(f"{self.root}: no videos for split {split!r}")

    def _classes(self) -> tuple[str, ...]:
        ind = self.root / "classInd.txt"
        if not ind.is_file():
            ind = self.root / "splits" / "classInd.txt"
        if ind.is_file():
            return tuple(line.split()[1] for line in ind.read_text().splitlines() if line.strip())
        names = tuple(
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "splits")
        )
        if not names:
            raise FileNotFoundError(f"{self.root}: no class folders")
        return names

    def _find(self, split_file: str | Path | None) -> list[_Recording]:
        index = {name: i for i, name in enumerate(self.class_names)}
        candidates = [Path(split_file)] if split_file is not None else []
        for folder in (self.root, self.root / "splits"):
            candidates += sorted(folder.glob(f"{self.split}list01.txt"))
        listed = next((c for c in candidates if c.is_file()), None)
        if listed is not None:
            out = []
            for line in listed.read_text().splitlines():
                if not line.strip():
                    continue
                rel = line.split()[0]
                out.append(_Recording(self.root / rel, index[Path(rel).parent.name]))
            return out
        hmdb = sorted(self.root.glob("*_test_split1.txt")) + sorted(
            (self.root / "splits").glob("*_test_split1.txt")
        )
        if hmdb:
            wanted = {"train": 1, "test": 2}.get(self.split)
            out = []
            for path in hmdb:
                name = path.name[: -len("_test_split1.txt")]
                for line in path.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and int(parts[1]) == wanted:
                        out.append(_Recording(self.root / name / parts[0], index[name]))
            return out
        return [
            _Recording(path, index[path.parent.name])
            for name in self.class_names
            for path in sorted((self.root / name).glob("*"))
            if path.suffix.lower() in VIDEO_SUFFIXES
        ]

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in index order."""
        return [v.label for v in self._videos]

    def frames(self, index: int) -> npt.NDArray[np.uint8]:
        """The BGR frames of video ``index`` that make its clip."""
        need = self.encoder.frames_needed(self.steps)
        frames, _ = read_frames(self._videos[index].path, need, start_s=self.start)
        frames += [frames[-1]] * (need - len(frames))
        return np.stack(frames)

    def __getitem__(self, index: int) -> ClipSample:
        keyframes, steps = self.encoder.encode(self.frames(index))
        return ClipSample(
            torch.from_numpy(keyframes), torch.from_numpy(steps), self._videos[index].label
        )

    def describe(self) -> dict[str, Any]:
        """Plain metadata (stored in checkpoints and eval reports)."""
        return {**super().describe(), "root": str(self.root), "split": self.split}


# --------------------------------------------------------------------------------------------
# Data SPEC strings


@dataclass(frozen=True)
class DataSpec:
    """A parsed data SPEC: ``kind``, ``path`` (``None`` for ``synthetic``) and options.

    Grammar: ``KIND:PATH[?key=value[&key=value...]]`` or ``synthetic[?key=value...]``, with
    KIND one of :data:`DATA_KINDS`. Options override command-line defaults, e.g.
    ``synthetic?split=val&clips=95``, ``dvsgesture:DIR?windows=first``,
    ``events:rec.aedat4?label=hand_clapping``, ``videos:DIR?split_file=DIR/testlist01.txt``.
    """

    kind: str
    path: Path | None
    options: Mapping[str, str] = field(default_factory=dict)


def parse_data_spec(spec: str) -> DataSpec:
    """Parse a data SPEC string (see :class:`DataSpec`); errors name the expected form."""
    text, _, query = spec.partition("?")
    kind, sep, path = text.partition(":")
    kind = kind.strip().lower()
    if kind not in DATA_KINDS:
        raise ValueError(
            f"data spec {spec!r}: unknown kind {kind!r}; expected KIND:PATH with KIND one of "
            f"{', '.join(k for k in DATA_KINDS if k != 'synthetic')}, or 'synthetic'"
        )
    if kind == "synthetic":
        if sep and path:
            raise ValueError(f"data spec {spec!r}: 'synthetic' takes no path")
        resolved: Path | None = None
    else:
        if not path:
            raise ValueError(f"data spec {spec!r}: {kind} needs a path ({kind}:PATH)")
        resolved = Path(path).expanduser()
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"data spec {spec!r}: option {item!r} is not key=value")
        options[key] = value
    return DataSpec(kind, resolved, options)


@dataclass(frozen=True)
class DataOptions:
    """Defaults for :func:`open_dataset` (the command line's flags); SPEC options override them.

    ``synthetic`` holds the synthetic generator's settings a checkpoint was trained with
    (``scene``, ``dvs`` and ``classes``, from :meth:`SyntheticActions.describe`), so evaluation
    renders the same kind of clips.
    """

    split: str = "test"
    clips: int = 190
    seed: int = 0
    segments: int = 4
    augment: bool = False
    resample: bool = False
    cache_dir: Path | None = None
    synthetic: Mapping[str, Any] = field(default_factory=dict)


_KNOWN_OPTIONS = {
    "synthetic": {"split", "clips", "seed", "segments", "framing", "size", "backgrounds"},
    "nmnist": {"split", "segments"},
    "dvsgesture": {"split", "segments", "windows"},
    "videos": {"split", "segments", "split_file", "start"},
    "events": {"segments", "label"},
}


def open_dataset(
    spec: str | DataSpec,
    input_spec: InputSpec,
    *,
    options: DataOptions | None = None,
    class_names: Sequence[str] | None = None,
) -> ClipDataset:
    """The dataset a SPEC names, making ``input_spec``'s inputs.

    ``class_names`` (a checkpoint's) picks the synthetic classes and names the label of an
    ``events:`` file.
    """
    parsed = parse_data_spec(spec) if isinstance(spec, str) else spec
    opts = options or DataOptions()
    unknown = set(parsed.options) - _KNOWN_OPTIONS[parsed.kind]
    if unknown:
        raise ValueError(
            f"data spec option(s) {sorted(unknown)} unknown for {parsed.kind}; known: "
            f"{', '.join(sorted(_KNOWN_OPTIONS[parsed.kind]))}"
        )
    o = parsed.options
    split = o.get("split", opts.split)
    segments = int(o.get("segments", opts.segments))
    if parsed.kind == "synthetic":
        return _open_synthetic(o, input_spec, opts, split, segments, class_names)
    assert parsed.path is not None
    if parsed.kind == "nmnist":
        return NMnist(
            parsed.path,
            input_spec,
            split=split,
            segments=segments,
            augment=opts.augment,
            seed=opts.seed,
        )
    if parsed.kind == "dvsgesture":
        return DvsGesture(
            parsed.path,
            input_spec,
            split=split,
            segments=segments,
            windows=o.get("windows", "all"),
            augment=opts.augment,
            seed=opts.seed,
        )
    if parsed.kind == "videos":
        return VideoFolder(
            parsed.path,
            input_spec,
            split=split,
            segments=segments,
            split_file=o.get("split_file"),
            start=float(o.get("start", 0.0)),
        )
    names = tuple(class_names or ())
    label = -1
    if "label" in o:
        if o["label"] not in names:
            raise ValueError(f"label {o['label']!r} is not one of the classes {names}")
        label = names.index(o["label"])
    return EventRecording(
        parsed.path, input_spec, class_names=names, label=label, segments=segments
    )


def _open_synthetic(
    o: Mapping[str, str],
    input_spec: InputSpec,
    opts: DataOptions,
    split: str,
    segments: int,
    class_names: Sequence[str] | None,
) -> SyntheticActions:
    trained = opts.synthetic
    scene = scene_from_dict(trained["scene"]) if "scene" in trained else None
    if scene is None:
        scene = TRAINING_SCENE
    backgrounds = HELDOUT_BACKGROUNDS if split == "test" else TRAIN_BACKGROUNDS
    if "backgrounds" in o:
        backgrounds = tuple(o["backgrounds"].split(","))
    changes: dict[str, Any] = {"backgrounds": backgrounds}
    if "framing" in o:
        changes["framing"] = o["framing"]
    if "size" in o:
        size = parse_size(o["size"])
        changes["width"], changes["height"] = size.width, size.height
    dvs = None
    if "dvs" in trained:
        dvs = DvsRandomisation(**{k: tuple(v) for k, v in trained["dvs"].items()})
    classes = class_names or trained.get("classes") or CLASS_NAMES
    return SyntheticActions(
        input_spec,
        split=split,
        clips=int(o.get("clips", opts.clips)),
        segments=segments,
        seed=int(o.get("seed", opts.seed)),
        classes=tuple(classes),
        scene=replace(scene, **changes),
        dvs=dvs,
        resample=opts.resample,
        cache_dir=opts.cache_dir,
    )


__all__ = [
    "CACHE_VERSION",
    "DATA_KINDS",
    "ClipDataset",
    "ClipSample",
    "DataOptions",
    "DataSpec",
    "DvsGesture",
    "DvsRandomisation",
    "EventEncoder",
    "EventRecording",
    "FrameEncoder",
    "NMnist",
    "SyntheticActions",
    "VideoFolder",
    "no_keyframes",
    "open_dataset",
    "parse_data_spec",
    "scene_from_dict",
    "scene_to_dict",
    "shift_events",
]
