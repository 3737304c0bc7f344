"""`respike run`: whole pipelines as processes: completion, restarts after SIGKILL, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from helpers import read_json_lines

PIPELINE = """
[pipeline]
name = "{name}"

[nodes.counter]
kind = "counter"
params = {{ rate = {rate}, count = {count}, shape = "8x8" }}

[nodes.print]
kind = "jsonl"
inputs = {{ in = {{ from = "counter/ticks", delivery = "lossless" }} }}
"""


def write_pipeline(tmp_path: Path, rate: float, count: int) -> tuple[Path, str]:
    name = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE.format(name=name, rate=rate, count=count))
    return path, name


@pytest.mark.slow
def test_a_finite_pipeline_runs_to_completion_and_exits_cleanly(tmp_path: Path, spawn) -> None:
    path, _ = write_pipeline(tmp_path, rate=0, count=500)
    process = spawn("run", str(path), "--for", "60", stdout=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr.decode()
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["meta"]["i"] for r in records] == list(range(500)), (
        "a lossless pipeline delivers every message in order"
    )
    assert b"state=done" in stderr and b"gaps=0" in stderr


@pytest.mark.slow
def test_a_killed_node_is_restarted_and_messages_flow_again(
    tmp_path: Path, spawn, node_pids
) -> None:
    path, name = write_pipeline(tmp_path, rate=50, count=0)
    process = spawn("run", str(path), "--for", "60", stdout=subprocess.PIPE)
    assert len(read_json_lines(process, 10, timeout=30)) >= 10, "the pipeline never produced output"
    (pid,) = node_pids(name, "counter")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [p for p in node_pids(name, "counter") if p != pid]:
        time.sleep(0.1)
    assert [p for p in node_pids(name, "counter") if p != pid], (
        "the launcher did not restart the node"
    )
    read_json_lines(process, 10_000, timeout=0.5)  # drop what was already printed
    after = read_json_lines(process, 10, timeout=20)
    assert len(after) >= 10, "messages must flow again after the restart"
    assert min(r["seq"] for r in after) < 50, "the restarted counter counts from the start again"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"died (signal 9); restarting" in stderr
    assert b"node=counter kind=counter state=stopped restarts=1" in stderr
    assert node_pids(name, "counter") == [] and node_pids(name, "print") == [], (
        "Ctrl-C must stop every node"
    )


@pytest.mark.slow
def test_for_stops_an_endless_pipeline(tmp_path: Path, spawn, node_pids) -> None:
    path, name = write_pipeline(tmp_path, rate=100, count=0)
    process = spawn("run", str(path), "--for", "3", stdout=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=30)  # an endless run would time out here
    assert process.returncode == 0, stderr.decode()
    times = [json.loads(line)["t"] for line in stdout.splitlines()]
    # The counter starts after the launcher's clock (process start-up) and stops with it: its
    # messages span 2.5 s of the 3 here; `--for 0.3` gives none.
    assert len(times) > 10 and times[-1] - times[0] > 1_000_000, (
        "the pipeline must run until --for elapses, not stop at once"
    )
    assert b"node=counter kind=counter state=stopped" in stderr
    assert node_pids(name, "counter") == []


def test_bad_pipeline_is_reported_before_anything_starts(tmp_path: Path, spawn) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[nodes.a]\nkind = "counter"\nparams = { rate = "x" }\n')
    process = spawn("run", str(path))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert f"{path}: node 'a' (counter): parameter 'rate' is 'x'" in stderr.decode()


@pytest.mark.parametrize("args", [("nodes",), ("node", "counter", "--help")])
def test_cli_lists_kinds_and_parameters(spawn, args: tuple[str, ...]) -> None:
    process = spawn(*args, stdout=subprocess.PIPE)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"messages per second" in stdout, "parameters are listed with their help"


@pytest.mark.slow
def test_nodes_on_named_hosts_talk_tcp_with_curve_keys(tmp_path: Path, spawn) -> None:
    with socket.socket() as probe:  # a free pair of ports for base_port and base_port + 1
        probe.bind(("127.0.0.1", 0))
        base_port = probe.getsockname()[1]
    keys = tmp_path / "keys"
    assert spawn("keys", str(keys)).wait(timeout=30) == 0
    path = tmp_path / "hosts.toml"
    path.write_text(
        f"""
[pipeline]
name = "h{uuid.uuid4().hex[:6]}"
base_port = {base_port}

[nodes.counter]
kind = "counter"
host = "127.0.0.1"
params = {{ rate = 0, count = 200 }}

[nodes.print]
kind = "jsonl"
host = "127.0.0.2"
inputs = {{ in = {{ from = "counter/ticks", delivery = "lossless" }} }}
"""
    )
    process = spawn("run", str(path), "--for", "60", "--keys", str(keys), stdout=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr.decode()
    assert [json.loads(line)["meta"]["i"] for line in stdout.splitlines()] == list(range(200))
