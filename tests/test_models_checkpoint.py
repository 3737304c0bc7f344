"""Tests of respike.models.checkpoint: round trip and clear errors on bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from respike.models import Clip, HybridReSpike, get_model, load_checkpoint, save_checkpoint
from respike.models.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    read_checkpoint,
    read_checkpoint_info,
    resolve_checkpoint,
)

CLASSES = ("wave", "clap", "walk")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def saved(tmp_path: Path) -> tuple[HybridReSpike, Path]:
    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=3).eval()
    path = save_checkpoint(tmp_path / "model.pt", model, CLASSES, extra={"epoch": 3})
    return model, path


class Opaque:
    """Something torch.save pickles as a class reference (refused by weights_only)."""


def test_round_trip(saved: tuple[HybridReSpike, Path]) -> None:
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == CLASSES
    assert ckpt.config == model.config
    assert ckpt.input_spec.keyframe_interval == 2 and ckpt.input_spec.time_bin_us == 33_333
    assert ckpt.extra == {"epoch": 3}
    assert not ckpt.model.training
    clip = Clip(torch.randn(1, 1, 3, 32, 32), (torch.rand(1, 2, 2, 32, 32) < 0.3).float())
    with torch.no_grad():
        assert torch.equal(ckpt.model(clip).step_logits, model(clip).step_logits)
    raw = read_checkpoint(path)
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["input_spec"]["snn_size"] == (32, 32)


def test_class_names_must_match(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        save_checkpoint(tmp_path / "x.pt", get_model("respike_tiny", num_classes=3), ["a", "b"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved: tuple[HybridReSpike, Path], tmp_path: Path) -> None:
    _, path = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable respike checkpoint"):
        load_checkpoint(cut)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"garbage\.pt: not a readable respike checkpoint"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "code.pt"
    torch.save({"format": "respike-model", "payload": Opaque()}, path)
    with pytest.raises(CheckpointError, match=r"code\.pt: not a readable respike checkpoint"):
        load_checkpoint(path)


def test_another_programs_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="expected a dict with format='respike-model'"):
        load_checkpoint(path)


def test_newer_format(saved: tuple[HybridReSpike, Path], tmp_path: Path) -> None:
    _, path = saved
    payload = read_checkpoint(path)
    payload["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(
        CheckpointError, match=f"newer.pt: checkpoint format_version {FORMAT_VERSION + 1}"
    ):
        load_checkpoint(newer)


def test_weights_that_do_not_fit_the_config(
    saved: tuple[HybridReSpike, Path], tmp_path: Path
) -> None:
    _, path = saved
    payload = read_checkpoint(path)
    payload["config"]["snn"]["widths"] = (8, 8, 8, 16)
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match=r"wrong\.pt: weights do not match the config"):
        load_checkpoint(wrong)
    payload["config"]["mode"] = "quantum"
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match=r"wrong\.pt: checkpoint config is invalid"):
        load_checkpoint(wrong)


def test_saved_checkpoints_follow_the_umask(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = save_checkpoint(
            tmp_path / "perm.pt", get_model("respike_tiny", num_classes=2), ("a", "b")
        )
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644, "not the 0600 of a temporary file"


@pytest.mark.parametrize(
    "name", ["actions", "actions-snn", "actions-ann", "gestures-dvs", "nmnist"]
)
def test_info_read_without_torch_equals_what_torch_loads(name: str) -> None:
    path = resolve_checkpoint(name)
    info = read_checkpoint_info(path)
    loaded = load_checkpoint(path)
    assert info.class_names == loaded.class_names
    assert info.input_spec == loaded.input_spec
    assert info.config == read_checkpoint(path)["config"], "the config as stored"
    assert info.extra == loaded.extra


def test_info_is_read_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint\n"
        "info = read_checkpoint_info(resolve_checkpoint('actions'))\n"
        "print(info.input_spec.snn_size, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["(48,", "64)", "False"], result.stdout


def test_info_refuses_what_load_refuses(saved: tuple[HybridReSpike, Path], tmp_path: Path) -> None:
    _, path = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code = tmp_path / "code.pt"
    torch.save({"format": "respike-model", "payload": Opaque()}, code)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    payload = read_checkpoint(path)
    payload["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    for bad, reason in (
        (tmp_path / "nope.pt", "no such checkpoint file"),
        (cut, "not a readable respike checkpoint"),
        (code, "not a readable respike checkpoint"),
        (other, r"not a respike checkpoint \(expected a dict with format=.respike-model."),
        (newer, f"checkpoint format_version {FORMAT_VERSION + 1}"),
    ):
        with pytest.raises(CheckpointError, match=f"{bad.name}: {reason}"):
            read_checkpoint_info(bad)
    assert read_checkpoint_info(path).class_names == CLASSES
