"""Teach mode: a user's own actions learned from a few examples on a base checkpoint's features.

The base network stays frozen. Each example (a window of about 2 s of the source) runs once
through it with the head a taught model has (:func:`teachable`): the mean and spread over the
last 32 steps of the SNN's own spikes per stage (before fusion, so the key frame's scene does
not colour them), of its third stage's spikes averaged on a 2x2 grid and, for a base with
motion detectors, of their channels on the same grid (where things move and which parts of a
body fire), carried across key frames. A new head is
fitted on those features (a linear discriminant on standardised features: class means, one
shared covariance shrunk toward its mean variance; closed form, under a second), and a
``no action`` rule on the same features, taught actions against the recorded background
examples (:mod:`respike.models.open_set`). The key frame's appearance is left out by default:
it ties examples to one scene and performer. The result is an ordinary checkpoint: the base
network, the new head and rule, the taught classes, and the examples' features, so one action
can be added or removed later without recording the rest again (:func:`stored_examples`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from respike.events.inputs import NO_ACTION
from respike.models.checkpoint import SHIPPED_DIR, Checkpoint, save_checkpoint
from respike.models.hybrid import Clip, HybridReSpike, ModelConfig
from respike.models.open_set import OpenSetRule, fit_open_set, linear_discriminant

BACKGROUND_NAMES = frozenset({"background", NO_ACTION, "no_action"})
"""Labels that mark an example as background: what the taught model must call ``no action``."""


@dataclass(frozen=True)
class Example:
    """One recorded example: its label, where it came from, and what the base made of it:
    ``features (T, D)``, the taught head's inputs per step."""

    label: str
    source: str
    features: npt.NDArray[np.float32]

    @property
    def background(self) -> bool:
        """Whether this example shows no action."""
        return self.label in BACKGROUND_NAMES


@dataclass(frozen=True)
class TeachSettings:
    """How a taught model is fitted (chosen on synthetic validation data: ``bench/teach.py``).

    ``head_shrinkage``: weight of the mean variance in the head's shared covariance (few
    examples need much); ``quantile`` and ``rule_shrinkage``: the ``no action`` rule's
    (:func:`~respike.models.open_set.fit_open_set`; no quantile: the recorded background
    examples alone decide what is no action).
    """

    window: int = 32
    """Steps the taught head looks back over (mean and spread of the SNN's features; 32 steps
    are about 1 s at 30 fps). A taught base keeps its own."""
    grid: tuple[int, int] = (2, 2)
    """Rows and columns on which a base's motion detectors and the spikes of ``grid_stages``
    are also averaged for the taught head (where things move); (0, 0): the SNN's stages as
    wholes only."""
    grid_stages: tuple[int, ...] = (2,)
    """SNN stages whose spikes the head also sees on ``grid`` (stage 3 of 4: parts of a body)."""
    head_shrinkage: float = 0.3
    quantile: float | None = None
    rule_shrinkage: float = 0.2
    appearance: bool = False
    """Also fit on the key frame's ANN features. Off: on the SNN's motion features only, which
    carry over to another scene, performer or lighting (a base without an SNN uses its ANN)."""

    def __post_init__(self) -> None:
        if not 0 <= self.head_shrinkage <= 1 or not 0 <= self.rule_shrinkage <= 1:
            raise ValueError("shrinkage must be within 0..1")
        if self.window < 1:
            raise ValueError(f"window is {self.window}; expected ≥ 1 step")
        if self.quantile is not None and not 0 < self.quantile < 1:
            raise ValueError(f"quantile is {self.quantile}; expected 0 < quantile < 1")


def teachable(model: HybridReSpike, settings: TeachSettings | None = None) -> HybridReSpike:
    """``model``'s network with the head a taught model has (looking back ``settings.window``
    steps; weights zero until fitted): what examples run through. A model that already has a
    windowed head (a taught one) is returned as it is."""
    if model.config.head_window or model.config.mode == "ann":
        return model
    if model.inline:
        raise ValueError(
            "teach mode reads the SNN's spikes before fusion, but this base fuses in line (the "
            "key frame reaches its SNN's later stages): teach on a late-fusion base such as "
            "actions-late"
        )
    settings = settings or TeachSettings()
    snn = model.config.snn
    stages = tuple(s for s in settings.grid_stages if s < len(snn.widths))
    grid = settings.grid if snn.motion_shifts or stages else (0, 0)
    config = replace(
        model.config,
        head_window=settings.window,
        head_fused=False,
        open_set=None,
        snn=replace(snn, head_grid=grid, grid_stages=stages if any(grid) else ()),
    )
    return model.rebuilt(config, fresh=("head.", "open_set."))


@torch.no_grad()
def featurize(
    model: HybridReSpike, keyframes: torch.Tensor, steps: torch.Tensor
) -> npt.NDArray[np.float32]:
    """The head's inputs at every step of one clip (``keyframes (S, 3, H, W)``,
    ``steps (S*K, C, h, w)``), from ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    out = model(Clip(keyframes[None], steps[None]))
    model.train(was_training)
    return out.features[0].numpy()


@dataclass(frozen=True)
class Taught:
    """A taught model: the checkpoint contents and how long the fit took."""

    model: HybridReSpike
    class_names: tuple[str, ...]
    extra: dict[str, Any]
    fit_seconds: float

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (atomically) and its generated model card ``PATH.md`` beside it."""
        written = save_checkpoint(path, self.model, self.class_names, extra=self.extra)
        written.with_suffix(".md").write_text(model_card(written.stem, self))
        return written


def teach(
    base: Checkpoint, examples: Sequence[Example], settings: TeachSettings | None = None
) -> Taught:
    """Fit a new head and ``no action`` rule on ``examples`` over ``base``'s frozen network.

    Actions are the examples' labels in order of first appearance; background examples (see
    :data:`BACKGROUND_NAMES`) are what the model must call ``no action``. Raises ``ValueError``
    with the reason when the examples cannot make a model (none, no background, no action).
    """
    settings = settings or TeachSettings()
    start = time.perf_counter()
    actions = list(dict.fromkeys(e.label for e in examples if not e.background))
    if not examples:
        raise ValueError("no examples recorded: record each action and some background first")
    if not actions:
        raise ValueError("only background examples: record at least one action to teach")
    if not any(e.background for e in examples):
        raise ValueError(
            "no background examples: record a few seconds of no action too, so the model "
            "learns what to call `no action`"
        )
    known = [e for e in examples if not e.background]
    back = [e for e in examples if e.background]
    labels = np.concatenate([np.full(len(e.features), actions.index(e.label)) for e in known])
    features = np.concatenate([e.features for e in known])
    network = teachable(base.model, settings)
    expected = network.head.in_features
    for e in examples:
        if e.features.ndim != 2 or e.features.shape[1] != expected:
            raise ValueError(
                f"example {e.label!r} ({e.source}) was made by another base network "
                f"({e.features.shape[-1]} features, expected {expected})"
            )
    head_columns = _columns(network.config, settings.appearance)
    weight = torch.zeros(len(actions), expected)
    weight[:, head_columns], bias = linear_discriminant(
        features[:, head_columns], labels, len(actions), settings.head_shrinkage, standardize=True
    )
    fitted = fit_open_set(
        features[:, head_columns],
        labels,
        np.concatenate([e.features[:, head_columns] for e in back]),
        np.zeros(sum(len(e.features) for e in back), dtype=np.int64),
        features[:, head_columns],
        quantile=settings.quantile,
        shrinkage=settings.rule_shrinkage,
        standardize=True,
    )
    rule = OpenSetRule(replace(fitted.config, dims=expected, reads="features"))
    rule.weight[:, head_columns] = fitted.weight
    rule.bias.copy_(fitted.bias)
    rule.threshold.copy_(fitted.threshold)
    config = replace(network.config, num_classes=len(actions), open_set=rule.config)
    model = network.rebuilt(config, fresh=("head.", "open_set."))
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
    assert model.open_set is not None
    model.open_set.load_state_dict(rule.state_dict())
    seconds = time.perf_counter() - start
    shipped = base.path.parent == SHIPPED_DIR
    origin = base.extra.get("teach", {}).get("base", base.path.stem if shipped else str(base.path))
    extra = {
        **{k: v for k, v in base.extra.items() if k not in ("teach", "open_set")},
        "teach": {
            "base": origin,
            "settings": asdict(settings),
            "fit_seconds": seconds,
            "examples": [
                {
                    "label": e.label,
                    "source": e.source,
                    "features": torch.from_numpy(np.ascontiguousarray(e.features)),
                }
                for e in examples
            ],
        },
    }
    return Taught(model, tuple(actions), extra, seconds)


def _columns(config: ModelConfig, appearance: bool) -> slice:
    """The head inputs a taught model reads: the SNN's (the first ones) unless ``appearance``
    or the model has no SNN."""
    if appearance or config.mode == "ann":
        return slice(None)
    return slice(0, sum(config.snn.feature_widths) * (2 if config.head_window else 1))


def stored_examples(checkpoint: Checkpoint) -> list[Example]:
    """The examples a taught checkpoint was fitted on (empty for a checkpoint never taught)."""
    return [
        Example(
            str(item["label"]),
            str(item["source"]),
            np.asarray(item["features"], dtype=np.float32),
        )
        for item in checkpoint.extra.get("teach", {}).get("examples", [])
    ]


def model_card(name: str, taught: Taught) -> str:
    """A Markdown model card for a taught checkpoint: base, actions, examples, settings."""
    info = taught.extra["teach"]
    counts: dict[str, list[str]] = {}
    for item in info["examples"]:
        counts.setdefault(str(item["label"]), []).append(str(item["source"]))
    lines = [
        f"# Model card: `{name}` (taught)",
        "",
        f"Taught on the frozen network of `{info['base']}`: a new head (linear discriminant) and",
        "`no action` rule fitted on the examples below "
        f"in {info['fit_seconds']:.2f} s. Input: `{taught.model.config.input_spec}`.",
        "",
        "| label | examples | from |",
        "|---|---:|---|",
    ]
    for label, sources in counts.items():
        shown = ", ".join(sources[:3]) + (f", ... ({len(sources)})" if len(sources) > 3 else "")
        lines.append(f"| {label} | {len(sources)} | {shown} |")
    lines += [
        "",
        f"Settings: {info['settings']}. Accuracy is not measured here: a few examples of a "
        "user's own actions leave none to test on; `bench/teach.py` measures the method.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Segment:
    """``label`` shown from ``start`` to ``end`` seconds of a source (``end=None``: its end)."""

    label: str
    start: float
    end: float | None

    @classmethod
    def parse(cls, text: str) -> Segment:
        """``LABEL=START:END`` (seconds; END may be empty for the source's end)."""
        label, eq, span = text.partition("=")
        begin, colon, finish = span.partition(":")
        try:
            if not (label.strip() and eq and colon):
                raise ValueError
            segment = cls(label.strip(), float(begin), float(finish) if finish else None)
        except ValueError:
            raise ValueError(
                f"segment {text!r}; expected LABEL=START:END in seconds, e.g. wave=2.0:6.5"
            ) from None
        if segment.start < 0 or (segment.end is not None and segment.end <= segment.start):
            raise ValueError(f"segment {text!r}: expected 0 <= START < END")
        return segment


def video_examples(
    model: HybridReSpike, path: str | Path, segments: Sequence[Segment], window_s: float = 2.0
) -> list[Example]:
    """Examples from a video file: each segment cut into windows of ``window_s`` seconds (the
    last, shorter part kept when it holds a key-frame interval), encoded by the live path's
    kernels and run through ``model``.

    A segment that runs past the end of the video is an error naming where the video ends.
    """
    from respike.events import DvsEmulator
    from respike.models.datasets.encoders import FrameEncoder
    from respike.recorders.video import frame_count, read_frames

    spec = model.config.input_spec
    encoder = FrameEncoder(spec, channel_order="bgr", dvs=DvsEmulator(channel_order="bgr"))
    total, fps = frame_count(path)
    k = spec.keyframe_interval
    examples = []
    for segment in segments:
        first = round(segment.start * fps)
        last = total if segment.end is None else round(segment.end * fps)
        if last > total or first >= total:
            raise ValueError(
                f"{path} ends at {total / fps:.2f} s, inside segment {segment.label}="
                f"{segment.start}:{'' if segment.end is None else segment.end}"
            )
        per_window = max(k, round(window_s * fps) // k * k)
        for begin in range(first, last, per_window):
            steps = min(per_window, last - begin) // k * k
            if steps < k:
                continue
            need = encoder.frames_needed(steps)
            frames, _ = read_frames(path, need, start_s=begin / fps)
            if len(frames) < need:
                raise ValueError(f"{path}: only {len(frames)} frames from {begin / fps:.2f} s")
            keyframes, inputs = encoder.encode(np.stack(frames))
            features = featurize(model, torch.from_numpy(keyframes), torch.from_numpy(inputs))
            source = f"{Path(path).name}@{begin / fps:.2f}-{(begin + steps) / fps:.2f}s"
            examples.append(Example(segment.label, source, features))
    return examples


def event_examples(
    model: HybridReSpike, path: str | Path, segments: Sequence[Segment], window_s: float = 2.0
) -> list[Example]:
    """Examples from an event recording (anything :func:`respike.recorders.open_events` reads),
    for a base that takes events: each segment (seconds after the first event) cut into windows
    of ``window_s``, binned as the live path bins them, run through ``model``.

    A base that takes residuals is refused (it needs camera frames), as is a segment past the
    recording's end.
    """
    from respike.models.datasets.encoders import EventEncoder, no_keyframes
    from respike.recorders import open_events

    spec = model.config.input_spec
    if spec.snn_input != "events":
        raise ValueError(
            f"{path} holds events; this base takes residual frames from a camera (teach an "
            "event base such as gestures-dvs, or give a video)"
        )
    if model.config.mode != "snn":
        raise ValueError(f"{path} holds events but no key frames; the base needs an SNN-only model")
    reader = open_events(path)
    events = reader.read_all()
    sensor = reader.sensor_size
    if sensor is None or len(events) == 0:
        raise ValueError(f"{path}: no events or no sensor size to bin them by")
    first = int(events["t"][0])
    duration_s = (int(events["t"][-1]) - first) / 1e6
    k = spec.keyframe_interval
    bin_s = spec.time_bin_us / 1e6
    per_window = max(k, round(window_s / bin_s) // k * k)
    encoder = EventEncoder(spec)
    examples = []
    for segment in segments:
        end = duration_s if segment.end is None else segment.end
        if end > duration_s + bin_s or segment.start >= duration_s:
            raise ValueError(
                f"{path} ends at {duration_s:.2f} s, inside segment {segment.label}="
                f"{segment.start}:{'' if segment.end is None else segment.end}"
            )
        begin = segment.start
        while begin < end:
            steps = min(per_window, int((end - begin) / bin_s)) // k * k
            if steps < k:
                break
            start_us = first + round(begin * 1e6)
            inputs = encoder.encode(events, sensor, start_us, steps)
            features = featurize(model, no_keyframes(steps // k), torch.from_numpy(inputs))
            source = f"{Path(path).name}@{begin:.2f}-{begin + steps * bin_s:.2f}s"
            examples.append(Example(segment.label, source, features))
            begin += steps * bin_s
    return examples


__all__ = [
    "BACKGROUND_NAMES",
    "Example",
    "Segment",
    "Taught",
    "TeachSettings",
    "event_examples",
    "featurize",
    "model_card",
    "stored_examples",
    "teach",
    "teachable",
    "video_examples",
]
