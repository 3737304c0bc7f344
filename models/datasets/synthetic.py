"""The synthetic-action dataset: clips of :mod:`respike.synthetic`, encoded and cached."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from respike.events import DvsEmulator
from respike.events.inputs import InputSpec
from respike.models.datasets.base import ClipDataset, ClipSample, check_segments
from respike.models.datasets.encoders import FrameEncoder
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
from respike.synthetic.outliers import OUTLIER_KINDS, outlier_clip

#: Bump when the tensors a dataset makes change, so stale ``.npz`` caches are never read.
CACHE_VERSION = 1

TRAINING_SCENE = SceneConfig(width=160, height=120, fps=30.0)
"""The synthetic scenes rendered for training and evaluation unless a checkpoint says others."""


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
        self.segments = check_segments(segments)
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
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return SceneConfig(**values)


class SyntheticOutliers(SyntheticActions):
    """Clips with nobody acting (:mod:`respike.synthetic.outliers`), encoded like
    :class:`SyntheticActions`: what an open-set rule learns as background.

    Clip ``i`` is kind ``kinds[i % len(kinds)]`` (default :data:`OUTLIER_KINDS`; any of
    :data:`~respike.synthetic.outliers.KINDS`) with seed :meth:`clip_seed`; its label is the
    kind's index in ``kinds``.
    """

    def __init__(
        self, spec: InputSpec, *, kinds: Sequence[str] = OUTLIER_KINDS, **kwargs: Any
    ) -> None:
        kwargs.setdefault("classes", CLASS_NAMES[:1])
        super().__init__(spec, **kwargs)
        self.class_names = tuple(kinds)

    def frames(self, index: int) -> npt.NDArray[np.uint8]:
        kind = self.class_names[index % len(self.class_names)]
        count = self.encoder.frames_needed(self.steps)
        return outlier_clip(kind, self.clip_seed(index), count, self.scene)
