"""The video-folder dataset: UCF-101 / HMDB-51 style class folders of videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from respike.events import DvsEmulator
from respike.events.inputs import InputSpec
from respike.models.datasets.base import ClipDataset, ClipSample, check_segments
from respike.models.datasets.encoders import FrameEncoder
from respike.recorders.video import frame_count, read_frames

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")


class _Recording(NamedTuple):
    path: Path
    label: int
    start: float = 0.0


class VideoFolder(ClipDataset):
    """UCF-101 / HMDB-51 style videos: ``root/<class>/<video>``, decoded with OpenCV.

    Classes are the sorted class folders (or UCF-101's ``classInd.txt``). The split comes from,
    in order: ``split_file`` (lines ``class/video [label]``); UCF-101 files
    ``{split}list01.txt`` (in ``root`` or ``root/splits``); HMDB-51 files
    ``*_test_split1.txt`` (``video id``: 1 train, 2 test); otherwise every video. A folder of
    videos without class folders gives unlabelled clips (label -1; e.g. out-of-distribution
    data). Each video gives one clip of ``S*K`` frames (plus one priming frame for events) from
    ``start`` seconds, a short video repeating its last frame; ``windows="all"`` gives every
    whole window of ``S*K`` frames instead.
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
        windows: str = "first",
        dvs: DvsEmulator | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.input_spec = spec
        self.segments = check_segments(segments)
        self.split = split
        self.start = float(start)
        self.encoder = FrameEncoder(
            spec, channel_order="bgr", dvs=dvs or DvsEmulator(channel_order="bgr")
        )
        if windows not in ("first", "all"):
            raise ValueError(f"windows is {windows!r}; expected 'first' or 'all'")
        self.class_names = self._classes()
        self._videos = self._find(split_file)
        if windows == "all":
            self._videos = [w for video in self._videos for w in self._windows(video)]
        if not self._videos:
            raise FileNotFoundError(f"{self.root}: no videos for split {split!r}")

    def _classes(self) -> tuple[str, ...]:
        ind = self.root / "classInd.txt"
        if not ind.is_file():
            ind = self.root / "splits" / "classInd.txt"
        if ind.is_file():
            return tuple(line.split()[1] for line in ind.read_text().splitlines() if line.strip())
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder of videos")
        names = tuple(
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "splits")
        )
        if not names and not self._loose_videos():
            raise FileNotFoundError(f"{self.root}: no class folders and no videos")
        return names

    def _loose_videos(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)

    def _windows(self, video: _Recording) -> list[_Recording]:
        """Every whole window of ``S*K`` frames of ``video`` from ``start`` (at least one)."""
        total, fps = frame_count(video.path)
        need = self.encoder.frames_needed(self.steps)
        first = round(self.start * fps)
        count = max(1, (total - first) // need)
        return [video._replace(start=(first + i * need) / fps) for i in range(count)]

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
        if not self.class_names:
            return [_Recording(path, -1) for path in self._loose_videos()]
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
        video = self._videos[index]
        frames, _ = read_frames(video.path, need, start_s=video.start or self.start)
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
