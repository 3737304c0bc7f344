"""What the viewer reads from each message kind: checked arrays and the rows the page shows.

Input messages are dispatched on their kind (any port names):

- ``frame``: ``arrays["frame"]`` (H, W, 3) uint8 RGB (also (H, W) grey, or floats in [0, 1]);
- ``events``: ``arrays["events"]`` packet of :data:`~respike.events.types.EVENT_DTYPE`; the
  sensor size is ``meta["width"]``/``meta["height"]`` when given, else the largest x/y seen;
  the image counts ON (red) and OFF (blue) events of the packets since the last image (with
  no page open, of the newest packet);
- ``residual``: ``arrays["residual"]`` float32 (C, H, W), signed; C = 1 grey, 3 RGB (mean), or
  2 polarity (channel 1 ON minus channel 0 OFF); drawn red (positive) / blue (negative); an
  all-zero residual (a key frame's, by construction) keeps the previous image, so the panel
  does not blink black every K frames;
- ``prediction``: :class:`respike.stream.kinds.Prediction` (label, top-k, latencies, energy,
  state), referring to the frame captured at the message's ``t``; fields it does not know are
  shown as they are;
- ``stats``: :class:`respike.stream.kinds.Stats` of each node; rates come from consecutive
  stats of the same node.

Other kinds (``features``) are counted and ignored. Each ``read_*`` function raises
ValueError (MessageError for a field of the wrong type) for an input it cannot show, so the bad
message is counted where it arrives rather than when a browser asks for its image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from respike.events.images import check_image
from respike.stream import kinds
from respike.stream.messages import Message, now_us

EVENT_FIELDS = frozenset({"x", "y", "p"})
"""Fields an event packet needs to be drawn: :data:`~respike.events.types.EVENT_DTYPE` has them."""

PREDICTION_FIELDS = frozenset(f.name for f in dataclasses.fields(kinds.Prediction))
"""The fields of a prediction; any others are passed on to the page under ``meta``."""


def plain(value: Any) -> Any:
    """``value`` with only JSON values: non-finite floats become None, unknown types strings.

    Browsers reject ``NaN`` in JSON, and a model may well report one.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _array(message: Message, name: str) -> np.ndarray:
    if name not in message.arrays:
        raise ValueError(
            f"{message.kind} message on {message.topic} has no array {name!r}; "
            f"arrays: {sorted(message.arrays)}"
        )
    return message.arrays[name]


def read_frame(message: Message) -> tuple[np.ndarray, dict[str, Any]]:
    """A frame message's frame, checked (converted only when drawn), and its size."""
    frame = _array(message, "frame")
    check_image(frame)
    height, width = frame.shape[:2]
    return frame, {"width": width, "height": height}


def read_events(
    message: Message, sensor: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int], dict[str, Any]]:
    """An events message's packet, the sensor (width, height) after it, and its counts.

    ``sensor`` is the size known so far; without a size in the meta it grows to the largest
    x/y seen.
    """
    events = _array(message, "events")
    if events.ndim != 1 or not set(events.dtype.names or ()) >= EVENT_FIELDS:
        raise ValueError(
            f"events on {message.topic} are {events.dtype} {events.shape}; "
            "expected a 1-D packet with fields x, y, p (EVENT_DTYPE)"
        )
    meta = kinds.Events.read(message)
    if meta.width > 0 and meta.height > 0:
        sensor = (meta.width, meta.height)
    else:
        seen_x = int(events["x"].max()) + 1 if events.size else 0
        seen_y = int(events["y"].max()) + 1 if events.size else 0
        sensor = (max(sensor[0], seen_x), max(sensor[1], seen_y))
    on = int(np.count_nonzero(events["p"]))
    return events, sensor, {"width": sensor[0], "height": sensor[1], "count": events.size, "on": on}


def read_residual(message: Message) -> tuple[np.ndarray, dict[str, Any]]:
    """A residual message's residual, its shape checked, and its size and channels."""
    residual = _array(message, "residual")
    shape = residual.shape
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] not in (1, 2, 3)):
        raise ValueError(
            f"residual on {message.topic} has shape {shape}; expected (C, H, W), C = 1, 2 or 3"
        )
    channels = 1 if len(shape) == 2 else shape[0]
    return residual, {"width": shape[-1], "height": shape[-2], "channels": channels}


def read_prediction(message: Message, topk: int) -> dict[str, Any]:
    """A prediction as the page shows it: its ``topk`` best labels, JSON values only.

    Malformed fields are left out rather than refused: a prediction is shown as far as it goes.
    """
    prediction = kinds.Prediction.read(message)
    labels = [
        [str(entry[0]), _number(entry[1])]
        for entry in prediction.topk
        if isinstance(entry, list | tuple) and len(entry) == 2
    ]
    return {
        "label": prediction.label or (labels[0][0] if labels else ""),
        "topk": labels[:topk],
        "t": message.t,
        "age_ms": round((now_us() - message.t) / 1000, 3),
        "latency_ms": {str(k): _number(v) for k, v in prediction.latency_ms.items()},
        "energy_uj": _number(prediction.energy_uj),
        "state": prediction.state or "",
        "source": message.topic,
        "meta": plain({k: v for k, v in message.meta.items() if k not in PREDICTION_FIELDS}),
    }


@dataclass(frozen=True)
class NodeStats:
    """One node's stats message: its row of the nodes table (rates still None) and the
    counters the rates come from."""

    name: str
    row: dict[str, Any]
    uptime_s: float
    received: int
    sent: int
    has_inputs: bool
    """False for a source, which has no input rate (rather than a rate of 0)."""


def read_stats(message: Message) -> NodeStats:
    """The stats of :class:`respike.nodes.runtime.NodeRunner` summed over ports.

    Messages sent on the node's own stats topic are not counted as its output.
    """
    stats = kinds.Stats.read(message)
    name = stats.node
    inputs = [p for p in stats.inputs.values() if isinstance(p, Mapping)]
    received = sum(int(p.get("received", 0)) for p in inputs)
    sent = sum(int(n) for topic, n in stats.outputs.items() if not str(topic).endswith("/stats"))
    uptime = _number(stats.uptime_s) or 0.0
    hop, age, errors = stats.hop_ms, stats.age_ms, stats.errors
    row: dict[str, Any] = {
        "node": name,
        "kind": stats.kind,
        "uptime_s": uptime,
        "busy": _number(stats.busy),
        "in_rate": None,
        "out_rate": None,
        "received": received,
        "dropped": sum(int(p.get("dropped", 0)) for p in inputs),
        "gaps": sum(int(p.get("gaps", 0)) for p in inputs),
        "invalid": sum(sum((p.get("invalid") or {}).values()) for p in inputs),
        "sent": sent,
        "hop_p50": _number(hop.get("p50")),
        "hop_p99": _number(hop.get("p99")),
        "age_p50": _number(age.get("p50")),
        "age_p99": _number(age.get("p99")),
        "errors": sum(int(n) for n in errors.values()),
        "extra": plain(stats.extra),
    }
    return NodeStats(name, row, uptime, received, sent, bool(inputs))
