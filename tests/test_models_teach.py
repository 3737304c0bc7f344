"""Teach mode: examples from a video, a new head and rule, the checkpoint, the CLI, a live swap."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from respike.models import load_checkpoint
from respike.models.checkpoint import resolve_checkpoint
from respike.models.teach import (
    Example,
    Segment,
    stored_examples,
    teach,
    teachable,
    video_examples,
)
from respike.synthetic import (
    Scene,
    SceneConfig,
    joint_angles,
    render_clip,
    sample_variation,
    split_seed,
)

from helpers import read_json_lines

SCENE = SceneConfig(width=160, height=120, fps=30, framing="upper")
SECONDS = 4  # per part of a video


def write_video(path: Path, parts: list[np.ndarray]) -> Path:
    """RGB frame arrays one after the other into an mp4 at 30 fps."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    for part in parts:
        for frame in part:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def three_parts(path: Path, seed: int, start: float) -> Path:
    """A wave, then the performer holding still, then a clap: 4 s each, one performer and
    scene (``seed``), the actions from ``start`` seconds into their motion."""
    frames = SECONDS * 30
    seed = split_seed("val", seed)
    scene = Scene(SCENE, sample_variation(seed, SCENE))
    v = scene.variation
    pose = joint_angles("lift_red_box", start, v.body, v.motion)
    still = np.stack([scene.render_angles(pose, None, start + i / 30) for i in range(frames)])
    return write_video(
        path,
        [
            render_clip("right_hand_wave", seed, frames, SCENE, start=start),
            still,
            render_clip("hand_clapping", seed, frames, SCENE, start=start),
        ],
    )


SEGMENTS = ["wave=0:4", "background=4:8", "clap=8:12"]


def test_segments_parse_and_name_the_expected_form() -> None:
    assert Segment.parse("wave=2.0:6.5") == Segment("wave", 2.0, 6.5)
    assert Segment.parse("idle=3:") == Segment("idle", 3.0, None)
    for bad in ("wave", "wave=2", "=1:2", "wave=a:b"):
        with pytest.raises(ValueError, match="expected LABEL=START:END"):
            Segment.parse(bad)
    with pytest.raises(ValueError, match="0 <= START < END"):
        Segment.parse("wave=3:1")


def fake(label: str, n: int = 20, offset: float = 0.0, dims: int = 8) -> Example:
    rng = np.random.default_rng(abs(hash(label)) % 2**32)
    return Example(label, "test", (offset + rng.random((n, dims))).astype(np.float32))


def test_teach_refuses_examples_that_cannot_make_a_model() -> None:
    base = load_checkpoint(resolve_checkpoint("actions-late"))
    with pytest.raises(ValueError, match="no examples recorded"):
        teach(base, [])
    with pytest.raises(ValueError, match="only background"):
        teach(base, [fake("background")])
    with pytest.raises(ValueError, match="no background examples"):
        teach(base, [fake("wave")])
    with pytest.raises(ValueError, match="made by another base network"):
        teach(base, [fake("wave"), fake("background", offset=5)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("teach")
    return {
        "teach": three_parts(folder / "teach.mp4", 7, start=0.0),
        "test": three_parts(folder / "test.mp4", 7, start=5.3),
    }


def test_taught_model_tells_the_taught_actions_and_no_action_on_new_footage(
    videos: dict[str, Path], one_torch_thread: None
) -> None:
    base = load_checkpoint(resolve_checkpoint("actions-late"))
    segments = [Segment.parse(s) for s in SEGMENTS]
    examples = video_examples(teachable(base.model), videos["teach"], segments)
    assert [e.label for e in examples] == [
        "wave",
        "wave",
        "background",
        "background",
        "clap",
        "clap",
    ]
    taught = teach(base, examples)
    assert taught.class_names == ("wave", "clap")
    assert taught.fit_seconds < 10
    expected = {"wave": 0, "background": 2, "clap": 1}  # no action is the last output
    for example in video_examples(teachable(base.model), videos["test"], segments):
        with torch.no_grad():
            features = torch.from_numpy(example.features)
            assert taught.model.open_set is not None
            probs = taught.model.open_set(features, taught.model.head(features)).exp().mean(0)
        assert int(probs.argmax()) == expected[example.label], f"{example.source}: {probs}"


def test_a_segment_past_the_end_of_the_video_is_an_error(videos: dict[str, Path]) -> None:
    base = load_checkpoint(resolve_checkpoint("actions-late"))
    with pytest.raises(ValueError, match=r"ends at 12.00 s, inside segment clap=8.0:13.0"):
        video_examples(teachable(base.model), videos["teach"], [Segment.parse("clap=8:13")])


def respike(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_teach_cli_adds_removes_and_refuses_without_losing_a_file(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    source = ["--source", str(videos["teach"])]
    segment_flags = [flag for s in SEGMENTS for flag in ("--segment", s)]
    done = respike("teach", *source, *segment_flags, "--out", "mine.pt", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["classes"] == ["wave", "clap"]
    assert summary["examples"] == {"wave": 2, "background": 2, "clap": 2}
    assert (tmp_path / "mine.md").read_text().startswith("# Model card: `mine` (taught)")
    before = (tmp_path / "mine.pt").read_bytes()

    again = respike("teach", *source, "--segment", "wave=0:2", "--out", "mine.pt", cwd=tmp_path)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    duplicate = respike(
        "teach",
        "--base",
        "mine.pt",
        *source,
        "--segment",
        "wave=0:2",
        "--out",
        "x.pt",
        cwd=tmp_path,
    )
    assert duplicate.returncode == 2 and "'wave' is already taught" in duplicate.stderr
    late = respike("teach", *source, "--segment", "clap=8:13", "--out", "y.pt", cwd=tmp_path)
    assert late.returncode == 2 and "ends at 12.00 s" in late.stderr
    assert (tmp_path / "mine.pt").read_bytes() == before
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()

    removed = respike(
        "teach", "--base", "mine.pt", "--remove", "clap", "--out", "less.pt", cwd=tmp_path
    )
    assert removed.returncode == 0, removed.stderr
    less = load_checkpoint(tmp_path / "less.pt")
    assert less.class_names == ("wave",)
    assert {e.label for e in stored_examples(less)} == {"wave", "background"}
    assert less.extra["teach"]["base"] == "actions-late"

    (tmp_path / "labels.csv").write_text(
        f"file,label,start,end\n{videos['teach']},wave,0,4\n{videos['teach']},idle,4,8\n"
        f"{videos['teach']},clap,8,12\n"
    )
    labelled = respike("teach", "--labels", "labels.csv", "--out", "csv.pt", cwd=tmp_path)
    assert labelled.returncode == 2 and "no background examples" in labelled.stderr
    (tmp_path / "labels.csv").write_text(
        f"file,label,start,end\n{videos['teach']},wave,0,4\n{videos['teach']},background,4,8\n"
    )
    labelled = respike("teach", "--labels", "labels.csv", "--out", "csv.pt", cwd=tmp_path)
    assert labelled.returncode == 0, labelled.stderr
    assert load_checkpoint(tmp_path / "csv.pt").class_names == ("wave",)


PIPELINE = """
[pipeline]
name = "{name}"

[nodes.source]
kind = "camera"
params = {{ source = "{video}", loop = true }}

[nodes.residual]
kind = "residual"
inputs = {{ frames = "source/frames" }}
params = {{ checkpoint = "actions" }}

[nodes.model]
kind = "model"
inputs = {{ steps = {{ from = "residual/residual", queue = 8 }}, keyframes = {{ from = "residual/keyframes", queue = 8 }} }}
params = {{ checkpoint = "{checkpoint}" }}

[nodes.print]
kind = "jsonl"
inputs = {{ in = {{ from = "model/predictions", queue = 256 }} }}
params = {{ arrays = false }}
"""


@pytest.mark.slow
def test_a_model_taught_while_the_pipeline_runs_is_swapped_in_live(
    videos: dict[str, Path], tmp_path: Path, spawn
) -> None:
    running = tmp_path / "running.pt"
    shutil.copy(resolve_checkpoint("actions"), running)
    path = tmp_path / "pipeline.toml"
    name = f"teach{uuid.uuid4().hex[:6]}"
    path.write_text(PIPELINE.format(name=name, video=videos["test"], checkpoint=running))
    process = spawn("run", str(path), "--for", "150", stdout=subprocess.PIPE)
    first = read_json_lines(process, 30, timeout=90)
    assert len(first) >= 30, "the pipeline never predicted"
    shipped = {"swipe_right", "swipe_left", "swipe_up", "swipe_down", "no action"}
    assert {label for r in first for label, _ in r["meta"]["topk"]} <= shipped | {
        "shake_red_ball",
        "shake_green_ball",
        "lift_red_box",
        "lift_blue_box",
    }

    taught = respike(
        "teach",
        "--source",
        str(videos["teach"]),
        *[flag for s in SEGMENTS for flag in ("--segment", s)],
        "--out",
        str(running),
        "--force",
        cwd=tmp_path,
    )
    assert taught.returncode == 0, taught.stderr
    swapped_at = time.monotonic()
    labels: list[str] = []
    while time.monotonic() - swapped_at < 60 and not {"wave", "clap", "no action"} <= set(labels):
        records = read_json_lines(process, 10_000, timeout=1.0)
        labels += [
            r["meta"]["label"]
            for r in records
            if r["meta"]["topk"][0][0] in ("wave", "clap", "no action")
        ]
    assert {"wave", "clap", "no action"} <= set(labels), (
        f"after the swap the labels were {sorted(set(labels))}"
    )


def test_an_event_recording_teaches_an_event_base_and_not_a_frame_base(
    shared_data: Path, tmp_path: Path
) -> None:
    recording = shared_data / "tonic_samples" / "sample.aedat4"  # 0.59 s of events
    segments = ["--segment", "move=0:0.3", "--segment", "background=0.3:0.58"]
    done = respike(
        "teach",
        "--base",
        "gestures-dvs",
        "--source",
        str(recording),
        *segments,
        "--window",
        "0.13",
        "--out",
        "dvs.pt",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["examples"] == {"move": 2, "background": 2}
    taught = load_checkpoint(tmp_path / "dvs.pt")
    assert taught.class_names == ("move",) and taught.input_spec.snn_input == "events"
    refused = respike("teach", "--source", str(recording), *segments, "--out", "x.pt", cwd=tmp_path)
    assert refused.returncode == 2
    assert "holds events; this base takes residual frames" in refused.stderr
    assert not (tmp_path / "x.pt").exists()


def test_teach_mode_teaches_an_inline_model_on_its_late_sibling() -> None:
    """Taught heads read the SNN's spikes before fusion, which in-line fusion does not have."""
    from respike.models import FusionConfig, get_model
    from respike.models.checkpoint import teach_base

    assert teach_base("actions") == "actions-late", "the shipped actions fuses in line"
    assert teach_base("actions-late") == "actions-late"
    assert teach_base("gestures-dvs") == "gestures-dvs"
    inline = FusionConfig(stages=(2, 3, 4), head_dim=8, placement="inline")
    with pytest.raises(ValueError, match="teach on a late-fusion base such as actions-late"):
        teachable(get_model("respike_tiny", num_classes=3, fusion=inline))
