"""Tests of respike.events.inputs: a model's input contract and the kernels it names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from respike.events.binning import EventFrames
from respike.events.inputs import InputSpec
from respike.events.residual import ResidualFrames


def test_sides_are_named_and_the_kernels_get_width_then_height() -> None:
    spec = InputSpec(
        snn_size=(48, 64),
        snn_input="residual",
        snn_channels=1,
        key_residual="previous",
        keyframe_size=(72, 96),
        keyframe_interval=4,
    )
    assert (spec.snn_width, spec.snn_height) == (64, 48)
    assert (spec.keyframe_width, spec.keyframe_height) == (96, 72)
    assert spec.residual_frames() == ResidualFrames(
        stride=4, size=(64, 48), color="grey", channel_order="rgb", key_residual="previous"
    )
    assert spec.residual_frames("bgr").channel_order == "bgr"
    rgb = InputSpec(snn_size=(48, 64), snn_input="residual", snn_channels=3)
    assert rgb.residual_frames().color == "rgb"


def test_event_input_bins_to_the_snn_size() -> None:
    spec = InputSpec(snn_size=(32, 40), snn_input="events", snn_channels=2)
    binning = spec.event_frames((128, 96), n_time_bins=3)
    assert binning == EventFrames(sensor_size=(128, 96), n_time_bins=3, size=(40, 32))
    assert binning.shape == (3, 2, 32, 40), "(T, 2, height, width): the SNN's step tensors"


def test_a_kernel_for_the_other_kind_of_input_is_refused() -> None:
    with pytest.raises(ValueError, match="takes events input, not residual frames"):
        InputSpec().residual_frames()
    with pytest.raises(ValueError, match="takes residual input, not events"):
        InputSpec(snn_input="residual", snn_channels=1).event_frames((10, 10))


def test_the_contract_is_read_without_torch_or_numba() -> None:
    code = (
        "import sys; from respike.events.inputs import InputSpec; InputSpec(); "
        "print('torch' in sys.modules, 'numba' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]
