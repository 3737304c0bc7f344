"""Event datasets in local folders, tonic's layouts and two plain ones: one sample per reader.

``open_events(folder, sample=3)`` (or ``open_events("folder#3")``) reads sample 3 of the folder's
listing; without a sample the error lists what is there. Layouts recognised (the same ones
``respike.models.datasets`` trains on):

- ``nmnist``: tonic's NMNIST, ``[NMNIST/]Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``
  (label: the digit folder), 34x34;
- ``nmnist-split``: split files ``train*.txt``/``test*.txt`` with lines ``sample class`` and the
  samples ``<sample>.bs2``/``.bin`` beside them (``../shared/data/nmnist_small``), 34x34;
- ``dvsgesture``: tonic's DVSGesture, ``[DVSGesture/]ibmGesture{Train,Test}/userNN_lighting/
  <label>.npy`` holding (N, 4) arrays with columns x, y, p, t in ms (tonic multiplies by 1000 on
  loading), 128x128;
- ``labels-csv``: DVS Gesture recordings listed in ``labels.csv`` (``file,class_id,...``, DVS
  Gesture's class ids 1-11) beside them (``../shared/data/dvs_gesture10``), 128x128; no split.

The listing is in a fixed order (train split before test, then by path), so an index names the
same sample on every machine holding the same files. A sample's label is its class's index in
the layout's class names (:data:`NMNIST_CLASSES`, :data:`DVS_GESTURE_CLASSES`): the class a
model is trained to output, whatever numbering the folder's own files use.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from respike.events.types import EventArray
from respike.recorders.arrays import MappedNpyReader
from respike.recorders.base import EventReader, Frame, ReadOptions
from respike.recorders.errors import DatasetSampleError

NMNIST_SENSOR = (34, 34)
DVS_GESTURE_SENSOR = (128, 128)
SPLITS = ("train", "test")

NMNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
"""N-MNIST's classes: a sample's label is its digit."""

DVS_GESTURE_CLASSES: tuple[str, ...] = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other",
)
"""DVS Gesture's 11 classes in its label order. A sample's label indexes this tuple: tonic's
``<label>.npy`` names it (0-10), a ``labels.csv`` ``class_id`` is the dataset's own 1-based id
(label = class_id - 1)."""

#: each layout's sensor size and the class names its labels index
_LAYOUT_SENSOR_CLASSES: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {
    "nmnist": (NMNIST_SENSOR, NMNIST_CLASSES),
    "nmnist-split": (NMNIST_SENSOR, NMNIST_CLASSES),
    "dvsgesture": (DVS_GESTURE_SENSOR, DVS_GESTURE_CLASSES),
    "labels-csv": (DVS_GESTURE_SENSOR, DVS_GESTURE_CLASSES),
}


@dataclass(frozen=True)
class DatasetSample:
    """One sample of a dataset folder: its path relative to the folder, label (the index of its
    class in the folder's ``class_names``) and split ("" in a folder without splits), and the
    label's class name where the folder says it (labels.csv ``class_name``; N-MNIST: the digit)."""

    path: str
    label: int
    split: str
    label_name: str | None = None


@dataclass(frozen=True)
class DatasetFolder:
    """A recognised dataset folder: layout name, sensor size, samples and the class names their
    labels index."""

    root: Path
    layout: str
    sensor_size: tuple[int, int]
    samples: tuple[DatasetSample, ...]
    class_names: tuple[str, ...]

    def in_split(self, split: str) -> tuple[int, ...]:
        """Indices of the samples of ``split`` (every sample in a folder without splits)."""
        return tuple(i for i, sample in enumerate(self.samples) if sample.split in (split, ""))

    def open(self, choice: int | str, options: ReadOptions | None = None) -> DatasetFolderReader:
        """The reader of sample ``choice`` that ``open_events(root, sample=choice)`` gives,
        without listing the folder again (for datasets that read every sample)."""
        options = replace(options or ReadOptions(), sample=choice)
        return DatasetFolderReader(self.root, options, folder=self)

    def find(self, choice: int | str) -> DatasetSample:
        """The sample at index ``choice`` or with relative path ``choice``."""
        if isinstance(choice, int) or (isinstance(choice, str) and choice.isdigit()):
            index = int(choice)
            if not 0 <= index < len(self.samples):
                raise DatasetSampleError(
                    self.root, f"sample index {index} is outside 0..{len(self.samples) - 1}", self
                )
            return self.samples[index]
        wanted = Path(choice).as_posix()
        for sample in self.samples:
            if sample.path == wanted:
                return sample
        raise DatasetSampleError(self.root, f"no sample {choice!r}", self)

    def listing(self, limit: int = 5) -> str:
        """A short description: layout, counts per split, the first samples by index."""
        counts = {s: sum(1 for x in self.samples if x.split == s) for s in SPLITS}
        split_text = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        split_text = f" ({split_text})" if split_text else ""
        first = "; ".join(
            f"{i}: {s.path} (label {s.label})" for i, s in enumerate(self.samples[:limit])
        )
        more = (
            f"; ... {len(self.samples) - 1}: {self.samples[-1].path}"
            if (len(self.samples) > limit)
            else ""
        )
        return f"{self.layout} layout, {len(self.samples)} samples{split_text}: {first}{more}"


def dataset_layout(root: Path) -> tuple[str, Path] | None:
    """The layout name of a dataset folder and the folder its paths are relative to, or None.

    Cheap (a few existence checks), so format detection can call it.
    """
    for base in (root, root / "NMNIST"):
        if any((base / name / "0").is_dir() for name in ("Train", "Test")):
            return "nmnist", base
    for base in (root, root / "DVSGesture"):
        if any((base / f"ibmGesture{name}").is_dir() for name in ("Train", "Test")):
            return "dvsgesture", base
    if any(root.glob("train*.txt")) or any(root.glob("test*.txt")):
        return "nmnist-split", root
    if (root / "labels.csv").is_file():
        return "labels-csv", root
    return None


def scan_dataset(root: str | Path) -> DatasetFolder:
    """List the samples of a dataset folder (raises DatasetSampleError when none is found)."""
    root = Path(root)
    found = dataset_layout(root)
    if found is None:
        raise DatasetSampleError(root, "no dataset layout recognised", None)
    layout, base = found
    samples: list[DatasetSample] = []
    if layout == "nmnist":
        for split in SPLITS:
            for path in sorted((base / split.capitalize()).glob("[0-9]/*.bin")):
                digit = int(path.parent.name)
                samples.append(_sample(root, path, digit, split, str(digit)))
    elif layout == "dvsgesture":
        for split in SPLITS:
            folder = base / f"ibmGesture{split.capitalize()}"
            for path in sorted(folder.glob("user*/*.npy")):
                if path.stem.isdigit():
                    samples.append(_sample(root, path, int(path.stem), split))
    elif layout == "nmnist-split":
        for split in SPLITS:
            for split_file in sorted(root.glob(f"{split}*.txt"))[:1]:
                for name, label in _split_entries(split_file):
                    sample_file: Path | None = next(
                        (
                            root / f"{name}{s}"
                            for s in (".bs2", ".bin")
                            if (root / f"{name}{s}").is_file()
                        ),
                        None,
                    )
                    if sample_file is None:
                        raise DatasetSampleError(
                            root, f"{split_file.name} lists sample {name}, which is missing", None
                        )
                    samples.append(_sample(root, sample_file, label, split, str(label)))
    else:
        with (root / "labels.csv").open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                class_id = int(row["class_id"])
                if not 1 <= class_id <= len(DVS_GESTURE_CLASSES):
                    raise DatasetSampleError(
                        root,
                        f"labels.csv line {line}: class_id {class_id} is not one of DVS "
                        f"Gesture's 1..{len(DVS_GESTURE_CLASSES)}",
                        None,
                    )
                class_name = row.get("class_name") or None
                file = root / row["file"]
                samples.append(_sample(root, file, class_id - 1, "", class_name))
    if not samples:
        raise DatasetSampleError(root, f"{layout} layout found but it holds no samples", None)
    sensor, class_names = _LAYOUT_SENSOR_CLASSES[layout]
    return DatasetFolder(root, layout, sensor, tuple(samples), class_names)


def _sample(
    root: Path, path: Path, label: int, split: str, name: str | None = None
) -> DatasetSample:
    return DatasetSample(path.relative_to(root).as_posix(), label, split, name)


def _split_entries(path: Path) -> Iterator[tuple[str, int]]:
    """(sample, class) pairs of a split file; '#' lines are comments."""
    for line in path.read_text().splitlines():
        fields = re.split(r"[\s,]+", line.strip())
        if len(fields) >= 2 and not fields[0].startswith("#"):
            yield fields[0], int(fields[1])


class TonicNpyReader(MappedNpyReader):
    """tonic's DVSGesture ``.npy``: an (N, 4) array with columns x, y, p, t (t in ms)."""

    format_name = "npy"

    def __init__(self, path: str | Path, options: ReadOptions | None = None) -> None:
        options = options or ReadOptions()
        super().__init__(path, replace(options, time_unit=options.time_unit or "ms"))
        array = self._map()
        if array.ndim != 2 or array.shape[1] != 4 or array.dtype.names is not None:
            raise self._damaged(
                f"holds a {array.dtype} array of shape {array.shape}; expected tonic's (N, 4) "
                "x, y, p, t"
            )

    def _blocks(self) -> Iterator[tuple[int, Mapping[str, npt.NDArray[Any]]]]:
        array = self._map()
        step = self._options.packet_events
        for start in range(0, array.shape[0], step):
            block = np.asarray(array[start : start + step])
            yield start, {"x": block[:, 0], "y": block[:, 1], "p": block[:, 2], "t": block[:, 3]}


class DatasetFolderReader(EventReader):
    """One sample of a dataset folder (``sample`` option), read by its file's own reader.

    Damage is reported by that reader, naming the sample's file, its format and the offset.
    ``folder`` is the folder's listing when the caller holds it already
    (:meth:`DatasetFolder.open`).
    """

    format_name = "tonic"

    def __init__(
        self,
        path: str | Path,
        options: ReadOptions | None = None,
        *,
        folder: DatasetFolder | None = None,
    ) -> None:
        super().__init__(path, options)
        self._folder = folder if folder is not None else scan_dataset(self._path)
        if self._options.sample is None:
            raise DatasetSampleError(self._path, "no sample chosen", self._folder)
        self._sample = self._folder.find(self._options.sample)
        file = self._path / self._sample.path
        self._inner: EventReader
        if file.suffix == ".npy":
            self._inner = TonicNpyReader(file, self._options)
        else:
            from respike.recorders.nmnist import NMnistReader

            self._inner = NMnistReader(file, self._options)
        self._sensor_size = self._folder.sensor_size

    @property
    def folder(self) -> DatasetFolder:
        """The dataset folder: layout, sensor size and the listing of samples."""
        return self._folder

    @property
    def sample(self) -> DatasetSample:
        """The sample this reader reads (relative path, label, split)."""
        return self._sample

    @property
    def sample_path(self) -> Path:
        """The file of the sample."""
        return self._inner.path

    def _items(self) -> Iterator[EventArray | Frame]:
        return self._inner._items()

    def _whole_items(self) -> Iterator[EventArray | Frame]:
        return self._inner._whole_items()

    def _sample_info(self) -> dict[str, Any]:
        """Index in the folder's listing, path, split, label and its class name (or None)."""
        return {
            "index": self._folder.samples.index(self._sample),
            "path": self._sample.path,
            "split": self._sample.split,
            "label": self._sample.label,
            "label_name": self._sample.label_name,
        }
