"""`respike demo --source`: which pipeline each kind of source picks, and clear errors."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from respike.nodes.demo import PIPELINES, plan_demo, with_viewer_port
from respike.nodes.pipeline import PipelineSpec, load_pipeline


def test_no_source_is_the_synthetic_demo() -> None:
    assert plan_demo(None).pipeline.name == "demo.toml"


def test_videos_recordings_and_dataset_samples_pick_their_pipelines(shared_data: Path) -> None:
    video = shared_data / "videos" / "carphone.mp4"
    assert plan_demo(str(video)).pipeline.name == "video.toml"
    recording = shared_data / "tonic_samples" / "sample.aedat4"
    plan = plan_demo(str(recording))
    assert plan.pipeline.name == "dvs-replay.toml"
    assert plan.overrides == {"dvs": {"path": str(recording)}}
    sample = f"{shared_data / 'dvs_gesture10'}#2"
    assert plan_demo(sample).overrides == {"dvs": {"path": sample}}


def test_missing_and_unreadable_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plan_demo(str(tmp_path / "missing#2"))
    junk = tmp_path / "notes.xyz"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="neither a video"):
        plan_demo(str(junk))


def viewer_params(spec: PipelineSpec) -> tuple[Any, dict[str, Any]]:
    (node,) = [node for node in spec.nodes if node.kind == "viewer"]
    return node.params, node.raw_params


def test_a_second_demo_serves_its_viewer_on_a_free_port() -> None:
    with socket.socket() as first_demo:
        first_demo.bind(("127.0.0.1", 0))
        busy = first_demo.getsockname()[1]
        spec = load_pipeline(PIPELINES / "demo.toml", {"viewer": {"port": busy}})
        params, raw = viewer_params(with_viewer_port(spec, None))
        assert params.port not in (busy, 0) and raw["port"] == params.port, (
            "the file's port is taken: the viewer moves to a free one, and says which"
        )
        assert viewer_params(with_viewer_port(spec, 0))[0].port not in (busy, 0)
        with pytest.raises(ValueError, match=f"viewer port {busy} on 127.0.0.1 is in use"):
            with_viewer_port(spec, busy)


def test_event_recordings_are_recognised_without_an_opencv_probe(
    shared_data: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for name in ("prophesee/evt2_sample.raw", "tonic_samples/sample.aedat4"):
        assert plan_demo(str(shared_data / name)).pipeline.name == "dvs-replay.toml"
    assert capfd.readouterr().err == "", "FFmpeg must not print while probing event files"
