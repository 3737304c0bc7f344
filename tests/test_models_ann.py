"""Tests of respike.models.ann: ResNet-18 stage features and local torchvision weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from respike.models.ann import ANNConfig, ResNetFeatures, load_torchvision_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stage_shapes_at_112px() -> None:
    ann = ResNetFeatures(ANNConfig()).eval()
    with torch.no_grad():
        features = ann(torch.zeros(1, 3, 112, 112))
    shapes = [tuple(f.shape) for f in features]
    assert shapes == [(1, 64, 28, 28), (1, 128, 14, 14), (1, 256, 7, 7), (1, 512, 4, 4)]


def test_torchvision_state_dict_loads_and_matches(tmp_path: Path) -> None:
    """A torchvision resnet18 state dict file loads; features equal torchvision's own stages."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    ann = ResNetFeatures(ANNConfig()).eval()
    load_torchvision_weights(ann, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = ann(x)
        h = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for i, layer in enumerate(
            [reference.layer1, reference.layer2, reference.layer3, reference.layer4]
        ):
            h = layer(h)
            assert torch.equal(ours[i], h), f"stage {i + 1} differs from torchvision"


def test_narrow_network_rejects_resnet18_weights(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    ann = ResNetFeatures(ANNConfig.scaled(0.5))
    assert ann.widths == (32, 64, 128, 256)
    with pytest.raises(ValueError, match=r"resnet18\.pth.*shape mismatch"):
        load_torchvision_weights(ann, path)


def test_corrupt_weights_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match=r"broken\.pth: not a readable torchvision state dict"):
        load_torchvision_weights(ResNetFeatures(ANNConfig()), path)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="4 stages"):
        ANNConfig(widths=(8, 8, 8), blocks=(1, 1, 1))
