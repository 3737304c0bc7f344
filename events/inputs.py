"""The input contract of a model: what one SNN step and one key frame are (torch-free).

Every checkpoint stores its :class:`InputSpec`; the residual node, the datasets and the model
node read it to produce exactly what the model was trained on. It lives below the models so
that a node, a launcher or a benchmark can know a model's inputs without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

if TYPE_CHECKING:
    from respike.events.binning import EventFrames
    from respike.events.residual import ResidualFrames

SNNInput = Literal["events", "residual"]
KeyResidual = Literal["zero", "previous"]

NO_ACTION = "no action"
"""The label of a prediction that is none of the classes (a model's last output when it has an
open-set rule; the rolling state below the threshold)."""
"""A key frame's own residual: ``zero`` (ReSpike: the frame minus itself) or ``previous`` (the
frame minus the previous key frame); see :class:`~respike.events.residual.ResidualFrames`."""
KEY_RESIDUALS: tuple[KeyResidual, ...] = get_args(KeyResidual)


class Size(NamedTuple):
    """A size in :class:`InputSpec`'s (height, width) order, with its sides named."""

    height: int
    width: int


def parse_size(text: str) -> Size:
    """``"160x120"`` (width x height, as cameras and videos say) or ``"64"`` (square)."""
    width, sep, height = text.strip().lower().partition("x")
    try:
        size = Size(height=int(height if sep else width), width=int(width))
    except ValueError:
        size = Size(0, 0)
    if min(size) < 1:
        raise ValueError(f"size {text!r}; expected WIDTHxHEIGHT or N, positive integers")
    return size


@dataclass(frozen=True)
class InputSpec:
    """What the model expects per step and per key frame; stored in every checkpoint.

    ``snn_input`` is ``"events"`` (``snn_channels == 2``: OFF and ON counts per time bin) or
    ``"residual"`` (1 grey or 3 RGB channels of signed frame-minus-key-frame differences;
    ``key_residual`` says what a key frame's own residual is, as in
    :class:`~respike.events.residual.ResidualFrames`). ``time_bin_us`` is the duration of one
    SNN step; ``keyframe_interval`` is ``K``.

    Sizes are stored as (height, width), the order of the tensors' last two axes; code that
    needs one side reads ``snn_width`` and friends, and the kernels that make the inputs come
    from :meth:`residual_frames` and :meth:`event_frames`, so nothing swaps the pair by hand.
    """

    snn_size: tuple[int, int] = (64, 64)
    snn_input: SNNInput = "events"
    snn_channels: int = 2
    key_residual: KeyResidual = "zero"
    keyframe_size: tuple[int, int] = (112, 112)
    keyframe_interval: int = 4
    time_bin_us: int = 33_333

    def __post_init__(self) -> None:
        object.__setattr__(self, "snn_size", tuple(int(v) for v in self.snn_size))
        object.__setattr__(self, "keyframe_size", tuple(int(v) for v in self.keyframe_size))
        if self.snn_input == "events" and self.snn_channels != 2:
            raise ValueError(f"event input has 2 polarity channels, got {self.snn_channels}")
        if self.snn_input == "residual" and self.snn_channels not in (1, 3):
            raise ValueError(f"residual input has 1 or 3 channels, got {self.snn_channels}")
        if self.snn_input not in ("events", "residual"):
            raise ValueError(f"snn_input must be 'events' or 'residual', got {self.snn_input!r}")
        if self.key_residual not in KEY_RESIDUALS:
            choices = " or ".join(repr(k) for k in KEY_RESIDUALS)
            raise ValueError(f"key_residual must be {choices}, got {self.key_residual!r}")
        if self.key_residual != "zero" and self.snn_input != "residual":
            raise ValueError(f"key_residual={self.key_residual!r} needs residual input")
        if self.keyframe_interval < 1 or self.time_bin_us < 1:
            raise ValueError("keyframe_interval and time_bin_us must be positive")
        if min(self.snn_size) < 1 or min(self.keyframe_size) < 1:
            raise ValueError("input sizes must be positive")

    @property
    def snn_width(self) -> int:
        return self.snn_size[1]

    @property
    def snn_height(self) -> int:
        return self.snn_size[0]

    @property
    def keyframe_width(self) -> int:
        return self.keyframe_size[1]

    @property
    def keyframe_height(self) -> int:
        return self.keyframe_size[0]

    def residual_frames(self, channel_order: str = "rgb") -> ResidualFrames:
        """The residual step that turns frames (in ``channel_order``) into this SNN's input."""
        from respike.events.residual import ResidualFrames

        if self.snn_input != "residual":
            raise ValueError(f"the model takes {self.snn_input} input, not residual frames")
        return ResidualFrames(
            stride=self.keyframe_interval,
            size=(self.snn_width, self.snn_height),
            color="grey" if self.snn_channels == 1 else "rgb",
            channel_order=channel_order,
            key_residual=self.key_residual,
        )

    def event_frames(self, sensor_size: tuple[int, int], n_time_bins: int = 1) -> EventFrames:
        """The binning that turns a packet of a ``sensor_size`` (width, height) sensor into
        ``n_time_bins`` steps of this SNN's input."""
        from respike.events.binning import EventFrames

        if self.snn_input != "events":
            raise ValueError(f"the model takes {self.snn_input} input, not events")
        return EventFrames(
            sensor_size=sensor_size, n_time_bins=n_time_bins, size=(self.snn_width, self.snn_height)
        )
