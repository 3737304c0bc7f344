"""Live pipelines as a user runs them: synthetic source → residual → model, with a node killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from respike.stream.messages import now_us

from helpers import read_json_lines

pytestmark = pytest.mark.slow

LIVE = """
[pipeline]
name = "{name}"

[nodes.source]
kind = "synthetic"
params = {{ width = 96, height = 72, fps = 30, seed = 1 }}

[nodes.residual]
kind = "residual"
inputs = {{ frames = "source/frames" }}
params = {{ stride = 2, width = 32, height = 32, color = "grey" }}

[nodes.model]
kind = "model"
inputs = {{ steps = "residual/residual", keyframes = {{ from = "residual/keyframes", queue = 4 }} }}
params = {{ checkpoint = "{checkpoint}" }}

[nodes.print]
kind = "jsonl"
inputs = {{ in = {{ from = "model/predictions", queue = 64 }} }}
params = {{ arrays = false }}
"""


def test_a_killed_model_node_is_restarted_and_predictions_resume(
    tmp_path: Path, spawn, node_pids, checkpoints: dict[str, Path]
) -> None:
    name = f"live{uuid.uuid4().hex[:6]}"
    path = tmp_path / "live.toml"
    path.write_text(LIVE.format(name=name, checkpoint=checkpoints["residual"]))
    process = spawn("run", str(path), "--for", "120", stdout=subprocess.PIPE)
    first = read_json_lines(process, 30, timeout=60)
    assert len(first) >= 30, "the pipeline never predicted"
    assert all(r["kind"] == "prediction" and r["meta"]["truth"] for r in first)
    (pid,) = node_pids(name, "model")
    os.kill(pid, signal.SIGKILL)
    killed_us = now_us()
    read_json_lines(process, 10_000, timeout=0.3)  # what was printed before the kill
    after = read_json_lines(process, 10, timeout=30)
    assert len(after) >= 10, "predictions must resume within 30 s of the model node's kill"
    fresh = [r for r in after if r["t"] > killed_us]
    assert len(fresh) >= 5, "the restarted model must predict on frames captured after the kill"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert b"node model died (signal 9); restarting" in stderr


def test_the_demo_predicts_the_synthetic_actions_well_above_chance(spawn) -> None:

    process = spawn("demo", "--for", "40", "--no-viewer", "--json", stdout=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    predictions = [json.loads(line)["meta"] for line in stdout.splitlines()]
    assert len(predictions) > 300, f"only {len(predictions)} predictions in 40 s at 30 fps"
    settled = [p for p in predictions[90:] if p["truth"]]  # after the first 3 s of warm-up
    hits = sum(p["label"] == p["truth"] for p in settled) / len(settled)
    chance = 1 / len({p["truth"] for p in settled})
    assert hits > 4 * chance, f"live accuracy {hits:.0%} against chance {chance:.0%}"
