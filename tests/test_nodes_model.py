"""The model node: predictions per step equal the model's own streaming output, with energy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from respike.events.types import make_events
from respike.models.ann import keyframe_tensor
from respike.nodes.inference import KeyframeAligner
from respike.nodes.model import ModelNode
from respike.nodes.rolling import NO_ACTION
from respike.nodes.testing import MockIO
from respike.stream.messages import Message

CLASSES = ("clap", "wave", "drum")  # the class names of the `checkpoints` fixture


def keyframe(rng: np.random.Generator, t: int) -> Message:
    return Message(
        "res/keyframes", "frame", t, {"frame": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)}
    )


def test_predictions_follow_the_model_step_by_step(
    checkpoints: Path, rng: np.random.Generator
) -> None:
    io = MockIO(
        ModelNode,
        "model",
        ModelNode.Params(
            checkpoint=str(checkpoints["residual"]), alpha=1.0, threshold=0.0, enter=0.0, margin=0.0
        ),
    )
    model = io.node.model
    frames = [keyframe(rng, 0), keyframe(rng, 2)]
    residuals = [rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32) for _ in range(4)]
    state = None
    expected = []
    with torch.no_grad():
        for i, residual in enumerate(residuals):
            if i % 2 == 0:
                frame = torch.from_numpy(
                    keyframe_tensor(frames[i // 2].arrays["frame"], (32, 32), "rgb")
                )[None]
                state = model.set_keyframe(frame, state)
                io.send("keyframes", frames[i // 2])
            logits, state = model.step(torch.from_numpy(residual)[None], state)
            expected.append(torch.softmax(logits[0], 0).numpy())
            io.send(
                "steps",
                Message(
                    "res/residual", "residual", 1000 + i, {"residual": residual}, {"action": "wave"}
                ),
            )
    predictions = [m for _, m in io.outputs]
    assert len(predictions) == 4
    for message, probs in zip(predictions, expected, strict=True):
        np.testing.assert_allclose(message.arrays["probs"], probs, rtol=1e-5, atol=1e-6)
        assert message.meta["label"] == CLASSES[int(np.argmax(probs))], (
            "alpha 1 and no hysteresis: the top class"
        )
        assert message.meta["truth"] == "wave"
        assert message.meta["energy_uj"] > 0
        assert set(message.meta["latency_ms"]) >= {"e2e", "model", "hop", "upstream"}
    assert predictions[0].t == 1000, "a prediction carries the capture time of its frame"


def test_a_node_behind_runs_waiting_steps_in_one_batch_with_the_same_predictions(
    checkpoints: Path, rng: np.random.Generator
) -> None:
    params = ModelNode.Params(checkpoint=str(checkpoints["residual"]), batch=5)
    frames = [keyframe(rng, 4 * k) for k in range(3)]
    residuals = [rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32) for _ in range(11)]

    def messages() -> list[tuple[str, Message]]:
        out = []
        for i, residual in enumerate(residuals):
            if i % 2 == 0:  # the fixture's checkpoint has K = 2
                out.append(("keyframes", frames[i // 4] if i % 4 == 0 else keyframe(rng, i)))
            out.append(("steps", Message("res/residual", "residual", i, {"residual": residual})))
        return out

    script = messages()
    one_by_one = MockIO(ModelNode, "model", params)
    for port, message in script:
        one_by_one.send(port, message)
    behind = MockIO(ModelNode, "model", params)
    for port, message in script:  # everything arrives before the runtime calls flush
        behind.node.on_message(port, message)
    assert behind.outputs == []
    behind.node.flush()
    assert behind.node.stats()["steps_per_batch"] == pytest.approx(11 / 3), "5 + 5 + 1 steps"
    assert [m.t for _, m in behind.outputs] == list(range(11))
    for (_, a), (_, b) in zip(one_by_one.outputs, behind.outputs, strict=True):
        np.testing.assert_allclose(a.arrays["probs"], b.arrays["probs"], rtol=1e-5, atol=1e-6)
        assert a.meta["label"] == b.meta["label"]


def test_steps_wait_for_their_key_frame_and_wrong_shapes_are_rejected(
    checkpoints: Path, rng: np.random.Generator
) -> None:
    io = MockIO(ModelNode, "model", ModelNode.Params(checkpoint=str(checkpoints["residual"])))
    residual = {"residual": np.zeros((1, 32, 32), np.float32)}
    io.send("steps", Message("res/residual", "residual", 1, residual, {"key_index": 0}))
    assert io.outputs == [], "a step arriving before its key frame waits for it"
    io.send(
        "keyframes", Message("res/keyframes", "frame", 0, keyframe(rng, 0).arrays, {"key_index": 0})
    )
    assert [m.t for _, m in io.outputs] == [1], "the waiting step runs once its key frame is there"
    wrong = {"residual": np.zeros((1, 64, 64), np.float32)}
    with pytest.raises(ValueError, match=r"expects \(1, 32, 32\) float32"):
        io.send("steps", Message("res/residual", "residual", 2, wrong, {"key_index": 0}))
    other_kind = {"key_index": 0, "key_residual": "previous"}
    with pytest.raises(
        ValueError, match="key_residual='previous'; the checkpoint was trained on 'zero'"
    ):
        io.send("steps", Message("res/residual", "residual", 2, residual, other_kind))
    io.send("steps", Message("res/residual", "residual", 3, residual, {"key_index": 0}))
    assert [m.t for _, m in io.outputs] == [1, 3]
    assert io.outputs[-1][1].meta["label"] in (*CLASSES, NO_ACTION)


def test_aligner_pairs_steps_with_their_key_frame_whatever_the_arrival_order() -> None:
    aligner: KeyframeAligner[str, str] = KeyframeAligner()
    assert aligner.add_step(0, "s0") == []
    assert aligner.add_context(0, "k0") == [("s0", "k0", True)]
    assert aligner.add_step(0, "s1") == [("s1", "k0", False)]
    assert aligner.add_step(4, "s4") == [], "step 4's key frame has not come yet"
    assert aligner.add_step(4, "s5") == []
    assert aligner.add_context(4, "k4") == [("s4", "k4", True), ("s5", "k4", False)]
    assert aligner.add_step(8, "s8") == []
    # Key frames come in order from one publisher: a later one means key frame 8 was lost.
    assert aligner.add_context(12, "k12") == []
    assert aligner.dropped == 1
    assert aligner.add_step(12, "s12") == [("s12", "k12", True)]
    assert aligner.add_step(None, "latest") == [("latest", "k12", False)], (
        "no index: the latest key frame"
    )


def test_event_packets_are_binned_into_steps_of_the_time_bin(
    checkpoints: Path, rng: np.random.Generator
) -> None:
    io = MockIO(ModelNode, "model", ModelNode.Params(checkpoint=str(checkpoints["events"])))
    io.send("keyframes", keyframe(rng, 0))
    n = 500
    events = make_events(
        np.sort(rng.integers(0, 30_000, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    io.send(
        "steps",
        Message(
            "dvs/events",
            "events",
            30_000,
            {"events": events},
            {"width": 128, "height": 128, "window_start": 0, "window_end": 30_000},
        ),
    )
    assert io.node.steps == 3, "a 30 ms packet is three 10 ms steps"
    assert len(io.outputs) == 1, "one prediction per packet"


def test_unknown_checkpoint_names_the_shipped_ones() -> None:
    with pytest.raises(ValueError, match="not the name of a shipped checkpoint"):
        MockIO(ModelNode, "model", ModelNode.Params(checkpoint="no-such-model"))


def test_energy_is_measured_every_nth_step_and_reused_between(
    checkpoints: dict[str, Path], rng: np.random.Generator
) -> None:
    io = MockIO(
        ModelNode,
        "model",
        ModelNode.Params(checkpoint=str(checkpoints["residual"]), energy_every=4),
    )
    io.send("keyframes", keyframe(rng, 0))
    for i in range(8):
        residual = rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32) * (i + 1)
        io.send("steps", Message("res/residual", "residual", i, {"residual": residual}))
    energies = [m.meta["energy_uj"] for _, m in io.outputs]
    assert energies[0] > 0
    assert energies[1:4] == [energies[0]] * 3, "steps between measures reuse the last one"
    assert energies[4] != energies[0], "step 4 is measured again (its spikes differ)"


def test_a_still_scene_idles_after_its_settle_steps_and_wakes_on_change(
    checkpoints: Path, rng: np.random.Generator
) -> None:
    """Still residuals: the first ``idle_after`` are computed as without idling, the rest
    repeat the last prediction uncomputed; an unchanged key frame skips the ANN; the first
    step with change is computed again."""
    still_frame = keyframe(rng, 0)
    script: list[tuple[str, Message]] = []
    for i in range(12):
        if i % 2 == 0:  # the fixture's checkpoint has K = 2
            script.append(("keyframes", still_frame))
        residual = np.zeros((1, 32, 32), np.float32)
        residual[0, 0, 0] = 0.01  # sensor noise, below idle_below
        script.append(("steps", Message("res/residual", "residual", i, {"residual": residual})))
    moving = rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32)
    script.append(("keyframes", keyframe(rng, 12)))
    script.append(("steps", Message("res/residual", "residual", 12, {"residual": moving})))

    def run(**params: float) -> MockIO:
        io = MockIO(
            ModelNode, "model", ModelNode.Params(checkpoint=str(checkpoints["residual"]), **params)
        )  # type: ignore[arg-type]
        for port, message in script:
            io.send(port, message)
        return io

    idle, full = run(idle_after=4), run(idle_below=-1.0)
    assert full.node.stats()["held_steps"] == 0 and full.node.stats()["steps"] == 13
    stats = idle.node.stats()
    assert stats["steps"] == 5 and stats["held_steps"] == 8, "4 still steps computed, 8 held"
    assert stats["reused_keyframes"] == 5, "six equal key frames: one ANN pass"
    probs = [m.arrays["probs"] for _, m in idle.outputs]
    expected = [m.arrays["probs"] for _, m in full.outputs]
    assert len(probs) == 13
    for got, want in zip(probs[:4], expected[:4], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got in probs[4:12]:
        np.testing.assert_array_equal(got, probs[3])
    assert not np.allclose(probs[12], probs[3]), "the moving step was computed"
    assert all(m.meta["energy_uj"] == 0 for _, m in idle.outputs[4:12]), "held: no step energy"
    assert [m.meta["snn_steps"] for _, m in idle.outputs] == [1] * 4 + [0] * 8 + [1]
    assert [m.meta["ann_passes"] for _, m in idle.outputs] == [1] + [0] * 11 + [1], (
        "the first key frame and the moving one; the still ones reuse the first's context"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"idle_after": 0}, r"idle_after is 0; expected an integer >= 1"),
        ({"idle_below": "low"}, r"idle_below is 'low'; expected a number"),
        ({"keyframe_gap": 0}, r"keyframe_gap is 0; expected an integer >= 1"),
    ],
)
def test_bad_idle_settings_are_named(
    checkpoints: Path, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ModelNode.Params(checkpoint=str(checkpoints["residual"]), **params)  # type: ignore[arg-type]
