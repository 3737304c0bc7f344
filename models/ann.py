"""The ANN branch: a torchvision ResNet-18-shaped CNN on RGB key frames, returning 4 stage features.

The module names match torchvision's ``resnet18`` (``conv1``, ``bn1``, ``layer1``-``layer4``),
so a torchvision state dict saved to a local file loads into it (its ``fc`` classifier is
dropped: the hybrid model has its own head). Nothing is ever downloaded. ``widths`` other than
64/128/256/512 give a narrower network for the CPU, trained from scratch.

The residual block is written here rather than imported: ``import torchvision`` pulls in
torch's compiler stack (about a third of a model node's start-up), and the block is a few lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

#: ImageNet mean and standard deviation of torchvision's ResNet weights, RGB order.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ANNConfig:
    """Channel width and block count per stage; the defaults are torchvision's ResNet-18."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise ValueError(
                f"ANN widths {self.widths} and blocks {self.blocks} need 4 stages (ResNet shape)"
            )
        if min(self.widths) < 1 or min(self.blocks) < 1:
            raise ValueError("ANN widths and block counts must be positive")

    @classmethod
    def scaled(cls, factor: float) -> ANNConfig:
        """ResNet-18 with every width multiplied by ``factor`` (0.5 gives 32/64/128/256)."""
        return cls(widths=tuple(max(1, round(w * factor)) for w in cls().widths))


def keyframe_tensor(
    frame: npt.NDArray[np.uint8], size: tuple[int, int], channel_order: str = "rgb"
) -> npt.NDArray[np.float32]:
    """A key frame as the ANN takes it: ``(3, h, w)`` float32 RGB, ImageNet-normalised.

    ``frame`` is ``(H, W, 3)`` uint8 in ``channel_order`` (``"rgb"`` or OpenCV's ``"bgr"``),
    resized to ``size`` = (width, height) with area interpolation. The live model nodes and
    every dataset call this one function.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"key frame has shape {frame.shape} {frame.dtype}; expected (H, W, 3) uint8"
        )
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order is {channel_order!r}; expected 'rgb' or 'bgr'")
    width, height = size
    resized = frame
    if (frame.shape[1], frame.shape[0]) != (width, height):
        import cv2

        resized = np.asarray(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    rgb = resized[..., ::-1] if channel_order == "bgr" else resized
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    out = (rgb.astype(np.float32) / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal convolutions (fan out, ReLU gain),
    batch norms at weight 1 and bias 0; the SNN's convolutions start the same way."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock``: two 3x3 convolutions and a shortcut, with the same
    module names, so its state dicts load unchanged."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class ResNetFeatures(nn.Module):
    """ResNet-18-shaped feature extractor: ``forward(frames)`` gives the 4 stage outputs.

    Input: ``(B, 3, H, W)`` RGB normalised with :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD`;
    stage ``i`` has ``widths[i]`` channels at stride ``4 * 2**i`` (28/14/7/4 px at 112 px input).
    """

    def __init__(self, config: ANNConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.conv1 = nn.Conv2d(3, w[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = w[0]
        self.layer1 = self._make_layer(w[0], config.blocks[0], stride=1)
        self.layer2 = self._make_layer(w[1], config.blocks[1], stride=2)
        self.layer3 = self._make_layer(w[2], config.blocks[2], stride=2)
        self.layer4 = self._make_layer(w[3], config.blocks[3], stride=2)
        init_resnet_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """torchvision's ``ResNet._make_layer`` for ``BasicBlock``, free in its widths."""
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers.extend(BasicBlock(planes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each stage's features."""
        return self.config.widths

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The four stage feature maps of ``frames`` (``(B, 3, H, W)``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return f1, f2, f3, f4


def load_torchvision_weights(module: ResNetFeatures, path: str | PathLike[str]) -> None:
    """Load a torchvision ResNet-18 state dict from the local file ``path`` into ``module``.

    The file is read with ``weights_only=True`` (tensors only, no code). The classifier
    (``fc.*``) is ignored; any other missing, extra or mis-shaped tensor raises ``ValueError``
    naming the file, e.g. when ``module`` is narrower than ResNet-18.
    """
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path}: not a readable torchvision state dict (expected a torch.save'd dict of "
            f"tensors such as resnet18-f37072fd.pth): {exc}"
        ) from exc
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(f"{path}: expected a dict of tensors (a torchvision state dict)")
    state = {k: v for k, v in loaded.items() if not k.startswith("fc.")}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if mismatched:
            details.append(f"shape mismatch {len(mismatched)} (e.g. {mismatched[:2]})")
        raise ValueError(
            f"{path}: does not fit a ResNet-18 with widths {module.widths} and blocks "
            f"{module.config.blocks}: " + "; ".join(details)
        )
    module.load_state_dict(state)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ANNConfig",
    "ResNetFeatures",
    "init_resnet_weights",
    "keyframe_tensor",
    "load_torchvision_weights",
]
