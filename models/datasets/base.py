"""The clip sample and the dataset base class every respike dataset derives from."""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from respike.events.inputs import InputSpec


class ClipSample(NamedTuple):
    """One clip: ``keyframes (S, 3, Hk, Wk)``, ``steps (S*K, C, h, w)``, class ``label``.

    Sources without frames (event recordings) give ``keyframes`` of shape ``(S, 3, 0, 0)``: only
    an ``snn``-mode model can use them.
    """

    keyframes: torch.Tensor
    steps: torch.Tensor
    label: int


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


def check_segments(segments: int) -> int:
    """``segments`` if it is a positive integer (key frames per clip), else a ValueError."""
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments is {segments!r}; expected an integer >= 1")
    return segments
