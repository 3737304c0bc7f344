"""Every command shown in README.md, run as written, as a new user would.

The commands run in a scratch folder where the README's example names point at real files of
../shared/data (``clip.mp4`` is a real clip, ``rec.aedat4`` a real recording, ...), so the text
is run unchanged. A command fails its test on an exit other than the one documented, on a
traceback, or on an ``ERROR`` or ``FutureWarning`` line in its output. Commands that run until
Ctrl-C get it (SIGINT to their process group, as a terminal sends it) after their first
predictions. The first command runs from an empty numba cache, as on a fresh machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
INSTALL_AND_DEMO = "python -m pip install -e . && respike demo"
TEST_COMMAND = "python -m pip install -e '.[dev]' && python -m pytest"

EXAMPLE_FILES = {
    "clip.mp4": "videos/carphone.mp4",
    "rec.aedat4": "tonic_samples/sample.aedat4",
    "recording.raw": "prophesee/evt2_sample.raw",
    "in.raw": "prophesee/evt2_sample.raw",
    "data/DVSGesture": "dvs_gesture10",
    "videos": "videos",
}
"""README example names and the real files of ../shared/data they stand for."""

UNTIL_CTRL_C = {
    INSTALL_AND_DEMO,
    "respike demo",
    "respike demo --source 0",
    "respike demo --source clip.mp4",
    "respike demo --source rec.aedat4",
    "respike demo --port 8080",
    "respike demo --source clip.mp4 --checkpoint mine.pt",
    "respike demo --teach mine.pt",
}
TEACH = "respike teach --source clip.mp4 --segment wave=0:2 --segment background=2:4 --out mine.pt"
GATE = "python -m pip install -e examples/gate"
EXPORT_DORA = (
    "respike export-dataflow pipelines/video.toml --set source.source=clip.mp4 "
    "--set source.loop=false --set viewer.port=0 --out dataflow.yml"
)
NEEDS = {
    "respike run examples/gate/pipeline.toml": GATE,
    "dora run dataflow.yml": EXPORT_DORA,
    "respike demo --source clip.mp4 --checkpoint mine.pt": TEACH,
    "respike teach --base mine.pt --source clip.mp4 --segment nod=1:3 --out mine.pt --force": TEACH,
}
"""Commands that use what an earlier README command writes, and that command."""
NO_CAMERA_LINE = (
    "respike: error: node source (camera) cannot start: cannot open camera device '0' (no "
    "such device, unreachable or unreadable)"
)
OUTPUTS = {
    "respike convert in.raw out.h5": "out.h5",
    "respike export nmnist --nir nmnist.nir": "nmnist.nir",
    "respike export actions --onnx actions-ann.onnx": "actions-ann.onnx",
    "respike keys keys/": "keys/server.key",
    TEACH: "mine.md",
    "respike calibrate actions --out actions-rule.pt": "actions-rule.pt",
    EXPORT_DORA: "dataflow.yml",
    "respike ros2-interface --out ws/src/respike_msgs": "ws/src/respike_msgs/msg/Prediction.msg",
    "respike run pipelines/foxglove.toml --set source.source=clip.mp4": "run.mcap",
}


def readme_commands() -> list[str]:
    """The commands of README.md's indented blocks, comments cut, ``[--flag]`` run both ways."""
    commands: list[str] = []
    for line in README.read_text().splitlines():
        text = line.strip()
        if not line.startswith("    ") or not text.startswith(("respike ", "python -m ", "dora ")):
            continue
        text = re.split(r"\s{2,}# ", text)[0].strip()
        optional = re.search(r" \[(--[a-z-]+)\]", text)
        if optional:
            plain = text.replace(optional.group(0), "")
            commands += [plain, f"{plain} {optional.group(1)}"]
        else:
            commands.append(text)
    return commands


COMMANDS = readme_commands()


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    assert COMMANDS[:2] == [INSTALL_AND_DEMO, TEST_COMMAND]
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, ".ci/run must call exactly the README's test command"


@pytest.fixture
def workdir(tmp_path: Path, shared_data: Path) -> Path:
    """A scratch folder where the README's example names are real files and `pipelines/` is ours."""
    for name, target in EXAMPLE_FILES.items():
        link = tmp_path / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared_data / target)
    (tmp_path / "pipelines").symlink_to(REPO_ROOT / "pipelines")
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    return tmp_path


PREDICTION = re.compile(r"^(\d\d:\d\d:\d\d  |\{)")
"""A prediction line: readable text (``HH:MM:SS  label …``) or a JSON object."""


def run_until_predictions(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``command`` until it printed 3 predictions, then Ctrl-C it; (exit code, out, err)."""
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while sum(1 for line in lines if PREDICTION.match(line)) < 3:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, "".join(lines) + out, err


def assert_clean(command: str, output: str) -> None:
    for mark in ("Traceback", "FutureWarning"):
        assert mark not in output, f"`{command}` printed a {mark}:\n{output[-3000:]}"
    errors = [line for line in output.splitlines() if re.search(r"\bERROR\b", line)]
    assert not errors, f"`{command}` printed ERROR lines:\n" + "\n".join(errors)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("command", [c for c in COMMANDS if c != TEST_COMMAND])
def test_readme_command_runs_as_written(command: str, workdir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "RESPIKE_CACHE": str(tmp_path / "cache"),  # compiled steps stay out of ~/.cache
    }
    if command == INSTALL_AND_DEMO:  # a fresh machine: nothing in numba's cache yet
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    cwd = REPO_ROOT if command.startswith("python -m pip") else workdir
    if command in NEEDS:
        first = subprocess.run(
            ["bash", "-c", NEEDS[command]], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert first.returncode == 0, f"`{NEEDS[command]}` (needed first): {first.stderr}"
    if command in UNTIL_CTRL_C:
        code, out, err = run_until_predictions(command, cwd, env)
        assert_clean(command, out + err)
        assert code == 0, f"`{command}` exited {code} after Ctrl-C:\n{err[-3000:]}"
        assert len([line for line in out.splitlines() if PREDICTION.match(line)]) >= 3
        if command == INSTALL_AND_DEMO:
            assert "compiling numba kernels" in err, "a cold start must say that it compiles"
        return
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert_clean(command, result.stdout + result.stderr)
    if command == "respike run pipelines/webcam.toml --for 60" and not camera_available():
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == NO_CAMERA_LINE, (
            "without a camera the pipeline ends with the line the README quotes"
        )
        return
    assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{result.stderr}"
    if command in OUTPUTS:
        assert (workdir / OUTPUTS[command]).is_file(), f"`{command}` wrote no {OUTPUTS[command]}"
    if command.startswith("respike compile-step"):
        built = list((tmp_path / "cache" / "compiled-steps").glob("step-*.pt2"))
        assert len(built) == 1, f"`{command}` built {built}"
    if command == "dora run dataflow.yml":  # the clip under dora: dora shows each node's output
        # Live queues (dora's queue_size, as the pipeline file's) may drop a step or two on a
        # busy machine, as under respike run; tests/test_nodes_dora.py checks with lossless
        # queues that dora delivers every prediction respike run gives.
        shown = re.compile(r" stdout print: \d\d:\d\d:\d\d  ")  # a prediction, not a log line
        printed = [line for line in result.stdout.splitlines() if shown.search(line)]
        assert 116 <= len(printed) <= 120, result.stdout[-2000:]
    if command.startswith("respike run") and "source.loop=false" in command:
        # a 120-frame clip: a prediction per frame, then exit
        # The pipeline's queues are live (newest wins), so a machine busy with other work may
        # drop a step or two; the nodes count them. Losing more is a fault.
        assert 116 <= len(result.stdout.splitlines()) <= 120, result.stdout[-2000:]


def camera_available() -> bool:
    code = "from respike.nodes.demo import camera_available; print(camera_available(0))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip() == "True"


def test_readme_commands_are_found() -> None:
    assert len(COMMANDS) >= 20 and len(set(COMMANDS)) == len(COMMANDS)
    assert "respike info recording.raw --json" in COMMANDS, "[--json] runs both ways"
    assert "respike info data/DVSGesture#3" in COMMANDS, "a '#' in a path is not a comment"
