"""The viewer's Teach panel in headless Chromium: record, fit, and the running model switches."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from respike.models.checkpoint import resolve_checkpoint
from respike.nodes.viewer.teach import Teacher
from respike.synthetic import SceneConfig, render_clip

from helpers import DevTools, read_json_lines

TEACH_JS = "document.getElementById('teach')"
STATUS_JS = "document.getElementById('teach-status').textContent"
EXAMPLES_JS = "document.getElementById('teach-examples').textContent"


def viewer_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The viewer URL `respike demo` prints on stderr."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += process.stderr.read() or b""
        found = re.search(rb"viewer at (http://\S+)", seen)
        if found:
            return found.group(1).decode()
        time.sleep(0.1)
    raise AssertionError(f"no viewer URL within {timeout} s: {seen.decode(errors='replace')}")


@pytest.mark.slow
def test_the_teach_panel_records_fits_and_the_model_switches(
    chromium: str, spawn, tmp_path: Path
) -> None:
    taught = tmp_path / "mine.pt"
    process = spawn(
        "demo",
        "--teach",
        str(taught),
        "--port",
        "0",
        "--json",
        "--for",
        "150",
        stdout=subprocess.PIPE,
    )
    url = viewer_url(process, timeout=60)
    first = read_json_lines(process, 20, timeout=60)
    assert len(first) >= 20, "the demo never predicted"
    with DevTools(chromium) as browser:
        page = browser.open(url)
        assert browser.wait_for(page, f"!{TEACH_JS}.hidden", timeout=15), "no Teach panel"
        assert "teach on actions" in browser.evaluate(page, STATUS_JS)
        # the buttons' own path: a name typed in, Record clicked (5 x 2 s after 3 s)
        browser.evaluate(
            page,
            "document.getElementById('teach-label').value = 'arms';"
            "document.getElementById('teach-record').click()",
        )
        assert browser.wait_for(page, f"{EXAMPLES_JS}.includes('arms \u00d75')", timeout=60), (
            browser.evaluate(page, STATUS_JS)
        )
        browser.evaluate(page, "document.getElementById('teach-background').click()")
        assert browser.wait_for(
            page, f"{EXAMPLES_JS}.includes('background \u00d75')", timeout=60
        ), browser.evaluate(page, STATUS_JS)
        browser.evaluate(page, "document.getElementById('teach-fit').click()")
        status = browser.wait_for(page, f"{STATUS_JS}.startsWith('taught') && {STATUS_JS}", 60)
        assert status and "taught arms" in status and str(taught) in status, status
        screenshot = browser.screenshot(page)
        # the same name again is refused on the page, and nothing is recorded
        browser.evaluate(
            page,
            "document.getElementById('teach-label').value = 'arms';"
            "document.getElementById('teach-record').click()",
        )
        refused = browser.wait_for(
            page, f"{STATUS_JS}.includes('already taught') && {STATUS_JS}", 10
        )
        assert refused, browser.evaluate(page, STATUS_JS)
    assert taught.is_file() and taught.with_suffix(".md").is_file()
    labels: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "arms" not in labels:
        records = read_json_lines(process, 10_000, timeout=1.0)
        labels |= {name for r in records for name, _ in r["meta"]["topk"]}
    assert "arms" in labels, f"the model node never switched to the taught model: {labels}"
    assert screenshot.startswith(b"\x89PNG")
    target = os.environ.get("RESPIKE_VIEWER_SCREENSHOT")
    if target:  # docs/viewer.png: RESPIKE_VIEWER_SCREENSHOT=docs/viewer.png pytest -k teach_panel
        Path(target).write_bytes(screenshot)


def wait_idle(teacher: Teacher, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = teacher.snapshot()
        if not state["busy"] and state["recording"] is None:
            return state
        time.sleep(0.05)
    raise AssertionError(f"the teacher is still busy: {teacher.snapshot()}")


def test_the_teacher_refuses_bad_requests_and_says_why_a_fit_fails(tmp_path: Path) -> None:
    teacher = Teacher("actions-late", tmp_path / "mine.pt")
    try:
        with pytest.raises(ValueError, match="name the action"):
            teacher.record("  ")
        with pytest.raises(ValueError, match="expected 1-50 examples"):
            teacher.record("wave", count=0)
        with pytest.raises(ValueError, match="no examples of 'wave'"):
            teacher.remove("wave")
        teacher.record("wave", count=2, seconds=0.5, countdown=0)
        with pytest.raises(ValueError, match="already recording 'wave'"):
            teacher.record("clap")
        frames = render_clip("right_hand_wave", 3, 200, SceneConfig(width=160, height=120))
        for frame in frames:
            if teacher.snapshot()["recording"] is None:
                break
            teacher.add_frame(frame)
            time.sleep(1 / 30)
        state = wait_idle(teacher)
        assert state["examples"] == {"wave": 2}
        teacher.fit()
        state = wait_idle(teacher)
        assert state["message"].startswith("error: no background examples"), state["message"]
        assert not (tmp_path / "mine.pt").exists(), "nothing is written when the fit fails"
        teacher.remove("wave")
        assert teacher.snapshot()["examples"] == {}
    finally:
        teacher.stop()


def test_the_panel_does_not_replace_a_checkpoint_it_did_not_teach(tmp_path: Path) -> None:
    out = tmp_path / "trained.pt"
    shutil.copy(resolve_checkpoint("nmnist"), out)  # a checkpoint, but not a taught one
    before = out.read_bytes()
    teacher = Teacher("actions-late", out)
    try:
        teacher.record("wave", count=1, seconds=0.5, countdown=0)
        frames = render_clip("right_hand_wave", 3, 60, SceneConfig(width=160, height=120))
        for frame in frames:
            if teacher.snapshot()["recording"] is None:
                break
            teacher.add_frame(frame)
            time.sleep(1 / 30)
        wait_idle(teacher)
        teacher.record("background", count=1, seconds=0.5, countdown=0)
        for frame in frames[::-1]:
            if teacher.snapshot()["recording"] is None:
                break
            teacher.add_frame(frame)
            time.sleep(1 / 30)
        wait_idle(teacher)
        teacher.fit()
        state = wait_idle(teacher)
        assert "is not a taught checkpoint; not replacing it" in state["message"], state
        assert out.read_bytes() == before
    finally:
        teacher.stop()


def feed_events(teacher: Teacher, events: np.ndarray, sensor: tuple[int, int]) -> None:
    """``events`` in 10 ms packets, as fast as they come, until the recording ends."""
    edges = np.searchsorted(events["t"], np.arange(events["t"][0], events["t"][-1], 10_000))
    for a, b in itertools.pairwise(edges):
        if teacher.snapshot()["recording"] is None:
            return
        teacher.add_events(events[a:b], sensor)
    raise AssertionError("the recording did not end within the events given")


def test_the_panel_records_events_for_an_event_base(tmp_path: Path, shared_data: Path) -> None:
    """A DVS replay teaches an event base: windows of event time, whatever the replay speed;
    camera frames to an event base say which base to use."""
    from respike.models.checkpoint import load_checkpoint
    from respike.recorders import open_events

    teacher = Teacher("gestures-dvs", tmp_path / "dvs.pt")
    try:
        for label, name in (("clap", "1.bs2"), ("wave", "2.bs2")):
            reader = open_events(shared_data / "dvs_gesture10" / name)
            events, sensor = reader.read_all(), reader.sensor_size
            assert sensor is not None
            teacher.record(label, count=2, seconds=0.4, countdown=0)
            feed_events(teacher, events, sensor)
            wait_idle(teacher)
        rng = np.random.default_rng(0)
        noise = np.zeros(20_000, dtype=events.dtype)
        noise["t"] = np.sort(rng.integers(0, 1_000_000, noise.size))
        noise["x"], noise["y"] = rng.integers(0, 128, (2, noise.size))
        noise["p"] = rng.integers(0, 2, noise.size)
        teacher.record("background", count=1, seconds=0.4, countdown=0)
        feed_events(teacher, noise, (128, 128))
        assert wait_idle(teacher)["examples"] == {"clap": 2, "wave": 2, "background": 1}
        teacher.fit()
        state = wait_idle(teacher)
        assert state["classes"] == ["clap", "wave"], state["message"]
        taught = load_checkpoint(tmp_path / "dvs.pt")
        assert taught.class_names == ("clap", "wave")
        teacher.record("frames", count=1, seconds=0.5, countdown=0)
        for frame in render_clip("right_hand_wave", 3, 40, SceneConfig(width=160, height=120)):
            if teacher.snapshot()["recording"] is None:
                break
            teacher.add_frame(frame)
            time.sleep(1 / 30)
        state = wait_idle(teacher)
        assert "gestures-dvs takes events but the viewer received frames" in state["message"]
    finally:
        teacher.stop()
