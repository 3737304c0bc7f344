"""What each message kind carries in its ``meta``: one small typed definition per kind.

The wire format (:mod:`respike.stream.messages`) says a message has a kind and a map of plain
values; this module says which keys each kind uses, with their types, so producers and consumers
spell them once. A producer publishes a typed meta (``node.publish("frames", Frame(index=3),
t, arrays)``: the kind comes with it); a consumer reads one with ``Prediction.read(message)``,
which checks every field and raises :class:`~respike.stream.messages.MessageError` (cause
``meta``) for a missing or ill-typed one, so a bad message is counted like any other.

Fields a source knows about a frame (its index, the true action of a synthetic scene) ride along
on everything made from that frame: :data:`PASSED_ON` lists them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from respike.stream.messages import Message, MessageError


@dataclass(frozen=True)
class Meta:
    """Base of the typed metas: conversion to and from a message's ``meta`` map."""

    KIND: ClassVar[str] = ""

    def to_meta(self) -> dict[str, Any]:
        """The fields as a plain map for the wire; fields left at None are not sent."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def read(cls, message: Message) -> Self:
        """The typed meta of ``message``; MessageError if its kind or a field is wrong."""
        if message.kind != cls.KIND:
            raise MessageError("meta", f"expected a {cls.KIND} message, got {message.kind}")
        return cls.from_meta(message.meta)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Self:
        """The typed meta of a ``meta`` map (unknown keys are ignored: newer senders may add)."""
        values = {}
        for name, spec in _fields(cls).items():
            value = meta.get(name)
            if value is None:
                if spec.required:
                    raise MessageError("meta", f"a {cls.KIND} message needs meta[{name!r}]")
                continue
            if not isinstance(value, spec.accepted) or (
                isinstance(value, bool) and bool not in spec.accepted
            ):
                expected = " or ".join(k.__name__ for k in spec.accepted)
                raise MessageError(
                    "meta", f"{cls.KIND} meta[{name!r}] is {value!r}; expected {expected}"
                )
            values[name] = float(typing.cast(float, value)) if spec.number else value
        return cls(**values)


class _FieldSpec(typing.NamedTuple):
    accepted: tuple[type, ...]
    """Runtime types a value may have (containers by their outer type)."""
    required: bool
    number: bool
    """A float field: an int on the wire (``2`` for ``2.0``) is read as a float."""


_FIELDS: dict[type, dict[str, _FieldSpec]] = {}


def _fields(cls: type) -> dict[str, _FieldSpec]:
    """Each field's spec, worked out once per class from its annotations."""
    if cls in _FIELDS:
        return _FIELDS[cls]
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
        number = kinds == (float,)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = _FieldSpec((float, int) if number else kinds, required, number)
    _FIELDS[cls] = out
    return out


@dataclass(frozen=True)
class Origin(Meta):
    """What a source knows about a frame; carried on by everything made from it."""

    index: int | None = None
    """Frame count at the source."""
    source: str | None = None
    """The camera, file or URL the frame came from."""
    label: int | None = None
    """True class index (a synthetic scene)."""
    action: str | None = None
    """True class name (a synthetic scene)."""

    def origin(self) -> dict[str, Any]:
        """Just the origin fields, to pass on to what is made from this message."""
        return Origin(self.index, self.source, self.label, self.action).to_meta()


PASSED_ON = tuple(f.name for f in dataclasses.fields(Origin))


@dataclass(frozen=True)
class Frame(Origin):
    """An RGB frame (``arrays["frame"]``, (H, W, 3) uint8): from a camera, a scene, a replay."""

    KIND: ClassVar[str] = "frame"
    scene_t: float | None = None
    """Seconds into a synthetic scene."""
    sensor_t: int | None = None
    """A recording's own time of the frame (µs)."""
    key_index: int | None = None
    """On key frames: the frame count of the residual node at this key frame."""


@dataclass(frozen=True)
class Residual(Origin):
    """A signed residual (``arrays["residual"]``, (C, h, w) float32): one SNN step."""

    KIND: ClassVar[str] = "residual"
    key_index: int | None = None
    """The residual node's frame count at the key frame of this step's segment (None: the
    latest key frame, for sources that do not count)."""
    key_residual: str = "zero"
    """What a key frame's own residual is: zero or previous."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Time spent per stage so far (ms), by stage name."""


@dataclass(frozen=True)
class Events(Origin):
    """An event packet (``arrays["events"]``) covering ``[window_start, window_end)`` µs."""

    KIND: ClassVar[str] = "events"
    width: int = 0
    """Sensor width in pixels."""
    height: int = 0
    """Sensor height in pixels."""
    window_start: int | None = None
    window_end: int | None = None
    key_index: int | None = None
    """Events emulated from frames: the key frame of their segment, as for residuals."""
    latency_ms: dict[str, float] | None = None


@dataclass(frozen=True)
class Features(Origin):
    """Intermediate maps of the split model (``stage1``..``stage4`` arrays)."""

    KIND: ClassVar[str] = "features"
    key_index: int | None = None
    energy_pj: float = 0.0
    """Energy of what made these features."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    """The sender skipped the work for this input (a still step, a still key frame): no
    arrays; the receiver repeats what it had (the last prediction, the last context)."""


@dataclass(frozen=True)
class Prediction(Meta):
    """A rolling prediction for one step (``arrays["probs"]``: this step's probabilities)."""

    KIND: ClassVar[str] = "prediction"
    label: str = ""
    """The rolling label: smoothed, with hysteresis, ``no action`` below the threshold (empty:
    readers take the first of ``topk``)."""
    topk: list[list[Any]] = field(default_factory=list)
    """``[name, score]`` pairs, best first."""
    raw_label: str | None = None
    """This step's own best label."""
    state: str | None = None
    """``changed`` when the rolling label just changed, else ``steady``."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Per stage, plus ``e2e``: capture to prediction."""
    energy_uj: float | None = None
    """Energy of this step, the key frame's share included (µJ)."""
    snn_steps: int | None = None
    """SNN steps computed for this prediction (0: held on a still scene)."""
    ann_passes: int | None = None
    """Key-frame ANN passes for this prediction (1 on the first step of a segment whose key
    frame the ANN ran on, else 0)."""
    truth: str | None = None
    """The true action, when the source knows it."""


@dataclass(frozen=True)
class Stats(Meta):
    """A node's state, published every second on ``NAME/stats``."""

    KIND: ClassVar[str] = "stats"
    node: str
    kind: str
    uptime_s: float
    busy: float
    """Share of wall time spent in the node's handlers."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Per input port: received, dropped, gaps, restarts, invalid by cause."""
    outputs: dict[str, int] = field(default_factory=dict)
    """Messages sent per topic."""
    hop_ms: dict[str, float] = field(default_factory=dict)
    age_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    """The node's own numbers (frames, events per second, ...)."""


def prediction_record(message: Message) -> dict[str, Any]:
    """A prediction as plain JSON values: what ``ros2_out`` and ``foxglove`` publish."""
    prediction = Prediction.read(message)
    return {
        "t": message.t,
        "label": prediction.label,
        "topk": prediction.topk,
        "raw_label": prediction.raw_label,
        "state": prediction.state,
        "latency_ms": prediction.latency_ms,
        "energy_uj": prediction.energy_uj,
    }


PREDICTION_RECORD_SCHEMA: dict[str, Any] = {
    "title": "respike.Prediction",
    "description": "A rolling action prediction of respike (one per SNN step).",
    "type": "object",
    "properties": {
        "t": {"type": "integer", "description": "capture time of the step (µs)"},
        "label": {"type": "string", "description": "rolling label; 'no action' below threshold"},
        "topk": {
            "type": "array",
            "description": "[label, probability] pairs, best first",
            "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
        },
        "raw_label": {"type": ["string", "null"], "description": "this step's own best label"},
        "state": {"type": ["string", "null"], "description": "changed or steady"},
        "latency_ms": {
            "type": "object",
            "description": "per stage; e2e is capture to prediction",
            "additionalProperties": {"type": "number"},
        },
        "energy_uj": {"type": ["number", "null"], "description": "energy of this step (µJ)"},
    },
}
"""JSON schema of :func:`prediction_record` (Foxglove shows fields by it)."""


Step = Residual | Events | Features
"""What one or more SNN steps arrive as."""


def read_step(message: Message) -> Step:
    """The typed meta of a step message (residual, events or features): MessageError for
    another kind or a bad field."""
    for cls in (Residual, Events, Features):
        if message.kind == cls.KIND:
            return cls.from_meta(message.meta)
    raise MessageError("meta", f"a {message.kind} message is not an SNN step")


__all__ = [
    "PASSED_ON",
    "PREDICTION_RECORD_SCHEMA",
    "Events",
    "Features",
    "Frame",
    "Meta",
    "Origin",
    "Prediction",
    "Residual",
    "Stats",
    "Step",
    "prediction_record",
    "read_step",
]
