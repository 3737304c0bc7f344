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

    fixed = {"keyframe_gap": 1, "idle_below": -1.0}  # every step and key frame computed
    single = MockIO(ModelNode, "model", ModelNode.Params(**params, **fixed))  # type: ignore[arg-type]
    for port, message in stream:
        single.send("keyframes" if port == "keyframes" else "steps", message)

    snn = MockIO(
        SnnNode,
        "snn",
        SnnNode.Params(checkpoint=params["checkpoint"], energy_every=1, idle_below=-1.0),
    )
    ann = MockIO(
        KeyframeNode,
        "ann",
        KeyframeNode.Params(
            checkpoint=params["checkpoint"], energy_every=1, keyframe_gap=1, idle_below=-1.0
        ),
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


def test_an_inline_checkpoint_splits_as_a_model_node_fed_by_keyframe_features(
    checkpoints: dict[str, Path],
) -> None:
    """In-line fusion: the SNN reads the key frame's context, so the SNN host runs a `model`
    node on the `keyframe` node's features; it predicts what a `model` node on frames does."""
    checkpoint = checkpoints["inline"]
    frames = render_clip(
        "right_hand_wave", seed=5, num_frames=8, config=SceneConfig(width=64, height=48)
    )
    stream = residual_stream(frames)
    params = ModelNode.Params(
        checkpoint=str(checkpoint),
        alpha=1.0,
        enter=0.0,
        margin=0.0,
        threshold=0.0,
        energy_every=1,
        keyframe_gap=1,
        idle_below=-1.0,
    )
    single = MockIO(ModelNode, "model", params)
    ann = MockIO(
        KeyframeNode,
        "ann",
        KeyframeNode.Params(checkpoint=str(checkpoint), keyframe_gap=1, idle_below=-1.0),
    )
    apart = MockIO(ModelNode, "snn-host", params)
    for port, message in stream:
        if port == "keyframes":
            single.send("keyframes", message)
            ann.send("keyframes", message)
            apart.send("keyframes", wire(ann.outputs[-1][1]))
        else:
            single.send("steps", message)
            apart.send("steps", message)
    expected = [m for _, m in single.outputs]
    got = [m for _, m in apart.outputs]
    assert len(got) == len(expected) == 8
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(b.arrays["probs"], a.arrays["probs"], rtol=1e-5, atol=1e-6)
    for kind in (SnnNode, FusionNode):
        with pytest.raises(ValueError, match="fuses in line"):
            MockIO(kind, kind.__name__, kind.Params(checkpoint=str(checkpoint)))


def test_keyframe_features_of_another_checkpoint_are_named(checkpoints: dict[str, Path]) -> None:
    node = MockIO(ModelNode, "model", ModelNode.Params(checkpoint=str(checkpoints["residual"])))
    bad = Message("ann/features", "features", 1, {"stage1": np.zeros((3, 8, 8), np.float32)}, {})
    with pytest.raises(ValueError, match=r"stage1 has shape \(3, 8, 8\); expected \(8, h, w\)"):
        node.node.on_message("keyframes", bad)


def test_split_nodes_follow_a_still_scene_as_the_model_node_does(
    checkpoints: dict[str, Path],
) -> None:
    """Still steps are held by the snn node and still key frames reused by the keyframe node
    (sent as ``skipped`` features); the fusion node then predicts what the model node does."""
    moving = render_clip(
        "right_hand_wave", seed=5, num_frames=8, config=SceneConfig(width=64, height=48)
    )
    frames = np.concatenate([np.repeat(moving[:1], 12, axis=0), moving])
    stream = residual_stream(frames)
    checkpoint = str(checkpoints["residual"])
    rolling = {"alpha": 1.0, "enter": 0.0, "margin": 0.0, "threshold": 0.0}
    adaptive = {"idle_after": 4, "keyframe_gap": 1}  # passes on change only: no confidence
    single = MockIO(
        ModelNode, "model", ModelNode.Params(checkpoint=checkpoint, **rolling, **adaptive)
    )
    snn = MockIO(SnnNode, "snn", SnnNode.Params(checkpoint=checkpoint, idle_after=4))
    ann = MockIO(KeyframeNode, "ann", KeyframeNode.Params(checkpoint=checkpoint, keyframe_gap=1))
    fusion = MockIO(FusionNode, "fusion", FusionNode.Params(checkpoint=checkpoint, **rolling))
    remote = MockIO(  # the ANN on another host, the in-line split's layout
        ModelNode, "snn-host", ModelNode.Params(checkpoint=checkpoint, **rolling, **adaptive)
    )
    for port, message in stream:
        single.send("keyframes" if port == "keyframes" else "steps", message)
        if port == "keyframes":
            ann.send("keyframes", message)
            fusion.send("keyframes", wire(ann.outputs[-1][1]))
            remote.send("keyframes", wire(ann.outputs[-1][1]))
        else:
            snn.send("steps", message)
            fusion.send("snn", wire(snn.outputs[-1][1]))
            remote.send("steps", message)
    expected = [m for _, m in single.outputs]
    for got in ([m for _, m in fusion.outputs], [m for _, m in remote.outputs]):
        assert len(got) == len(expected) == 20
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(b.arrays["probs"], a.arrays["probs"], rtol=1e-5, atol=1e-6)
            assert a.meta["snn_steps"] == b.meta["snn_steps"]
    held = single.node.stats()["held_steps"]
    assert held >= 6, "the still run is held after its settle steps"
    assert snn.node.stats()["held_steps"] == fusion.node.stats()["held_steps"] == held
    assert ann.node.stats()["reused_keyframes"] == single.node.stats()["reused_keyframes"] >= 5
    skipped = [m for _, m in snn.outputs if m.meta.get("skipped")]
    assert len(skipped) == held and all(not m.arrays for m in skipped), "held: nothing sent"
