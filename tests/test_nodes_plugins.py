"""Node kinds from outside respike: entry points of installed packages and `module:Class` kinds.

The example package in ``examples/gate`` is "installed" the way pip leaves it on disk (its
module and a ``.dist-info`` with ``entry_points.txt``, found on ``PYTHONPATH``), so the test
needs no network and no build; a second, broken package shows that one bad plug-in is
reported by name while every other kind still loads.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "gate"
RESPIKE = [sys.executable, "-m", "respike.nodes.cli"]


def install_like_pip(site: Path, name: str, version: str, entry_points: str) -> None:
    """The ``.dist-info`` pip writes for a package: enough for importlib.metadata."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[respike.nodes]\n{entry_points}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder holding the example package and a broken one."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE / "respike_gate.py", site)
    install_like_pip(site, "respike-gate", "0.1.0", "gate = respike_gate:Gate")
    install_like_pip(site, "respike-broken", "2.0", "broken = respike_missing_module:Node")
    return site


def respike(site: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [*RESPIKE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=site
    )


def test_installed_kinds_are_listed_with_their_package_and_a_broken_one_by_name(
    site: Path,
) -> None:
    done = respike(site, "nodes")
    assert done.returncode == 0, done.stderr
    assert "gate: Passes on a prediction when its label has held" in done.stdout
    assert "[respike-gate 0.1.0]" in done.stdout
    assert "--hold int = 5" in done.stdout
    assert "camera: " in done.stdout, "respike's own kinds still load"
    assert (
        "node kind 'broken' of package respike-broken (respike_missing_module:Node) cannot be "
        "loaded: ModuleNotFoundError" in done.stderr
    )
    used = respike(site, "node", "broken", "--help")
    assert used.returncode == 2
    assert used.stderr.count("\n") == 1 and "cannot be loaded" in used.stderr


@pytest.mark.slow
def test_an_installed_kind_runs_in_a_pipeline(site: Path) -> None:
    """The example's pipeline (synthetic performer → residual → model → gate → jsonl) under
    `respike run`: the gate's decisions come out, far fewer than the model's predictions."""
    done = respike(site, "run", str(EXAMPLE / "pipeline.toml"), "--status", "off", timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    decisions = [json.loads(line) for line in done.stdout.splitlines()]
    assert 1 <= len(decisions) <= 30, "300 frames' predictions became a few decisions"
    assert all(d["kind"] == "prediction" and d["topic"] == "gate/decisions" for d in decisions)
    labels = [d["meta"]["label"] for d in decisions]
    assert all(a != b for a, b in itertools.pairwise(labels)), "one per change"


@pytest.mark.slow
def test_a_module_class_kind_runs_and_a_wrong_one_stops_before_anything_starts(
    site: Path,
) -> None:
    pipeline = site / "ticks.toml"
    pipeline.write_text(
        '[nodes.ticks]\nkind = "counter"\nparams = { rate = 0.0, count = 5 }\n'
        '[nodes.print]\nkind = "respike.nodes.jsonl:JsonlSink"\n'
        'inputs = { in = { from = "ticks/ticks", delivery = "lossless" } }\n'
    )
    done = respike(site, "run", str(pipeline), "--status", "off")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [json.loads(line)["meta"]["i"] for line in done.stdout.splitlines()] == list(range(5))
    pipeline.write_text(pipeline.read_text().replace("jsonl:JsonlSink", "jsonl:Missing"))
    done = respike(site, "run", str(pipeline), "--status", "off")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"respike: error: {pipeline}: node 'print': node kind "
        "'respike.nodes.jsonl:Missing': module 'respike.nodes.jsonl' has no 'Missing'"
    ]
    assert done.stdout == ""


def test_the_readme_node_works_with_the_test_double(capsys: pytest.CaptureFixture[str]) -> None:
    """The sink of README's "Write your own node", run as its text says."""
    import re
    import types

    from respike.nodes.testing import MockIO, message
    from respike.stream import kinds

    text = (REPO / "README.md").read_text().split("## Write your own node", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    module = types.ModuleType("alarms")
    sys.modules["alarms"] = module
    try:
        exec(compile(code.group(1), "README.md", "exec"), module.__dict__)
        io = MockIO(module.Alarm)
        io.send("predictions", message(kinds.Prediction(label="walk"), t=1))
        io.send("predictions", message(kinds.Prediction(label="fall"), t=2))
        assert io.end() == []
    finally:
        del sys.modules["alarms"]
    assert capsys.readouterr().out == "ALARM 2\n"
