"""Tests of respike.stream.kinds: each message kind's typed fields, both ways, checked."""

from __future__ import annotations

import numpy as np
import pytest

from respike.nodes.base import Node
from respike.nodes.testing import MockIO
from respike.stream import kinds
from respike.stream.messages import Message, MessageError, decode, encode


def wire(message: Message) -> Message:
    return decode(encode(message, seq=0, pt=1, source="test"))


@pytest.mark.parametrize(
    "meta",
    [
        kinds.Frame(index=3, source="cam", label=2, action="wave", scene_t=0.5),
        kinds.Residual(index=4, key_index=4, key_residual="previous", latency_ms={"residual": 0.3}),
        kinds.Events(width=128, height=96, window_start=10, window_end=20, key_index=None),
        kinds.Features(key_index=8, energy_pj=12.5, latency_ms={"snn": 1.0}),
        kinds.Prediction(
            label="wave", topk=[["wave", 0.9]], latency_ms={"e2e": 9.2}, energy_uj=3.5, truth="wave"
        ),
        kinds.Stats(node="m", kind="model", uptime_s=2.0, busy=0.5, extra={"steps": 10.0}),
    ],
)
def test_a_typed_meta_survives_the_wire(meta: kinds.Meta) -> None:
    message = wire(Message("n/p", meta.KIND, 5, {}, meta.to_meta()))
    assert type(meta).read(message) == meta


def test_fields_left_at_none_are_not_sent() -> None:
    assert kinds.Frame(index=1).to_meta() == {"index": 1}


def test_missing_and_ill_typed_fields_are_message_errors() -> None:
    with pytest.raises(MessageError, match=r"a stats message needs meta\['busy'\]") as error:
        kinds.Stats.from_meta({"node": "n", "kind": "k", "uptime_s": 1.0})
    assert error.value.cause == "meta"
    with pytest.raises(MessageError, match=r"events meta\['width'\] is '640'; expected int"):
        kinds.Events.from_meta({"width": "640", "height": 480})
    with pytest.raises(MessageError, match=r"meta\['index'\] is True; expected int"):
        kinds.Frame.from_meta({"index": True})
    with pytest.raises(MessageError, match="expected a prediction message, got frame"):
        kinds.Prediction.read(Message("n/p", "frame", 0))


def test_numbers_arrive_as_floats_and_unknown_keys_are_ignored() -> None:
    stats = kinds.Stats.from_meta({"node": "n", "kind": "k", "uptime_s": 2, "busy": 0, "new": 1})
    assert stats.uptime_s == 2.0 and isinstance(stats.uptime_s, float)


def test_origin_fields_ride_along() -> None:
    frame = kinds.Frame(index=7, label=1, action="clap", scene_t=1.5)
    step = kinds.Residual(**frame.origin(), key_index=4)
    assert (step.index, step.label, step.action, step.key_index) == (7, 1, "clap", 4)
    assert "scene_t" not in frame.origin(), "only what a source knows about the frame"
    assert kinds.read_step(Message("r/r", "residual", 0, {}, step.to_meta())) == step
    with pytest.raises(MessageError, match="not an SNN step"):
        kinds.read_step(Message("c/f", "frame", 0))


class Camera(Node):
    outputs = ("frames",)


def test_a_node_publishes_a_typed_meta_with_its_kind() -> None:
    io = MockIO(Camera, "cam", Camera.Params())
    io.node.publish("frames", kinds.Frame(index=2), 9, {"frame": np.zeros((2, 2, 3), np.uint8)})
    ((port, message),) = io.outputs
    assert (port, message.kind, message.t, dict(message.meta)) == (
        "frames",
        "frame",
        9,
        {"index": 2},
    )
