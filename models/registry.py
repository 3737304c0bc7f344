"""Model registry: named keyword-only builders and ``get_model(name, **cfg)`` (torchvision style).

Example::

    from respike.models import get_model, list_models
    model = get_model("respike_r18", num_classes=101, mode="hybrid")
    list_models()  # ['respike_r18', 'respike_r18_lite', 'respike_tiny']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from os import PathLike
from typing import Any, TypeVar

from respike.models.ann import ANNConfig, load_torchvision_weights
from respike.models.fusion import FusionConfig
from respike.models.hybrid import HybridReSpike, InputSpec, Mode, ModelConfig
from respike.models.snn import SNNConfig

Builder = Callable[..., HybridReSpike]
B = TypeVar("B", bound=Builder)

_MODELS: dict[str, Builder] = {}


def register_model(name: str | None = None) -> Callable[[B], B]:
    """Register a builder under ``name`` (default: the function's name); duplicates are errors."""

    def wrapper(fn: B) -> B:
        key = name if name is not None else fn.__name__
        if key in _MODELS:
            raise ValueError(f"a model named {key!r} is already registered")
        _MODELS[key] = fn
        return fn

    return wrapper


def list_models() -> list[str]:
    """Names of every registered builder, sorted."""
    return sorted(_MODELS)


def get_model_builder(name: str) -> Builder:
    """The builder registered as ``name``; an unknown name lists the known ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def get_model(name: str, **config: object) -> HybridReSpike:
    """Build the model registered as ``name`` with the builder's keyword arguments ``config``."""
    return get_model_builder(name)(**config)


@dataclass(frozen=True)
class BuildOptions:
    """The keyword arguments every builder takes beside ``num_classes``; ``None`` keeps the
    architecture's default.

    ``ann_weights`` is a local torchvision ``resnet18`` state dict for the ANN branch.
    """

    mode: Mode | None = None
    input_spec: InputSpec | None = None
    snn: SNNConfig | None = None
    ann: ANNConfig | None = None
    fusion: FusionConfig | None = None
    ann_weights: str | PathLike[str] | None = None

    def build(self, architecture: ModelConfig) -> HybridReSpike:
        """The model of ``architecture`` with every option given here replacing its field."""
        given = {
            name: value
            for name in ("mode", "input_spec", "snn", "ann", "fusion")
            if (value := getattr(self, name)) is not None
        }
        model = HybridReSpike(replace(architecture, **given))
        if self.ann_weights is not None:
            if model.ann is None:
                raise ValueError("ann_weights given for an 'snn' model, which has no ANN branch")
            load_torchvision_weights(model.ann, self.ann_weights)
        return model


@register_model()
def respike_r18(*, num_classes: int, **options: Any) -> HybridReSpike:
    """Spiking ResNet-18 shape at 16/32/64/128 channels on 64 px event frames, full-width
    ResNet-18 key-frame ANN at 112 px (``ann_weights``: a local torchvision ``resnet18`` state
    dict), fusion at stages 2-4, ``K = 4``. ``options``: :class:`BuildOptions`.
    """
    return BuildOptions(**options).build(ModelConfig(num_classes=num_classes))


@register_model()
def respike_r18_lite(*, num_classes: int, **options: Any) -> HybridReSpike:
    """:func:`respike_r18` with a half-width ANN (32/64/128/256), about 4x fewer key-frame MACs;
    trained from scratch (ImageNet ResNet-18 weights do not fit). ``options``:
    :class:`BuildOptions`.
    """
    architecture = ModelConfig(num_classes=num_classes, ann=ANNConfig.scaled(0.5))
    return BuildOptions(**options).build(architecture)


@register_model()
def respike_tiny(*, num_classes: int, **options: Any) -> HybridReSpike:
    """About 28 k parameters at 32 px, ``K = 2``: for tests, smoke runs and demos.
    ``options``: :class:`BuildOptions`.
    """
    architecture = ModelConfig(
        num_classes=num_classes,
        input_spec=InputSpec(snn_size=(32, 32), keyframe_size=(32, 32), keyframe_interval=2),
        snn=SNNConfig(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
        ann=ANNConfig(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1)),
        fusion=FusionConfig(stages=(2, 3, 4), head_dim=8),
    )
    return BuildOptions(**options).build(architecture)


__all__ = [
    "BuildOptions",
    "get_model",
    "get_model_builder",
    "list_models",
    "register_model",
    "respike_r18",
    "respike_r18_lite",
    "respike_tiny",
]
