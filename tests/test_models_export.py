"""Tests of respike.models.export: SNN to NIR and back, ANN to ONNX."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from respike.models import (
    Checkpoint,
    HybridReSpike,
    InputSpec,
    SNNConfig,
    get_model,
    save_checkpoint,
)
from respike.models.export import (
    check_export,
    export_nir,
    export_onnx,
    export_problems,
    nir_to_torch,
    snn_to_nir,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def excited(model: HybridReSpike, seed: int = 0) -> HybridReSpike:
    """Non-trivial batch-norm statistics (folded on export) that make every stage spike."""
    gen = torch.Generator().manual_seed(seed)
    assert model.snn is not None
    with torch.no_grad():
        for m in model.snn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 1.5 + 1.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.8 - 0.3)
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


def test_nir_round_trip_gives_the_same_spikes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = excited(get_model("respike_tiny", num_classes=2, mode="snn")).double()
    assert model.snn is not None
    dt = 0.01
    path = tmp_path / "snn.nir"
    nir.write(str(path), snn_to_nir(model.snn, (32, 32), dt=dt))
    module = nir_to_torch(path, dt=dt, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(6, 2, 2, 32, 32, generator=gen) < 0.3).double()
    state = None
    snn_state = None
    fired = 0.0
    with torch.no_grad():
        for t in range(6):
            out, state = module(x[t], state)
            features, snn_state = model.snn.step(x[t], snn_state)
            assert torch.equal(out, features[-1]), f"step {t}: NIR spikes differ"
            fired += float(out.sum())
    assert fired > 0, "the last stage must fire for the comparison to mean anything"


def test_nir_graph_contents() -> None:
    model = get_model("respike_tiny", num_classes=2, mode="snn").eval()
    assert model.snn is not None
    graph = snn_to_nir(model.snn, (32, 32), dt=0.03)
    lifs = [n for n in graph.nodes.values() if isinstance(n, nir.LIF)]
    convs = [n for n in graph.nodes.values() if isinstance(n, nir.Conv2d)]
    assert len(lifs) == len(model.snn.cells())
    assert len(convs) == 1 + len(model.snn.spike_driven_convs())
    assert np.allclose(lifs[0].tau, 0.03 / 0.75) and np.all(lifs[0].v_threshold == 1.0)
    assert np.all(lifs[0].v_reset == 0.0)
    # stage 1 has an identity shortcut: the next LIF sums the block output and the stem
    assert sorted(src for src, dst in graph.edges if dst == "stage2_block0_lif1") == [
        "stage1_block0_conv2",
        "stem",
    ]


def test_export_functions_from_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=2).eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, ["a", "b"])
    nir_path = export_nir(ckpt, tmp_path / "out" / "snn.nir")
    graph = nir.read(str(nir_path))
    assert "lif_out" in graph.nodes
    onnx_path = export_onnx(ckpt, tmp_path / "out" / "ann.onnx")
    assert onnx_path.stat().st_size > 0


def test_onnx_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=2, mode="ann").eval()
    path = export_onnx(save_checkpoint(tmp_path / "m.pt", model, ["a", "b"]), tmp_path / "a.onnx")
    frames = torch.randn(3, 3, 32, 32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"keyframe": frames.numpy()})
    assert model.ann is not None
    with torch.no_grad():
        expected = model.ann(frames)
    assert [o.shape for o in outputs] == [tuple(e.shape) for e in expected]
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


def test_missing_branch_errors(tmp_path: Path) -> None:
    ann_only = save_checkpoint(
        tmp_path / "ann.pt", get_model("respike_tiny", num_classes=1, mode="ann"), ["x"]
    )
    with pytest.raises(ValueError, match="no SNN branch"):
        export_nir(ann_only, tmp_path / "x.nir")
    snn_only = save_checkpoint(
        tmp_path / "snn.pt", get_model("respike_tiny", num_classes=1, mode="snn"), ["x"]
    )
    with pytest.raises(ValueError, match="no ANN branch"):
        export_onnx(snn_only, tmp_path / "x.onnx")


def tiny(mode: str, *, motion: bool = False) -> HybridReSpike:
    """A one-class tiny model of ``mode``, with motion detectors (on residual input) if asked."""
    if not motion:
        return get_model("respike_tiny", num_classes=1, mode=mode)
    return get_model(
        "respike_tiny",
        num_classes=1,
        mode=mode,
        input_spec=InputSpec(
            snn_size=(32, 32),
            snn_input="residual",
            snn_channels=1,
            keyframe_size=(32, 32),
            keyframe_interval=2,
        ),
        snn=SNNConfig(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1), motion_shifts=(1,)),
    )


def in_memory(model: HybridReSpike) -> Checkpoint:
    """A loaded checkpoint without a file (what can be exported depends on the model only)."""
    return Checkpoint(model.eval(), ("x",), {}, Path("m.pt"))


@pytest.mark.parametrize(
    ("mode", "motion", "refused", "can"),
    [
        ("hybrid", False, {}, "to NIR and ONNX only"),
        ("snn", False, {"onnx": "m is snn-only: no ANN branch to export to ONNX"}, "to NIR only"),
        ("ann", False, {"nir": "m is ann-only: no SNN branch to export to NIR"}, "to ONNX only"),
        ("hybrid", True, {"nir": "m has motion detectors: NIR has no one-step"}, "to ONNX only"),
        ("snn", True, {"nir": "m has motion detectors", "onnx": "m is snn-only"}, "nothing"),
    ],
)
def test_what_a_checkpoint_can_export_is_known_before_writing(
    mode: str, motion: bool, refused: dict[str, str], can: str
) -> None:
    ckpt = in_memory(tiny(mode, motion=motion))
    problems = export_problems(ckpt, name="m")
    assert set(problems) == set(refused), f"{mode} (motion {motion}) refuses {set(problems)}"
    for fmt, reason in refused.items():
        assert problems[fmt].startswith(reason), f"{fmt}: {problems[fmt]!r}"
    for fmt in ("nir", "onnx"):
        if fmt not in refused:
            check_export(ckpt, [fmt], name="m")
            continue
        with pytest.raises(ValueError) as info:
            check_export(ckpt, [fmt], name="m")
        message = str(info.value)
        assert "\n" not in message, "one line"
        assert all(problems[f] in message for f in refused), f"every reason in {message!r}"
        assert message.endswith(f"(it exports {can})"), message


def test_a_failed_export_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    ckpt = save_checkpoint(tmp_path / "m.pt", tiny("ann"), ["x"])
    target = tmp_path / "out" / "ann.onnx"
    target.parent.mkdir()
    target.write_bytes(b"an earlier export")

    def reject(path: str) -> None:
        raise onnx.checker.ValidationError(f"{path}: rejected for the test")

    monkeypatch.setattr(onnx.checker, "check_model", reject)
    with pytest.raises(onnx.checker.ValidationError):
        export_onnx(ckpt, target)
    assert target.read_bytes() == b"an earlier export", "a failed export replaced the old file"
    assert sorted(p.name for p in target.parent.iterdir()) == ["ann.onnx"], "partial file left"


def test_a_quantized_snn_exports_its_weights_and_says_what_nir_cannot_hold(
    tmp_path: Path,
) -> None:
    from respike.models.export import nir_coverage
    from respike.models.quant import quantized

    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=2).eval()
    float_ckpt = save_checkpoint(tmp_path / "float.pt", model, ["a", "b"])
    assert [note.split(":")[0] for note in nir_coverage(float_ckpt)] == ["late fusion"]
    low = quantized(model, weight_bits=8, membrane_bits=4)
    ckpt = save_checkpoint(tmp_path / "low.pt", low, ["a", "b"])
    notes = nir_coverage(ckpt)[1:]
    assert len(notes) == 2 and "8-bit" in notes[0] and "4-bit membrane levels" in notes[1]
    graph = nir.read(str(export_nir(ckpt, tmp_path / "low.nir")))
    weights = [n for n in graph.nodes.values() if isinstance(n, nir.Conv2d)]
    per_channel = [
        np.unique(np.abs(w.weight[c])).size for w in weights for c in range(len(w.weight))
    ]
    assert max(per_channel) <= 128, "at most 128 magnitudes a channel: 8-bit integers times a scale"
    assert max(per_channel) > 16, "not rounded coarser than asked"


def test_inline_fusion_exports_the_snn_up_to_its_first_fused_stage(tmp_path: Path) -> None:
    """The graph ends at the output current the host fuses; its steps match the model's."""
    from respike.models import FusionConfig
    from respike.models.export import nir_coverage

    torch.manual_seed(0)
    fusion = FusionConfig(stages=(3, 4), head_dim=8, placement="inline")
    model = excited(get_model("respike_tiny", num_classes=2, fusion=fusion)).double()
    assert model.snn is not None and model.ann is not None
    ckpt = save_checkpoint(tmp_path / "inline.pt", model.float(), ["a", "b"])
    (note,) = nir_coverage(ckpt)
    assert note.startswith("in-line fusion: the graph is the stem and stages 1-3")
    graph = nir.read(str(export_nir(ckpt, tmp_path / "inline.nir")))
    assert not any(name.startswith("stage4") or name == "lif_out" for name in graph.nodes)
    module = nir_to_torch(graph, dt=model.config.input_spec.time_bin_us * 1e-6)
    context = model.encode_keyframe(torch.randn(1, 3, 32, 32))
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 1, 2, 32, 32, generator=gen) < 0.3).float()
    seen: list[torch.Tensor] = []

    def keep(stage: int, output: torch.Tensor) -> torch.Tensor:
        if stage == 3:
            seen.append(output[0])
        return output

    state, snn_state = None, None
    with torch.no_grad():
        for t in range(4):
            out, state = module(x[t], state)
            _, snn_state = model.snn.forward_sequence(x[t : t + 1], snn_state, keep)
            torch.testing.assert_close(out, seen[-1], rtol=1e-5, atol=1e-5)
    assert any(float(s.abs().sum()) > 0 for s in seen), "stage 3 must carry current"
    assert model.inline and context.kv, "the model fuses in line"
