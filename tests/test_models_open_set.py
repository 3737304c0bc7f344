"""Open-set predictions: the rule's fit, its place in the model and checkpoints, `no action`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from respike.models import Clip, get_model, load_checkpoint, save_checkpoint
from respike.models.calibration import calibrate, with_rule
from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint
from respike.models.datasets import SyntheticActions, SyntheticOutliers
from respike.models.evaluation import evaluate, evaluate_rejection
from respike.models.hybrid import ModelConfig
from respike.models.open_set import OpenSetConfig, fit_open_set
from respike.nodes.rolling import NO_ACTION, roll
from respike.synthetic import SceneConfig
from respike.synthetic.outliers import OUTLIER_KINDS, outlier_clip


def gaussian_data(
    rng: np.random.Generator, n: int, dims: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two known classes around 1 and 3 in every dimension; background around 10."""
    labels = rng.integers(0, 2, n)
    known = np.abs(1 + 2 * labels[:, None] + 0.3 * rng.standard_normal((n, dims)))
    background = np.abs(10 + rng.standard_normal((n, dims)))
    return known, labels, background


def test_the_rule_rejects_what_is_unlike_the_classes_and_keeps_the_quantile() -> None:
    rng = np.random.default_rng(0)
    known, labels, background = gaussian_data(rng, 2000)
    validation, _, _ = gaussian_data(rng, 2000)
    rule = fit_open_set(
        known, labels, background, np.zeros(len(background), int), validation, quantile=0.95
    )
    fresh, _, far = gaussian_data(rng, 2000)
    with torch.no_grad():
        kept = (rule.score(torch.from_numpy(fresh).float()) <= 0).float().mean()
        rejected = (rule.score(torch.from_numpy(far).float()) > 0).float().mean()
    assert 0.92 <= kept <= 0.98, "about the quantile of known input is kept"
    assert rejected == 1.0


def test_rule_outputs_are_log_probabilities_of_classes_and_no_action() -> None:
    rng = np.random.default_rng(1)
    known, labels, background = gaussian_data(rng, 500)
    rule = fit_open_set(known, labels, background, np.zeros(500, int), known)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.4]])
    stats = torch.from_numpy(np.stack([known[0], background[0]])).float()
    probs = rule(stats, logits).exp()
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    assert probs[0].argmax() != 2 and probs[1].argmax() == 2
    # the classes keep their share among themselves
    torch.testing.assert_close(probs[0, :2] / probs[0, :2].sum(), logits[0].softmax(-1))


def test_fit_names_the_missing_component() -> None:
    known = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"components \[1\]"):
        fit_open_set(known, [0, 0, 2, 2], known, [0, 0, 0, 0], known)


def test_config_checks_the_rule_fits_the_model() -> None:
    config = get_model("respike_tiny", num_classes=3, mode="snn").config
    rule = OpenSetConfig(dims=config.stats_dims, classes=3)
    assert ModelConfig.from_dict({**config.to_dict(), "open_set": vars(rule)}).open_set == rule
    with pytest.raises(ValueError, match="open-set rule is for 4 classes"):
        ModelConfig.from_dict({**config.to_dict(), "open_set": {**vars(rule), "classes": 4}})
    assert ModelConfig.from_dict({**config.to_dict(), "open_set": None}).open_set is None


def test_rolling_says_no_action_when_that_output_wins() -> None:
    classes = ("wave", "clap", NO_ACTION)
    prediction, _ = roll([0.1, 0.1, 0.8], None, classes)
    assert prediction.label == NO_ACTION and prediction.label_index == -1
    prediction, _ = roll([0.9, 0.05, 0.05], None, classes)
    assert prediction.label == "wave"


def test_outlier_clips_are_deterministic_moving_frames() -> None:
    config = SceneConfig(width=64, height=48)
    for kind in OUTLIER_KINDS:
        clip = outlier_clip(kind, 5, 6, config)
        assert clip.shape == (6, 48, 64, 3) and clip.dtype == np.uint8
        np.testing.assert_array_equal(clip, outlier_clip(kind, 5, 6, config))
        assert np.abs(np.diff(clip.astype(np.int16), axis=0)).mean() > 1.0, f"{kind} moves"
    with pytest.raises(ValueError, match="outlier kind 'sky'"):
        outlier_clip("sky", 0, 1, config)


@pytest.fixture(scope="module")
def tiny_calibrated(one_torch_thread: None) -> tuple:
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=2, mode="hybrid").eval()
    spec = model.config.input_spec
    scene = SceneConfig(width=64, height=64, framing="upper")
    common = {"segments": 1, "scene": scene, "classes": ("swipe_right", "shake_red_ball")}
    known = SyntheticActions(spec, split="train", clips=12, **common)
    val = SyntheticActions(spec, split="val", clips=8, **common)
    outliers = SyntheticOutliers(spec, split="train", clips=8, segments=1, scene=scene)
    outliers_val = SyntheticOutliers(spec, split="val", clips=8, segments=1, scene=scene)
    calibrated, report = calibrate(model, known, val, outliers, outliers_val, quantile=0.9)
    return model, calibrated, report, val, outliers_val


def test_calibrated_model_keeps_its_classifier_and_adds_no_action(tiny_calibrated: tuple) -> None:
    model, calibrated, report, val, _ = tiny_calibrated
    assert calibrated.config.num_outputs == 3 and model.config.num_outputs == 2
    assert set(report.outliers_rejected) == set(OUTLIER_KINDS)
    keyframes, steps, _ = val[0]
    with torch.no_grad():
        plain = model(Clip(keyframes[None], steps[None])).step_logits
        open_ = calibrated(Clip(keyframes[None], steps[None])).step_logits
    torch.testing.assert_close(open_[..., :2].softmax(-1), plain.softmax(-1))
    assert with_rule(calibrated, None).config == model.config


def test_evaluation_counts_no_action_as_a_rejection(tiny_calibrated: tuple) -> None:
    _, calibrated, _, val, outliers_val = tiny_calibrated
    report = evaluate(calibrated, val)
    assert report.accuracy is not None and report.closed_accuracy is not None
    assert report.accuracy <= report.closed_accuracy
    total = sum(report.predictions.values())
    assert total == len(val)
    rejection = evaluate_rejection(calibrated, outliers_val, val.class_names)
    assert (
        rejection.clips == len(outliers_val)
        and rejection.steps == len(outliers_val) * outliers_val.steps
    )
    assert 0.0 <= rejection.steps_rejected <= 1.0
    plain = with_rule(calibrated, None)
    assert evaluate_rejection(plain, outliers_val, val.class_names).steps_rejected == 0.0


def test_checkpoint_round_trip_keeps_the_rule(tiny_calibrated: tuple, tmp_path: Path) -> None:
    _, calibrated, _, _, _ = tiny_calibrated
    path = save_checkpoint(tmp_path / "open.pt", calibrated, ["swipe_right", "shake_red_ball"])
    loaded = load_checkpoint(path)
    assert loaded.config.open_set == calibrated.config.open_set
    torch.testing.assert_close(loaded.model.open_set.weight, calibrated.open_set.weight)
    info = read_checkpoint_info(path)
    assert info.config["open_set"]["classes"] == 2
    assert loaded.config.output_names(loaded.class_names)[-1] == NO_ACTION


def test_shipped_actions_model_has_a_rule_with_its_command() -> None:
    info = read_checkpoint_info(resolve_checkpoint("actions"))
    assert info.config["open_set"] is not None
    report = info.extra["open_set"]
    assert report["command"].startswith("respike calibrate actions")
    assert report["known_rejected"] <= 0.02
    assert min(report["outliers_rejected"].values()) >= 0.9


def test_calibrate_refuses_to_replace_a_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "actions.pt"
    out.write_bytes(b"keep me")
    result = subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", "calibrate", "actions", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "exists; pass --force" in result.stderr
    assert out.read_bytes() == b"keep me"
