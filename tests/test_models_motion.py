"""Tests of respike.models.motion: direction-selective, contrast-invariant, streamable."""

from __future__ import annotations

import pytest
import torch

from respike.models.energy import OpCounter
from respike.models.export import snn_to_nir
from respike.models.hybrid import InputSpec, ModelConfig
from respike.models.motion import MotionDetectors
from respike.models.snn import SNNConfig, SpikingResNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIFTS = (1, 2, 4)


def moving_bar(
    direction: tuple[int, int], contrast: float, *, speed: int = 2, steps: int = 4
) -> torch.Tensor:
    """ReSpike residuals ``(T, 1, 1, 24, 24)`` of a bar moving ``speed`` px per step.

    Step 0 is the key frame (residual zero); later steps are the frame minus the key frame, on a
    mid-grey background, so ``contrast`` < 0 is a bar darker than what lies behind it.
    """
    dy, dx = direction

    def frame(t: int) -> torch.Tensor:
        img = torch.full((24, 24), 0.5)
        y0, x0 = 8 + dy * speed * t, 8 + dx * speed * t
        img[y0 : y0 + 4, x0 : x0 + 4] += contrast
        return img

    key = frame(0)
    return torch.stack([frame(t) - key for t in range(steps)])[:, None, None]


def energy(channels: torch.Tensor, shift_index: int) -> tuple[float, float, float, float]:
    """Summed right, left, down and up channels of one shift."""
    c = channels[:, :, 4 * shift_index : 4 * shift_index + 4].sum(dim=(0, 1, 3, 4))
    return tuple(float(v) for v in c)  # type: ignore[return-value]


@pytest.mark.parametrize("contrast", [0.3, -0.3])
def test_direction_is_found_whatever_the_contrast(contrast: float) -> None:
    detectors = MotionDetectors(SHIFTS)
    speed_index = SHIFTS.index(2)
    right, left, down, up = energy(detectors(moving_bar((0, 1), contrast))[0], speed_index)
    assert right > 0 and right > 10 * left
    right, left, down, up = energy(detectors(moving_bar((0, -1), contrast))[0], speed_index)
    assert left > 0 and left > 10 * right
    right, left, down, up = energy(detectors(moving_bar((1, 0), contrast))[0], speed_index)
    assert down > 0 and down > 10 * up
    right, left, down, up = energy(detectors(moving_bar((-1, 0), contrast))[0], speed_index)
    assert up > 0 and up > 10 * down


def test_detectors_are_tuned_to_their_shift() -> None:
    channels = MotionDetectors(SHIFTS)(moving_bar((0, 1), 0.3, speed=4))[0]
    tuned = energy(channels, SHIFTS.index(4))[0]
    assert tuned > energy(channels, SHIFTS.index(1))[0]


def test_still_input_and_key_frames_give_no_motion() -> None:
    detectors = MotionDetectors(SHIFTS)
    assert detectors(torch.zeros(5, 2, 1, 16, 16))[0].abs().max() == 0
    # two segments of a moving bar: the key frame's residual drops back to zero, which is no
    # motion; the change across it cannot be known, so the step after it has none either
    first = moving_bar((0, 1), 0.3)
    second = moving_bar((0, 1), 0.3)
    channels = detectors(torch.cat([first, second]))[0].sum(dim=(1, 2, 3, 4))
    assert channels[[0, 1, 4, 5]].abs().max() == 0
    assert channels[[2, 3, 6, 7]].min() > 0


def test_key_residuals_against_the_previous_key_keep_motion_across_key_frames() -> None:
    # key_residual="previous": the key frame's residual is it minus the previous key frame, so
    # the change across the key frame is known and every step after the first two has motion
    bar = moving_bar((0, 1), 0.3, steps=8)
    second = bar[4:] - bar[4]
    second[0] = bar[4]
    channels = MotionDetectors(SHIFTS)(torch.cat([bar[:4], second]))[0]
    right, left, _, _ = energy(channels, SHIFTS.index(2))
    assert right > 10 * left
    per_step = channels.sum(dim=(1, 2, 3, 4))
    assert per_step[:2].abs().max() == 0
    assert per_step[2:].min() > 0, f"no motion at some step after the first two: {per_step}"


def test_key_residual_is_validated_and_old_checkpoints_read_as_zero() -> None:
    spec = InputSpec(snn_input="residual", snn_channels=1, key_residual="previous")
    data = ModelConfig(num_classes=2, mode="snn", input_spec=spec).to_dict()
    assert ModelConfig.from_dict(data).input_spec.key_residual == "previous"
    del data["input_spec"]["key_residual"]  # as checkpoints from before the setting store it
    assert ModelConfig.from_dict(data).input_spec.key_residual == "zero"
    with pytest.raises(ValueError, match="key_residual must be 'zero' or 'previous'"):
        InputSpec(snn_input="residual", snn_channels=1, key_residual="last")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs residual input"):
        InputSpec(key_residual="previous")


def test_a_delay_tunes_a_shift_to_a_slower_speed() -> None:
    # a bar moving 1 pixel per step: shift 2 at delay 2 (1 px/step) beats shift 2 at delay 1
    detectors = MotionDetectors((2,), delays=(1, 2))
    bar = moving_bar((0, 1), 0.3, speed=1, steps=6)
    channels = detectors(bar)[0]
    assert channels.shape[2] == detectors.channels == 8
    at_delay_1, at_delay_2 = energy(channels, 0)[0], energy(channels, 1)[0]
    assert at_delay_2 > 1.5 * at_delay_1
    assert energy(channels, 1)[0] > 10 * energy(channels, 1)[1], "delay 2 is direction-selective"


@pytest.mark.parametrize("delays", [(1,), (1, 2), (3, 1)])
def test_a_stream_of_steps_equals_the_whole_sequence(delays: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, 1, 12, 14, generator=gen)
    x[0] = 0
    x[4] = 0
    detectors = MotionDetectors(SHIFTS, delays)
    whole, _ = detectors(x)
    state = None
    parts = []
    for chunk in (x[:1], x[1:5], x[5:6], x[6:]):
        out, state = detectors(chunk, state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


def test_bad_shifts_are_refused() -> None:
    with pytest.raises(ValueError, match="shifts"):
        MotionDetectors(())
    with pytest.raises(ValueError, match="delays must be distinct positive steps"):
        MotionDetectors(SHIFTS, (1, 1))
    with pytest.raises(ValueError, match="motion_delays"):
        SNNConfig(motion_shifts=(1,), motion_delays=(0,))
    with pytest.raises(ValueError, match="motion_shifts"):
        SNNConfig(motion_shifts=(0,))


def test_snn_feeds_the_detectors_to_its_stem_and_streams_them() -> None:
    snn = SpikingResNet(
        SNNConfig(widths=(4, 8), blocks=(1, 1), motion_shifts=SHIFTS), in_channels=1
    ).eval()
    assert snn.stem.conv.in_channels == 1 + 4 * len(SHIFTS)
    x = torch.cat([moving_bar((0, 1), 0.4), moving_bar((1, 0), -0.4)], dim=1)
    with torch.no_grad():
        whole, _ = snn.forward_sequence(x)
        state = None
        steps = []
        for t in range(x.shape[0]):
            features, state = snn.step(x[t], state)
            steps.append(features[-1])
    assert state is not None and state.motion is not None
    torch.testing.assert_close(torch.stack(steps), whole[-1], rtol=0, atol=0)


def test_motion_needs_residual_input_and_survives_the_config_round_trip() -> None:
    snn = SNNConfig(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), motion_shifts=SHIFTS)
    residual = InputSpec(snn_size=(24, 24), snn_input="residual", snn_channels=1)
    config = ModelConfig(num_classes=3, mode="snn", input_spec=residual, snn=snn)
    data = config.to_dict()
    data["snn"]["motion_shifts"] = list(data["snn"]["motion_shifts"])  # as JSON gives it back
    assert ModelConfig.from_dict(data) == config
    del data["snn"]["motion_delays"]  # as checkpoints from before delays store it
    assert ModelConfig.from_dict(data).snn.motion_delays == (1,)
    delayed = SNNConfig(
        widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), motion_shifts=SHIFTS, motion_delays=(1, 2)
    )
    data = ModelConfig(num_classes=3, mode="snn", input_spec=residual, snn=delayed).to_dict()
    data["snn"]["motion_delays"] = [1, 2]
    assert ModelConfig.from_dict(data).snn == delayed
    assert SpikingResNet(delayed, 1).stem.conv.in_channels == 1 + 4 * len(SHIFTS) * 2
    with pytest.raises(ValueError, match="residual input"):
        ModelConfig(num_classes=3, mode="snn", input_spec=InputSpec(snn_input="events"), snn=snn)


def test_detector_products_count_as_macs_and_nir_refuses_them() -> None:
    snn = SpikingResNet(SNNConfig(widths=(4, 8), blocks=(1, 1), motion_shifts=SHIFTS), 1)
    plain = SpikingResNet(SNNConfig(widths=(4, 8), blocks=(1, 1)), 1)
    x = moving_bar((0, 1), 0.3)
    counts = []
    for net in (snn, plain):
        with OpCounter(net) as counter, torch.no_grad():
            net.eval().forward_sequence(x)
        counts.append(counter.counts())
    detector_macs = 4 * len(SHIFTS) * x.shape[0] * 24 * 24
    stem_extra = 4 * len(SHIFTS) * 9 * 4 * x.shape[0] * 12 * 12
    assert counts[0].total_macs - counts[1].total_macs == detector_macs + stem_extra
    with pytest.raises(ValueError, match="motion detectors"):
        snn_to_nir(snn, (24, 24))
