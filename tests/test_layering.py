"""The layering of ARCHITECTURE.md, read from the source: light transport, offline models."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "events": (
        "torch",
        "torchvision",
        "norse",
        "zmq",
        "respike.stream",
        "respike.models",
        "respike.nodes",
        "respike.recorders",
    ),
    "stream": (
        "torch",
        "torchvision",
        "norse",
        "respike.models",
        "respike.nodes",
        "respike.recorders",
    ),
    "models": ("zmq", "respike.stream", "respike.nodes"),
    "recorders": ("torch", "torchvision", "norse", "respike.models", "respike.nodes"),
}

#: Packages held to an allow-list instead: beside the standard library they import only these.
#: The scene generator feeds the light `synthetic` source node, so it stays torch-free.
ONLY = {"synthetic": ("numpy", "cv2", "respike.events", "respike.synthetic")}


def imported_modules(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module)
    return modules


def within(module: str, packages: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(package: str, wrong: Callable[[str], bool]) -> list[str]:
    """``FILE imports MODULE`` for every import in ``package`` that ``wrong`` says it may not."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in imported_modules(path)
        if wrong(module)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_their_layer_allows(package: str) -> None:
    bad = violations(package, lambda module: within(module, FORBIDDEN[package]))
    assert not bad, "layering broken (see ARCHITECTURE.md):\n" + "\n".join(bad)


@pytest.mark.parametrize("package", sorted(ONLY))
def test_allow_listed_packages_import_nothing_else(package: str) -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = violations(
        package,
        lambda module: module.split(".")[0] not in stdlib and not within(module, ONLY[package]),
    )
    assert not bad, "layering broken (see ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_transport_and_node_runtime_start_without_torch() -> None:
    code = "import sys, respike.stream, respike.nodes.cli, respike.nodes.base; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", "a camera node must start without importing torch"


def test_the_scene_generator_renders_without_torch() -> None:
    code = (
        "import sys, respike.synthetic as s; "
        "s.render_clip('arm_roll', 0, 1, s.SceneConfig(width=16, height=16)); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", "the synthetic source must not import torch"


def test_models_and_their_dataset_readers_stay_off_the_transport(tmp_path: Path) -> None:
    """models may use recorders' layouts and readers; that must not pull zmq into training."""
    (tmp_path / "labels.csv").write_text("file,class_id,class_name\na.bs2,1,hand_clapping\n")
    (tmp_path / "a.bs2").write_bytes(bytes([1, 2, 0x80, 0, 10, 3, 4, 0, 0, 20]))
    code = (
        "import sys, respike.models.training; "
        "from respike.models import InputSpec; "
        "from respike.models.datasets import DvsGesture; "
        "spec = InputSpec(snn_size=(32, 32), snn_input='events', snn_channels=2); "
        f"assert DvsGesture({str(tmp_path)!r}, spec)[0].steps.sum() == 2; "
        "print(sorted(m for m in sys.modules if m == 'zmq' or m.startswith('respike.stream')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", "a training process must not import zmq or the stream"


def test_the_type_checker_sees_every_package_under_its_import_name() -> None:
    """mypy cannot read setuptools' package-dir; .typecheck/respike links each folder under
    its import name. A package missing there would be unchecked and its imports Any."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    mapped = config["tool"]["setuptools"]["package-dir"]
    for package, folder in mapped.items():
        link = root / ".typecheck" / Path(*package.split("."))
        assert link.resolve() == (root / folder).resolve(), f"{link} must link to {folder}"
    assert ".typecheck/respike" in config["tool"]["mypy"]["files"]
