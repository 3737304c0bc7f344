"""Low-precision SNN: integer weights and membranes, one code path for clips and steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from respike.models import FusionConfig, get_model, measure_energy
from respike.models.checkpoint import load_checkpoint, save_checkpoint
from respike.models.neurons import LIFConfig
from respike.models.quant import default_floor, quantize_membrane, quantize_weights_, quantized
from respike.models.snn import SNNConfig
from tests.test_models_hybrid import excited, make_clip, stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_membrane_takes_one_of_its_levels_with_zero_and_the_threshold_among_them() -> None:
    v = torch.linspace(-5.0, 1.0, 601)
    floor = torch.tensor(-2.0)
    q = quantize_membrane(v, 1.0, floor, 4)  # 15 steps of 0.2 from -2 to 1
    assert len(torch.unique(q)) <= 16
    assert q.min() == pytest.approx(-2.0) and q.max() == pytest.approx(1.0)
    assert torch.all(quantize_membrane(torch.zeros(3), 1.0, floor, 4) == 0), "the reset is a level"
    assert torch.all((q - v).abs()[v >= -2.0] <= 0.1 + 1e-6), "within half a level inside the range"
    assert default_floor(1.0, 4) == pytest.approx(-8 / 7)


def test_weights_become_integers_times_a_scale_per_output_channel() -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    quantize_weights_(conv, 8)
    w = conv.weight.detach().flatten(1)
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    integers = w / scale
    torch.testing.assert_close(integers, integers.round(), rtol=0, atol=1e-4)
    assert integers.abs().max() <= 127 + 1e-4


@pytest.mark.parametrize(
    ("weight_bits", "membrane_bits", "placement"),
    [(8, 8, "late"), (8, 4, "late"), (None, 4, "late"), (8, 4, "inline")],
)
def test_a_quantized_model_streams_as_it_runs_on_clips(
    weight_bits: int | None, membrane_bits: int | None, placement: str, tmp_path: Path
) -> None:
    fusion = FusionConfig(stages=(2, 3, 4), head_dim=8, placement=placement)  # type: ignore[arg-type]
    model = excited(get_model("respike_tiny", num_classes=5, fusion=fusion))
    clip = make_clip(model, batch=1, segments=3)
    low = quantized(
        model,
        weight_bits=weight_bits,
        membrane_bits=membrane_bits,
        calibration=[(clip.keyframes, clip.steps)],
    ).double()
    with torch.no_grad():
        out = low(clip)
        torch.testing.assert_close(stream(low, clip), out.step_logits, rtol=0, atol=1e-10)
        assert not torch.allclose(out.step_logits, model(clip).step_logits), "precision changed"
        state = out.state.snn
        assert state is not None
        first = next(c for c in low.modules() if hasattr(c, "membrane_floor"))
        level = (1.0 - float(first.membrane_floor)) / (2**membrane_bits - 1)
        v = state.cells[0].v / level
        torch.testing.assert_close(v, v.round(), rtol=0, atol=1e-6)  # on the cell's grid
        floors = [float(c.membrane_floor) for c in low.modules() if hasattr(c, "membrane_floor")]
        assert min(floors) < default_floor(1.0, 4), "floors calibrated below the default"
    path = save_checkpoint(tmp_path / "low.pt", low.float(), ("a", "b", "c", "d", "e"))
    again = load_checkpoint(path).model
    assert again.config.snn.weight_bits == weight_bits
    assert again.config.snn.lif.membrane_bits == membrane_bits
    single = type(clip)(clip.keyframes.float(), clip.steps.float())
    with torch.no_grad():
        torch.testing.assert_close(again(single).logits, low(single).logits)


def test_energy_counts_integer_accumulates_and_less_memory_traffic() -> None:
    model = excited(get_model("respike_tiny", num_classes=5)).float()
    clip = make_clip(model, batch=1, segments=2)
    clip = type(clip)(clip.keyframes.float(), clip.steps.float())
    low = quantized(model, weight_bits=8, membrane_bits=4, calibration=[clip])
    full, small = measure_energy(model, clip).step, measure_energy(low, clip).step
    assert full.acs.get("snn", 0) > 0 and not full.int_acs
    assert small.int_acs.get("snn", 0) > 0 and not small.acs.get("snn")
    assert small.memory_bits["snn"] < 0.3 * full.memory_bits["snn"], "8-bit weights, 4-bit v"
    assert small.memory_pj() < full.memory_pj()
    assert small.energy_pj() < full.energy_pj()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LIFConfig(membrane_bits=3), r"membrane_bits is 3; expected one of 4, 8, 16"),
        (lambda: SNNConfig(weight_bits=16), r"weight_bits is 16; expected one of 4, 8"),
        (
            lambda: quantized(
                get_model("respike_tiny", num_classes=5, mode="ann"),
                weight_bits=8,
                membrane_bits=None,
            ),
            r"'ann' model has no SNN branch",
        ),
    ],
)
def test_unknown_precisions_are_named(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
