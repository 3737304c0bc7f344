"""Data SPEC strings (``KIND:PATH?key=value``) and the dataset each one opens."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from respike.events.inputs import InputSpec, parse_size
from respike.models.datasets.base import ClipDataset
from respike.models.datasets.recordings import DvsGesture, EventRecording, NMnist
from respike.models.datasets.synthetic import (
    TRAINING_SCENE,
    DvsRandomisation,
    SyntheticActions,
    scene_from_dict,
)
from respike.models.datasets.videos import VideoFolder
from respike.synthetic import CLASS_NAMES, HELDOUT_BACKGROUNDS, TRAIN_BACKGROUNDS

#: The kinds a data SPEC may name (``KIND:PATH``; ``synthetic`` takes no path).
DATA_KINDS: tuple[str, ...] = ("synthetic", "nmnist", "dvsgesture", "videos", "events")


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
    "videos": {"split", "segments", "split_file", "start", "windows"},
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
            windows=o.get("windows", "first"),
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
