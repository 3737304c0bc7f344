"""A pipeline's life: sources wait for the nodes downstream, `end` reaches every node, and a
node that cannot work ends the pipeline with one line instead of idling or restarting forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from respike.nodes.base import Node, StopPipeline, param
from respike.nodes.runtime import (
    EXIT_CANNOT_START,
    EXIT_STOP_PIPELINE,
    InputWire,
    NodeRunner,
    Wiring,
)
from respike.nodes.testsource import CounterSource
from respike.recorders import open_events


class SlowSink(Node):
    """Collects the ``i`` of every message; its start and each message take set times."""

    @dataclass(frozen=True)
    class Params:
        start_s: float = param(0.0, "seconds spent in start")
        per_message_s: float = param(0.0, "seconds spent per message")

    inputs = ("in", "stats")
    optional_inputs = frozenset({"stats"})

    def start(self) -> None:
        time.sleep(self.params.start_s)
        self.received: list[int] = []

    def on_message(self, port: str, message) -> None:
        if port == "in":
            self.received.append(message.meta["i"])
            time.sleep(self.params.per_message_s)


class Quitter(Node):
    """Asks for the whole pipeline to stop at its first message (a sink whose reader left)."""

    inputs = ("in",)

    def on_message(self, port: str, message) -> None:
        raise StopPipeline("the reader has gone")


def run_in_thread(runner: NodeRunner) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(runner.run()), daemon=True)
    thread.start()
    return thread, codes


def test_a_source_waits_for_a_slow_starting_consumer_so_nothing_is_lost(ipc_dir: Path) -> None:
    source_out, sink_out = f"ipc://{ipc_dir}/src.sock", f"ipc://{ipc_dir}/sink.sock"
    sink = NodeRunner(
        SlowSink,
        "sink",
        SlowSink.Params(start_s=1.5),
        # a queue deeper than the whole run: a busy machine slows the sink, never drops
        Wiring(output=sink_out, inputs={"in": InputWire(source_out, "src/ticks", queue=128)}),
    )
    source = NodeRunner(
        CounterSource,
        "src",
        CounterSource.Params(rate=200, count=100),
        # as the launcher wires a live source whose consumer keeps 128: a queue of 128 on the
        # publisher's side too (with the default 2 a busy CI machine dropped 2 of 100)
        Wiring(output=source_out, ready={"sink": sink_out}, hwm=128),
    )
    sink_thread, sink_code = run_in_thread(sink)
    source_thread, source_code = run_in_thread(source)
    source_thread.join(timeout=30)
    sink_thread.join(timeout=30)
    assert not sink_thread.is_alive(), "the sink must finish when the source's `end` arrives"
    assert source_code == [0] and sink_code == [0]
    assert sink.node.received == list(range(100)), (
        "live delivery drops what nobody receives yet: the source must wait for the sink's start"
    )


def test_end_reaches_a_live_consumer_that_is_behind(ipc_dir: Path) -> None:
    source_out = f"ipc://{ipc_dir}/src.sock"
    sink = NodeRunner(
        SlowSink,
        "sink",
        SlowSink.Params(per_message_s=0.05),
        Wiring(inputs={"in": InputWire(source_out, "src/ticks")}),
    )
    source = NodeRunner(
        CounterSource,
        "src",
        CounterSource.Params(rate=0, count=300, shape="64x64"),
        Wiring(output=source_out, expect_subscribers={"ticks": 1}),
    )
    sink_thread, sink_code = run_in_thread(sink)
    source_thread, _ = run_in_thread(source)
    source_thread.join(timeout=30)
    sink_thread.join(timeout=30)
    assert not sink_thread.is_alive(), (
        "a full live queue drops the first `end`: it must be sent again until the consumer left"
    )
    assert sink_code == [0]
    assert 0 < len(sink.node.received) < 300, "a consumer that is behind skips data (live)"


def test_stats_inputs_do_not_hold_a_node_open_after_its_data_ended(ipc_dir: Path) -> None:
    source_out = f"ipc://{ipc_dir}/src.sock"
    sink = NodeRunner(
        SlowSink,
        "sink",
        SlowSink.Params(),
        Wiring(
            inputs={
                "in": InputWire(source_out, "src/ticks", queue=16),
                "stats": InputWire(source_out, "src/stats"),
            }
        ),
    )
    source = NodeRunner(
        CounterSource,
        "src",
        CounterSource.Params(rate=100, count=20),
        Wiring(output=source_out, expect_subscribers={"ticks": 1}),
    )
    sink_thread, sink_code = run_in_thread(sink)
    source_thread, _ = run_in_thread(source)
    source_thread.join(timeout=30)
    sink_thread.join(timeout=30)
    assert not sink_thread.is_alive(), "stats never end: only data inputs decide the end"
    assert sink_code == [0] and sink.node.received == list(range(20))


def test_a_node_asking_to_stop_the_pipeline_exits_with_its_code(ipc_dir: Path) -> None:
    source_out = f"ipc://{ipc_dir}/src.sock"
    quitter = NodeRunner(
        Quitter, "quit", Quitter.Params(), Wiring(inputs={"in": InputWire(source_out, "src/ticks")})
    )
    source = NodeRunner(
        CounterSource,
        "src",
        CounterSource.Params(rate=100),
        Wiring(output=source_out, expect_subscribers={"ticks": 1}),
    )
    quit_thread, quit_code = run_in_thread(quitter)
    source_thread, _ = run_in_thread(source)
    quit_thread.join(timeout=30)
    source.request_stop()
    source_thread.join(timeout=30)
    assert quit_code == [EXIT_STOP_PIPELINE]
    assert quitter.errors == {}, "a stop request is not an error to count"


def test_a_node_that_cannot_start_reports_one_line(tmp_path: Path) -> None:
    from respike.nodes.camera import CameraNode

    report = tmp_path / "cam.error"
    runner = NodeRunner(
        CameraNode, "cam", CameraNode.Params(source="/no/such/clip.mp4"), Wiring(report_file=report)
    )
    assert runner.run() == EXIT_CANNOT_START
    assert report.read_text() == (
        "node cam (camera) cannot start: video file '/no/such/clip.mp4' does not exist\n"
    )


PIPELINE = """
[pipeline]
name = "{name}"

[nodes.source]
kind = "{kind}"
params = {{ {params} }}

[nodes.print]
kind = "jsonl"
inputs = {{ in = {{ from = "source/{port}", delivery = "lossless" }} }}
"""


def run_pipeline(tmp_path: Path, kind: str, params: str, port: str) -> subprocess.CompletedProcess:
    path = tmp_path / "pipeline.toml"
    name = f"t{uuid.uuid4().hex[:8]}"
    path.write_text(PIPELINE.format(name=name, kind=kind, params=params, port=port))
    return subprocess.run(
        ["respike", "run", str(path), "--status", "off"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_missing_video_ends_the_pipeline_with_one_line(tmp_path: Path) -> None:
    result = run_pipeline(tmp_path, "camera", 'source = "missing.mp4"', "frames")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "respike: error: node source (camera) cannot start: video file 'missing.mp4' does not exist"
    )
    assert "Traceback" not in result.stderr and "restarting" not in result.stderr


@pytest.mark.slow
def test_a_damaged_recording_plays_its_valid_prefix_then_ends_the_pipeline(
    tmp_path: Path, shared_data: Path
) -> None:
    whole = (shared_data / "prophesee" / "evt2_sample.raw").read_bytes()
    cut = tmp_path / "cut.raw"
    cut.write_bytes(whole[: len(whole) // 2 + 1])  # inside a 4-byte word
    prefix = open_events(cut, strict=False).read_all()
    assert len(prefix) > 0
    result = run_pipeline(tmp_path, "dvs", f'path = "{cut}", window_us = 5000, speed = 0', "events")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("respike: error: node source (dvs) failed: ") and "at byte" in last
    assert "Traceback" not in result.stderr and "restarting" not in result.stderr
    played = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(r["arrays"]["events"]["shape"][0] for r in played) == len(prefix), (
        "every event before the damage is played"
    )


@pytest.mark.slow
def test_the_demo_piped_into_head_stops_quietly_when_head_has_its_lines(tmp_path: Path) -> None:
    script = "respike demo --json --no-viewer | head -2; echo demo exited ${PIPESTATUS[0]}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:  # files: no pipe a node could hold
        process = subprocess.Popen(
            ["bash", "-c", script], stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the demo did not stop after head left:\n{err.read_text()[-2000:]}")
    result = subprocess.CompletedProcess(process.args, 0, out.read_text(), err.read_text())
    *predictions, status = result.stdout.splitlines()
    assert [json.loads(line)["kind"] for line in predictions] == ["prediction", "prediction"]
    assert status == "demo exited 0", result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
