"""The errors the event-file readers raise: damaged files, unknown formats, dataset choices."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from respike.recorders.datasets import DatasetFolder


class EventFileError(ValueError):
    """A recording cannot be read past some point: truncated, corrupted or inconsistent.

    It names the file, the format and, where the format has one, the byte offset of the first
    bad byte (for a bag: the offset inside the named message's payload), so a user can cut the
    file there or report it. Readers raise it only after they have yielded every event that lies
    before the damage, so the valid prefix is never lost; with ``strict=False`` the reader stops
    quietly instead and keeps this error in ``reader.error``.
    """

    def __init__(
        self,
        path: str | Path,
        format: str,
        reason: str,
        *,
        offset: int | None = None,
        where: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = format
        self.reason = reason
        self.offset = offset
        self.where = where
        at = f" at byte {offset}" if offset is not None else ""
        inside = f" ({where})" if where else ""
        super().__init__(f"{self.path}: {format} file cannot be read{at}{inside}: {reason}")


class UnknownFormatError(EventFileError):
    """No reader recognises the file.

    The message is one short line: the file, what was found, and where the formats are listed
    (``respike info --help``); the full list is in ``supported`` for programs that want it.
    """

    def __init__(self, path: str | Path, reason: str, supported: Iterable[str]) -> None:
        self.supported = tuple(supported)
        super().__init__(path, "unknown", reason)
        self.args = (
            f"{self.path}: unknown event-file format: {reason}; name one with --format "
            "(format= in Python), `respike info --help` lists them",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class EmptyFileError(UnknownFormatError):
    """The file has no bytes at all: nothing to detect, nothing to read."""

    def __init__(self, path: str | Path, supported: Iterable[str]) -> None:
        super().__init__(path, "the file is empty", supported)
        self.args = (f"{self.path}: the file is empty (0 bytes)",)


class DatasetSampleError(ValueError):
    """A dataset folder was opened without a sample, or with one it does not hold.

    The message names the folder and lists what it holds (layout, counts, the first samples
    by index), so the user can pick ``sample=INDEX`` / ``sample=PATH`` or ``FOLDER#INDEX``.
    """

    def __init__(self, path: str | Path, reason: str, folder: DatasetFolder | None) -> None:
        self.path = Path(path)
        self.folder = folder
        where = (
            f"; it holds: {folder.listing()}. Open one with sample=INDEX or sample=PATH, "
            f"or as {self.path}#INDEX"
            if folder is not None
            else "; expected tonic's NMNIST (Train/<digit>/*.bin) or DVSGesture "
            "(ibmGestureTrain/userNN_light/<label>.npy) layout, train*.txt/test*.txt split "
            "files or a labels.csv"
        )
        super().__init__(f"{self.path}: dataset folder: {reason}{where}")
