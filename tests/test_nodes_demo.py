"""`respike demo --source`: which pipeline each kind of source picks, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from respike.nodes.demo import plan_demo


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
