"""The `respike` commands that wrap library functions: export, keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def respike(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from respike.models import get_model
    from respike.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, get_model("respike_tiny", num_classes=3), ("a", "b", "c"))
    return path


@pytest.mark.slow
def test_export_writes_nir_and_onnx(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = respike(
        "export",
        str(tiny_checkpoint),
        "--nir",
        str(tmp_path / "snn.nir"),
        "--onnx",
        str(tmp_path / "ann.onnx"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "snn.nir").stat().st_size > 0 and (tmp_path / "ann.onnx").stat().st_size > 0


@pytest.mark.slow
def test_export_of_a_broken_checkpoint_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = respike("export", str(broken), "--nir", str(tmp_path / "x.nir"))
    assert result.returncode == 2 and str(broken) in result.stderr


def test_keys_creates_a_usable_key_folder(tmp_path: Path) -> None:
    result = respike("keys", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (tmp_path / "keys").iterdir()} >= {
        "server.key",
        "server.key_secret",
        "client.key",
        "client.key_secret",
        "authorized",
    }
