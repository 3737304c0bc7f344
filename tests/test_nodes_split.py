"""The split snn/keyframe/fusion nodes give the model node's predictions, whatever the order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.nodes.model import ModelNode
from respike.nodes.residual import ResidualNode
from respike.nodes.split import FusionNode, KeyframeNode, SnnNode
from respike.nodes.testing import MockIO
from respike.stream.messages import Message, decode, encode
from respike.synthetic import SceneConfig, render_clip


def wire(message: Message) -> Message:
    """What a subscriber receives: the message through the codec."""
    return decode([bytes(f) for f in encode(message, seq=0, pt=message.t)])


def residual_stream(frames: np.ndarray) -> list[tuple[str, Message]]:
    io = MockIO(ResidualNode, "res", ResidualNode.Params(stride=2, width=32, height=32))
    for i, frame in enumerate(frames):
        io.send(
            "frames",
            Message(
                "cam/frames",
                "frame",
                1_000_000 + 33_333 * i,
                {"frame": frame},
                {"index": i, "action": "wave"},
            ),
        )
    return [(port, wire(message)) for port, message in io.outputs]


@pytest.mark.parametrize("snn_behind", [False, True], ids=["live", "snn-behind"])
def test_split_nodes_predict_what_the_model_node_predicts(
    checkpoints: dict[str, Path], snn_behind: bool
) -> None:
    frames = render_clip(
        "right_hand_wave", seed=5, num_frames=12, config=SceneConfig(width=64, height=48)
    )
    stream = residual_stream(frames)
    params = {
        "checkpoint": str(checkpoints["residual"]),
        "alpha": 1.0,
        "enter": 0.0,
        "margin": 0.0,
        "threshold": 0.0,
        "energy_every": 1,  # every step counted, so the energies compare exactly
    }

    fixed = {"keyframe_gap": 1, "idle_below": -1.0}  # the split nodes do not follow the scene
    single = MockIO(ModelNode, "model", ModelNode.Params(**params, **fixed))  # type: ignore[arg-type]
    for port, message in stream:
        single.send("keyframes" if port == "keyframes" else "steps", message)

    snn = MockIO(SnnNode, "snn", SnnNode.Params(checkpoint=params["checkpoint"], energy_every=1))
    ann = MockIO(
        KeyframeNode, "ann", KeyframeNode.Params(checkpoint=params["checkpoint"], energy_every=1)
    )
    for port, message in stream:
        if port == "keyframes":
            ann.send("keyframes", message)
        elif snn_behind:  # all steps wait, then one flush runs them in batched SNN passes
            snn.node.on_message("steps", message)
        else:
            snn.send("steps", message)
    if snn_behind:
        assert snn.outputs == []
        snn.node.flush()
    assert len(snn.outputs) == 12
    fusion = MockIO(FusionNode, "fusion", FusionNode.Params(**params))  # type: ignore[arg-type]
    # Worst case for alignment: every SNN step arrives before any key frame.
    for _, message in snn.outputs:
        fusion.send("snn", wire(message))
    for _, message in ann.outputs:
        fusion.send("keyframes", wire(message))

    expected = [m for _, m in single.outputs]
    got = [m for _, m in fusion.outputs]
    assert len(got) == len(expected) == 12
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(b.arrays["probs"], a.arrays["probs"], rtol=1e-5, atol=1e-6)
        assert (a.meta["label"], a.t) == (b.meta["label"], b.t)
        if not snn_behind:  # a batch is counted as a whole: per-step energies are its mean
            assert b.meta["energy_uj"] == pytest.approx(a.meta["energy_uj"], rel=1e-6)
    assert got[0].meta["truth"] == "wave"
    assert {"snn", "fusion", "residual"} <= set(got[0].meta["latency_ms"])
