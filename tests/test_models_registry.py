"""Tests of respike.models.registry: named keyword-only builders and get_model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from respike.models import InputSpec, get_model, list_models, register_model
from respike.models.ann import ANNConfig
from respike.models.registry import get_model_builder, respike_tiny


def test_known_models() -> None:
    assert list_models() == ["respike_r18", "respike_r18_lite", "respike_tiny"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet50'; known models: respike_r18, "):
        get_model("resnet50", num_classes=2)


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("respike_tiny")(respike_tiny)


def test_builders_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        get_model_builder("respike_tiny")(3)


def test_overrides_reach_the_config() -> None:
    spec = InputSpec(
        snn_size=(24, 24), snn_input="residual", snn_channels=3, keyframe_size=(32, 32)
    )
    model = get_model("respike_tiny", num_classes=7, mode="snn", input_spec=spec)
    assert model.config.input_spec == spec and model.mode == "snn"
    assert model.snn is not None and model.snn.in_channels == 3
    assert model.head.out_features == 7
    assert get_model("respike_r18_lite", num_classes=2).config.ann.widths == (32, 64, 128, 256)


def test_ann_weights_from_a_local_file(tmp_path: Path) -> None:
    tiny_ann = ANNConfig(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))
    source = get_model("respike_tiny", num_classes=2)
    assert source.ann is not None
    path = tmp_path / "ann.pth"
    torch.save(source.ann.state_dict(), path)
    model = get_model("respike_tiny", num_classes=2, ann=tiny_ann, ann_weights=path)
    assert model.ann is not None
    assert torch.equal(model.ann.conv1.weight, source.ann.conv1.weight)
    with pytest.raises(ValueError, match="no ANN branch"):
        get_model("respike_tiny", num_classes=2, mode="snn", ann_weights=path)
