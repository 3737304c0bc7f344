"""The `respike` commands that wrap library functions (export, keys) and every command's help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from respike.nodes.cli import main


def respike(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``respike ARGS`` in this process (no second torch import): exit code, stdout, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--help",), "usage: respike"),
        (("run", "--help"), "usage: respike run"),
        (("demo", "--help"), "usage: respike demo"),
        (("train", "--help"), "usage: respike train"),
        (("eval", "--help"), "usage: respike eval"),
        (("info", "--help"), "usage: respike info"),
        (("convert", "--help"), "usage: respike convert"),
        (("export", "--help"), "usage: respike export"),
        (("keys", "--help"), "--force"),
        (("nodes",), "camera:"),
        (("node",), "\n  camera "),
        (("node", "--help"), "\n  camera "),
        (("node", "-h"), "\n  camera "),
        (("node", "camera", "--help"), "--fps"),
        (("node", "--help", "camera"), "--fps"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_every_help_exits_zero_with_its_usage(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 0, f"respike {' '.join(args)} exited {code}: {err}"
    assert expected in out, f"respike {' '.join(args)} printed {out[:300]!r}"


def test_node_usage_lists_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from respike.nodes.base import node_kinds

    code, out, _ = cli(capsys, "node", "--help")
    assert code == 0 and out.startswith("usage: respike node KIND")
    listed = {line.split()[0] for line in out.split("kinds:\n", 1)[1].splitlines() if line}
    assert listed == set(node_kinds())


@pytest.mark.parametrize(
    ("checkpoint", "flag", "suffix"),
    [("nmnist", "--nir", ".nir"), ("actions", "--onnx", ".onnx")],
)
def test_export_takes_shipped_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, checkpoint: str, flag: str, suffix: str
) -> None:
    target = tmp_path / f"{checkpoint}{suffix}"
    code, out, err = cli(capsys, "export", checkpoint, flag, str(target))
    assert code == 0, err
    assert target.stat().st_size > 0 and str(target) in out


def export_into(
    capsys: pytest.CaptureFixture[str], out_dir: Path, checkpoint: str, *flags: str
) -> tuple[int, str, str]:
    """``respike export CHECKPOINT`` with each flag given ``out_dir/model.<format>``."""
    args = [arg for flag in flags for arg in (flag, str(out_dir / f"model.{flag[2:]}"))]
    return cli(capsys, "export", checkpoint, *args)


@pytest.mark.parametrize(
    ("checkpoint", "flags", "message"),
    [
        (
            "gestures-dvs",
            ("--nir", "--onnx"),
            "gestures-dvs is snn-only: no ANN branch to export to ONNX (it exports to NIR only)",
        ),
        (
            "actions",
            ("--nir", "--onnx"),
            "actions has motion detectors: NIR has no one-step delay or product node for them "
            "(it exports to ONNX only)",
        ),
        ("actions-snn", ("--onnx",), "(it exports nothing)"),
    ],
)
def test_an_impossible_export_of_a_shipped_checkpoint_says_why(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    checkpoint: str,
    flags: tuple[str, ...],
    message: str,
) -> None:
    code, _, err = export_into(capsys, tmp_path / "out", checkpoint, *flags)
    assert code == 2
    assert err.startswith("respike: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists(), "an impossible export wrote files"


def test_an_impossible_export_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import torch

    from respike.models import get_model
    from respike.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = get_model("respike_tiny", num_classes=1, mode="snn")
    snn_only = str(save_checkpoint(tmp_path / "snn.pt", model, ["x"]))
    code, _, err = export_into(capsys, tmp_path / "out", snn_only, "--nir", "--onnx")
    assert code == 2 and "is snn-only: no ANN branch to export to ONNX" in err, err
    assert not (tmp_path / "out").exists(), "the NIR file was written before --onnx was refused"


def test_keys_refuses_to_replace_keys_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    assert respike("keys", str(folder)).returncode == 0
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    refused = respike("keys", str(folder))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert str(folder) in refused.stderr and "server.key" in refused.stderr
    assert "--force" in refused.stderr
    assert {p: p.read_bytes() for p in files} == before, "refused, yet the keys changed"
    forced = respike("keys", str(folder), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "server.key").read_bytes() != before[folder / "server.key"]
    assert (folder / "authorized" / "client.key").read_bytes() == (
        folder / "client.key"
    ).read_bytes(), "the new client must be the authorized one"
