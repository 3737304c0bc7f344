"""The one entry point, :func:`open_events`: format registry and detection from the file header.

Detection reads the first bytes: magic numbers (AEDAT, HDF5, NumPy, zip, SQLite, MCAP, ROS 1
bag), then the Prophesee ``%`` header, then plain text; the extension only decides between
formats that have no header (N-MNIST binary) or a damaged one. ``format=`` skips detection.
A folder is a ROS 2 bag (``metadata.yaml``) or a dataset folder (see
:mod:`respike.recorders.datasets`), read one sample at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from respike.recorders.base import EventReader, ReadOptions
from respike.recorders.errors import EmptyFileError, UnknownFormatError

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class FormatSpec:
    """One readable format: registry name, what it is, usual extensions, and its reader."""

    name: str
    description: str
    extensions: tuple[str, ...]
    opener: Callable[[Path, ReadOptions], EventReader]

    def listing(self) -> str:
        """``name (.ext, ...): description`` as shown in the unknown-format error."""
        ext = ", ".join(self.extensions) if self.extensions else "folder"
        return f"{self.name} ({ext}): {self.description}"


FORMATS: dict[str, FormatSpec] = {}


def register_format(spec: FormatSpec) -> None:
    """Add a format to the registry; a second format with the same name is an error."""
    if spec.name in FORMATS:
        raise ValueError(f"event-file format {spec.name!r} is already registered")
    FORMATS[spec.name] = spec


def supported_formats() -> list[str]:
    """One line per readable format, for error messages and ``respike info --help``."""
    return [spec.listing() for spec in FORMATS.values()]


def open_events(
    path: str | Path,
    *,
    format: str | None = None,
    strict: bool = True,
    packet_events: int = 1 << 14,
    topic: str | None = None,
    time_unit: str | None = None,
    sample: int | str | None = None,
) -> EventReader:
    """Open any supported event recording and return its reader.

    The format comes from the file's header (``format=`` forces one). The reader streams
    ``EVENT_DTYPE`` packets with bounded memory (``for packet in reader``), fixed-duration windows
    (``reader.windows(duration_us)``), frames when the recording has them, the sensor size and a
    one-pass ``reader.summary()``. ``strict=False`` turns damage after a valid prefix into
    ``reader.error`` instead of an exception; ``topic`` picks the event topic of a bag;
    ``time_unit`` sets the unit of formats without one (see :class:`ReadOptions`); ``sample``
    picks the recording of a dataset folder (index or relative path), which ``FOLDER#INDEX``
    does too.

    >>> reader = open_events("recording.raw")                      # doctest: +SKIP
    >>> for window in reader.windows(10_000): ...                  # doctest: +SKIP
    >>> digit = open_events("NMNIST#12")                           # doctest: +SKIP
    """
    p, chosen = split_sample(path)
    if chosen is not None:
        if sample is not None and sample != chosen:
            raise ValueError(f"{path} names sample {chosen!r} but sample={sample!r} was given")
        sample = chosen
    if not p.exists():
        raise FileNotFoundError(f"no such event recording: {p}")
    options = ReadOptions(
        strict=strict,
        packet_events=packet_events,
        topic=topic,
        time_unit=time_unit,
        sample=sample,
    )
    name = format or detect_format(p)
    if name not in FORMATS:
        raise UnknownFormatError(p, f"format {name!r} is not known", supported_formats())
    return FORMATS[name].opener(p, options)


def split_sample(path: str | Path) -> tuple[Path, int | str | None]:
    """``FOLDER#INDEX`` (or ``FOLDER#REL/PATH``) as the folder and its sample choice; any
    other path (one that exists, or has no folder before a ``#``) as itself and ``None``."""
    p = path if isinstance(path, Path) else Path(path)
    if not p.exists() and "#" in str(p):
        base, _, choice = str(path).rpartition("#")
        if Path(base).is_dir() and choice:
            return Path(base), int(choice) if choice.isdigit() else choice
    return p, None


def detect_format(path: str | Path) -> str:
    """Registry name of the recording's format, from its header (extension as a hint)."""
    p = path if isinstance(path, Path) else Path(path)
    if p.is_dir():
        if (p / "metadata.yaml").exists():
            return "rosbag2"
        from respike.recorders.datasets import dataset_layout

        if dataset_layout(p) is not None:
            return "tonic"
        raise UnknownFormatError(
            p,
            "folder is neither a ROS 2 bag (metadata.yaml) nor a dataset folder (tonic "
            "NMNIST/DVSGesture layout, train*.txt/test*.txt lists or labels.csv)",
            supported_formats(),
        )
    with p.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        raise EmptyFileError(p, supported_formats())
    ext = p.suffix.lower()
    magic = _by_magic(head)
    if magic:
        return magic
    if head.startswith(b"%"):
        from respike.recorders.prophesee import read_header

        encoding = read_header(p).encoding
        if encoding in ("evt2", "evt3", "dat"):
            return encoding
        if encoding == "evt21":
            raise UnknownFormatError(p, "Prophesee EVT 2.1 is not supported", supported_formats())
        if ext == ".dat":
            return "dat"
        if _looks_like_text(head):
            return "text"  # a text event list whose header lines start with '%'
        raise UnknownFormatError(
            p,
            "Prophesee header names no event format (pass format='evt2' or 'evt3')",
            supported_formats(),
        )
    if ext in (".bin", ".bs2"):
        return "nmnist"
    if _looks_like_text(head):
        return "text"
    if ext == ".dat":
        return "dat"
    raise UnknownFormatError(p, f"no known header: {_first_bytes(head)}", supported_formats())


def _first_bytes(head: bytes) -> str:
    """What a file starts with, briefly: a bit of its text, or its first bytes in hex."""
    text = head[:40].split(b"\n")[0]
    if text and all(32 <= b < 127 for b in text):
        return f"it starts with text {text.decode('ascii')[:24]!r}"
    return f"its first bytes are {head[:8].hex(' ')}"


def _by_magic(head: bytes) -> str | None:
    """Formats with a fixed signature at byte 0."""
    if head.startswith(b"#!AER-DAT4"):
        return "aedat4"
    if head.startswith(b"#!AER-DAT3"):
        return "aedat3"
    if head.startswith(b"#!AER-DAT2"):
        return "aedat2"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith((b"SQLite format 3\x00", b"\x89MCAP")):
        return "rosbag2"
    if head.startswith(b"#ROSBAG V2.0"):
        return "rosbag1"
    return None


def _looks_like_text(head: bytes) -> bool:
    """Printable ASCII whose first data line has four numbers (t x y p)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#%/":
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != 4:
            return False
        try:
            [float(v) for v in fields]
        except ValueError:
            return False
        return True
    return False


def _prophesee(encoding: str) -> Callable[[Path, ReadOptions], EventReader]:
    def opener(path: Path, options: ReadOptions) -> EventReader:
        from respike.recorders.prophesee import PropheseeReader

        return PropheseeReader(path, options, encoding=encoding)

    return opener


def _aedat_legacy(version: int) -> Callable[[Path, ReadOptions], EventReader]:
    def opener(path: Path, options: ReadOptions) -> EventReader:
        from respike.recorders.aedat import AedatLegacyReader

        return AedatLegacyReader(path, options, version=version)

    return opener


def _lazy(module: str, cls: str) -> Callable[[Path, ReadOptions], EventReader]:
    """An opener that imports its reader module on first use (keeps this import light)."""

    def opener(path: Path, options: ReadOptions) -> EventReader:
        import importlib

        reader: type[EventReader] = getattr(importlib.import_module(module), cls)
        return reader(path, options)

    return opener


_PKG = "respike.recorders"
for _spec in (
    FormatSpec(
        "aedat4", "iniVation AEDAT 4.0 (DV)", (".aedat4",), _lazy(f"{_PKG}.aedat", "Aedat4Reader")
    ),
    FormatSpec("aedat3", "iniVation AEDAT 3.1 (cAER)", (".aedat",), _aedat_legacy(3)),
    FormatSpec("aedat2", "iniVation AEDAT 2.0 (jAER)", (".aedat", ".dat"), _aedat_legacy(2)),
    FormatSpec("evt3", "Prophesee RAW EVT 3.0", (".raw",), _prophesee("evt3")),
    FormatSpec("evt2", "Prophesee RAW EVT 2.0", (".raw",), _prophesee("evt2")),
    FormatSpec("dat", "Prophesee DAT (CD events)", (".dat",), _prophesee("dat")),
    FormatSpec(
        "nmnist",
        "N-MNIST 40-bit binary (N-MNIST, N-Caltech101, DVS Gesture)",
        (".bin", ".bs2"),
        _lazy(f"{_PKG}.nmnist", "NMnistReader"),
    ),
    FormatSpec(
        "hdf5",
        "HDF5 with events/{x,y,t,p} or events/{xs,ys,ts,ps}",
        (".h5", ".hdf5"),
        _lazy(f"{_PKG}.arrays", "Hdf5Reader"),
    ),
    FormatSpec(
        "npy",
        "NumPy structured array with t, x, y, p fields",
        (".npy",),
        _lazy(f"{_PKG}.arrays", "NpyReader"),
    ),
    FormatSpec(
        "npz",
        "NumPy archive: a structured array or x, y, t, p columns",
        (".npz",),
        _lazy(f"{_PKG}.arrays", "NpzReader"),
    ),
    FormatSpec(
        "text",
        "text lines 't x y p' (t in µs, or seconds with a decimal point)",
        (".txt", ".csv"),
        _lazy(f"{_PKG}.text", "TextReader"),
    ),
    FormatSpec(
        "rosbag2",
        "ROS 2 bag (sqlite3 or MCAP): EventPacket evt3/libcaer/libcaer_cmp/mono/trigger, EventArray",
        (".db3", ".mcap"),
        _lazy(f"{_PKG}.rosbag", "RosBagReader"),
    ),
    FormatSpec(
        "rosbag1",
        "ROS 1 bag: dvs_msgs/EventArray, EventPacket",
        (".bag",),
        _lazy(f"{_PKG}.rosbag", "RosBagReader"),
    ),
    FormatSpec(
        "tonic",
        "dataset folder, one sample by sample= or FOLDER#INDEX: tonic NMNIST/DVSGesture layouts,"
        " N-MNIST split lists, labels.csv",
        (),
        _lazy(f"{_PKG}.datasets", "DatasetFolderReader"),
    ),
):
    register_format(_spec)
