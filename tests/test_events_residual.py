"""Tests of respike.events.residual: numba == numpy reference, ReSpike semantics, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from respike.events.residual import ResidualFrames, ResidualState

from helpers import read_clip

CONFIGS = [
    ResidualFrames(),
    ResidualFrames(stride=3, size=(128, 96)),
    ResidualFrames(color="rgb"),
    ResidualFrames(color="rgb", size=(112, 112)),
    ResidualFrames(size=(500, 300)),
    ResidualFrames(size=(64, 48), key_residual="previous"),
]


def run(
    residuals: ResidualFrames, frames: list[np.ndarray], *, reference: bool = False
) -> tuple[list[np.ndarray], list[ResidualState]]:
    step = residuals.reference if reference else residuals
    state = None
    outputs, states = [], []
    for frame in frames:
        out, state = step(frame, state)
        outputs.append(out)
        states.append(state)
    return outputs, states


def assert_same(settings_: ResidualFrames, frames: list[np.ndarray], what: str) -> None:
    fast, fast_states = run(settings_, frames)
    slow, slow_states = run(settings_, frames, reference=True)
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a.dtype == np.float32 and a.shape == b.shape, f"{what}: frame {i} shape/dtype"
        assert np.array_equal(a, b), (
            f"{what}: frame {i}: numba and numpy residuals differ by up to "
            f"{np.abs(a - b).max()} ({settings_})"
        )
        assert np.array_equal(fast_states[i].key, slow_states[i].key), f"{what}: key {i}"


@pytest.mark.parametrize("clip", ["carphone.mp4", "ucf101_apply_eye_makeup.avi"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.color}-{c.size}-{c.stride}")
def test_numba_equals_reference_on_real_clips(
    shared_data: Path, clip: str, config: ResidualFrames
) -> None:
    frames = read_clip(shared_data / "videos" / clip, 30)
    assert_same(config, frames, clip)


def test_numba_equals_reference_on_float32_and_grey_clips(shared_data: Path) -> None:
    frames = read_clip(shared_data / "videos" / "kinetics_arm_wrestling.mp4", 20)
    as_float = [(f / 255.0).astype(np.float32) for f in frames]
    as_grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    for config in (ResidualFrames(), ResidualFrames(size=(128, 128))):
        assert_same(config, as_float, "float32 clip")
        assert_same(config, as_grey, "grey clip")
        assert_same(config, [g[:, :, None] for g in as_grey], "(H, W, 1) clip")
    assert_same(ResidualFrames(color="rgb", size=(64, 48)), as_float, "float32 rgb clip")


def edge_case_frames(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    noise = [rng.integers(0, 256, (7, 5, 3), dtype=np.uint8) for _ in range(6)]
    return {
        "all-black": [np.zeros((8, 6, 3), np.uint8)] * 5,
        "saturated": [np.full((8, 6, 3), 255, np.uint8)] * 5,
        "black-to-white": [np.zeros((8, 6, 3), np.uint8), np.full((8, 6, 3), 255, np.uint8)] * 3,
        "single pixel": [rng.integers(0, 256, (1, 1, 3), dtype=np.uint8) for _ in range(6)],
        "odd size": noise,
        "one channel": [rng.integers(0, 256, (5, 9), dtype=np.uint8) for _ in range(6)],
        "float one channel": [rng.random((9, 5, 1), dtype=np.float32) for _ in range(6)],
        "float three channels": [rng.random((3, 11, 3), dtype=np.float32) for _ in range(6)],
        "float extremes": [np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)] * 3,
    }


@pytest.mark.parametrize("size", [None, (3, 2), (1, 1), (13, 17)])
def test_numba_equals_reference_on_edge_cases(rng: np.random.Generator, size: tuple | None) -> None:
    for name, frames in edge_case_frames(rng).items():
        configs = [ResidualFrames(size=size, stride=2)]
        if frames[0].ndim == 3 and frames[0].shape[2] == 3:
            configs.append(ResidualFrames(size=size, color="rgb"))
        for config in configs:
            assert_same(config, frames, name)


def test_key_frames_every_stride_frames_have_zero_residual(rng: np.random.Generator) -> None:
    frames = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(11)]
    residuals, states = run(ResidualFrames(stride=4), frames)
    keys = [s.frame_index for s in states if s.is_key_frame]
    assert keys == [0, 4, 8], f"key frames must be 0, 4, 8 (ReSpike stride 4); got {keys}"
    for i, (res, state) in enumerate(zip(residuals, states, strict=True)):
        if state.is_key_frame:
            assert not res.any(), f"residual of key frame {i} must be exactly zero"
        else:
            assert res.any(), f"residual of frame {i} (random) must not be zero"


def test_residual_is_frame_minus_segment_key_frame_in_intensity_units(
    rng: np.random.Generator,
) -> None:
    frames = [rng.integers(0, 256, (6, 9, 3), dtype=np.uint8) for _ in range(6)]
    residuals, _ = run(ResidualFrames(stride=4, color="rgb"), frames)
    for i, res in enumerate(residuals):
        key = frames[(i // 4) * 4]
        expected = (frames[i].astype(np.float32) - key.astype(np.float32)) / np.float32(255.0)
        expected = expected[:, :, ::-1].transpose(2, 0, 1)
        assert np.array_equal(res, expected), f"frame {i}: residual != (frame - key) / 255, RGB"
        assert res.min() >= -1.0 and res.max() <= 1.0, "residual must lie in [-1, 1]"


def test_previous_key_residual_carries_the_segment_one_step_further(
    rng: np.random.Generator,
) -> None:
    frames = [rng.integers(0, 256, (6, 10, 3), dtype=np.uint8) for _ in range(9)]
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255 for f in frames]
    zero, _ = run(ResidualFrames(stride=4), frames)
    previous, _ = run(ResidualFrames(stride=4, key_residual="previous"), frames)
    assert not previous[0].any(), "the first frame of a stream has no previous key: zero"
    for i in (4, 8):
        assert np.allclose(previous[i][0], grey[i] - grey[i - 4], atol=1e-6), (
            f"key frame {i}: residual must be the frame minus the previous key frame"
        )
        change = previous[i][0] - previous[i - 1][0]
        assert np.allclose(change, grey[i] - grey[i - 1], atol=1e-5), (
            f"step {i}: the change of residual across the key frame must be the frame change"
        )
    for i in (1, 2, 3, 5, 6, 7):
        assert np.array_equal(previous[i], zero[i]), f"frame {i} is not a key frame: unchanged"


def test_grey_residual_uses_opencv_grey(rng: np.random.Generator) -> None:
    frames = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(2)]
    residuals, _ = run(ResidualFrames(), frames)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    assert residuals[1].shape == (1, 10, 14)
    assert np.array_equal(residuals[1][0], (grey[1] - grey[0]) / np.float32(255.0))


def test_area_downsampling_close_to_opencv(rng: np.random.Generator) -> None:
    frames = [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(2)]
    residuals, states = run(ResidualFrames(size=(30, 20)), frames)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    small = [cv2.resize(g, (30, 20), interpolation=cv2.INTER_AREA) for g in grey]
    assert np.allclose(states[0].key[0], small[0], atol=1e-3), "key frame != INTER_AREA"
    assert np.allclose(residuals[1][0], (small[1] - small[0]) / 255.0, atol=1e-5)


def test_constant_frames_stay_constant_after_downsampling() -> None:
    frame = np.full((37, 41, 3), 77, np.uint8)
    _, state = ResidualFrames(size=(13, 7)).reference(frame)
    assert np.allclose(state.key, 77.0, atol=1e-4), "area average of a constant must be it"


def test_a_new_frame_format_restarts_the_stream() -> None:
    residuals = ResidualFrames(stride=4)
    state = None
    for _ in range(3):
        _, state = residuals(np.zeros((6, 8, 3), np.uint8), state)
    assert state is not None and state.frame_index == 2
    out, state = residuals(np.full((5, 8, 3), 9, np.uint8), state)
    assert state.format_changes == 1 and state.frame_index == 0 and state.is_key_frame
    assert out.shape == (1, 5, 8) and not out.any(), "restart frame is a key frame (zero)"
    _, state = residuals(np.full((5, 8), 9, np.float32) / 255, state)
    assert state.format_changes == 2, "a dtype/channel change also restarts the stream"


def test_steps_do_not_modify_the_state_they_are_given(rng: np.random.Generator) -> None:
    residuals = ResidualFrames(stride=2, size=(4, 3))
    frames = [rng.integers(0, 256, (9, 8, 3), dtype=np.uint8) for _ in range(3)]
    _, state = residuals(frames[0])
    key_before = state.key.copy()
    first, _ = residuals(frames[1], state)
    again, _ = residuals(frames[1], state)
    assert np.array_equal(first, again), "same state and frame must give the same residual"
    assert np.array_equal(state.key, key_before), "a step modified the given state's key"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((4, 5, 3), dtype=np.float64), "dtype float64; expected uint8"),
        (np.zeros((4, 5, 3), dtype=np.uint16), "dtype uint16; expected uint8"),
        (np.zeros((2, 4, 5, 3), dtype=np.uint8), "4 dimensions"),
        (np.zeros((4, 5, 2), dtype=np.uint8), "2 channels"),
        (np.full((4, 5), np.inf, dtype=np.float32), "finite intensities"),
    ],
)
def test_bad_frames_are_rejected_with_a_message(frame: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResidualFrames()(frame)
    with pytest.raises(ValueError, match=message):
        ResidualFrames().reference(frame)


def test_rgb_output_needs_three_channel_frames() -> None:
    with pytest.raises(ValueError, match="color='rgb' needs 3-channel frames"):
        ResidualFrames(color="rgb")(np.zeros((4, 5), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride is 0"),
        ({"stride": 2.0}, "stride is 2.0"),
        ({"stride": True}, "stride is True"),
        ({"size": (0, 4)}, "size is \\(0, 4\\)"),
        ({"size": [4, 4]}, "size is \\[4, 4\\]"),
        ({"size": (4, 4, 4)}, "size is"),
        ({"color": "gray"}, "color is 'gray'"),
        ({"channel_order": "bgra"}, "channel_order is 'bgra'"),
        ({"key_residual": "last"}, "key_residual is 'last'"),
    ],
)
def test_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResidualFrames(**kwargs)


@st.composite
def frame_sequences(draw: st.DrawFn) -> list[np.ndarray]:
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = draw(st.sampled_from([(height, width), (height, width, 1), (height, width, 3)]))
    if draw(st.booleans()):
        element = hnp.arrays(np.uint8, shape)
    else:
        floats = st.floats(0.0, 1.0, width=32)
        element = hnp.arrays(np.float32, shape, elements=floats)
    return draw(st.lists(element, min_size=1, max_size=5))


@given(
    frames=frame_sequences(),
    stride=st.integers(1, 3),
    size=st.none() | st.tuples(st.integers(1, 12), st.integers(1, 12)),
    rgb=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_numba_equals_reference_property(
    frames: list[np.ndarray], stride: int, size: tuple | None, rgb: bool
) -> None:
    three = frames[0].ndim == 3 and frames[0].shape[2] == 3
    config = ResidualFrames(stride=stride, size=size, color="rgb" if rgb and three else "grey")
    assert_same(config, frames, "hypothesis frames")
