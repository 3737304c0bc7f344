"""`respike demo`: pick the ready pipeline for a source (none, a camera, a video, a recording) and run it.

Without a source it runs ``pipelines/demo.toml`` (a synthetic person acting, no camera, no
download). ``--source 0`` uses camera 0 (and says so and falls back to the synthetic source when
there is none); ``--source PATH`` plays a video file through ``video.toml`` or an event recording
through ``dvs-replay.toml`` and its ``gestures-dvs`` checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from respike.nodes.pipeline import PipelineSpec, load_pipeline

log = logging.getLogger(__name__)

PIPELINES = Path(
    os.environ.get("RESPIKE_PIPELINES", Path(__file__).resolve().parents[1] / "pipelines")
)
"""Folder of the ready pipeline files (the repository's ``pipelines/``)."""


class DemoPlan(NamedTuple):
    """Which pipeline file runs, with which parameter overrides, and why."""

    pipeline: Path
    overrides: dict[str, dict[str, Any]]
    note: str


def camera_available(index: int) -> bool:
    """Whether OpenCV can open camera ``index`` and read a frame from it."""
    import cv2

    from respike.recorders.video import quiet_opencv

    with quiet_opencv():
        capture = cv2.VideoCapture(index)
        try:
            return bool(capture.isOpened() and capture.read()[0])
        finally:
            capture.release()


def plan_demo(source: str | None) -> DemoPlan:
    """The pipeline and overrides for ``source``; raises ValueError for a source nothing reads."""
    if source is None:
        return DemoPlan(PIPELINES / "demo.toml", {}, "synthetic source (no camera needed)")
    if source.isdigit():
        if camera_available(int(source)):
            return DemoPlan(
                PIPELINES / "webcam.toml", {"source": {"source": source}}, f"camera {source}"
            )
        return DemoPlan(
            PIPELINES / "demo.toml",
            {},
            f"no camera at index {source}: using the synthetic source instead",
        )
    from respike.recorders import UnknownFormatError, open_events, split_sample
    from respike.recorders.video import is_video

    path = Path(source)
    if not split_sample(path)[0].exists():  # FOLDER#INDEX: one sample of a dataset folder
        raise FileNotFoundError(
            f"demo source {source!r} does not exist (give a camera index, a video or an event recording)"
        )
    try:  # event recordings first: their headers say what they are, a video probe guesses
        open_events(path)
    except UnknownFormatError as exc:
        if is_video(path):
            return DemoPlan(
                PIPELINES / "video.toml", {"source": {"source": str(path)}}, f"video {path}"
            )
        raise ValueError(
            f"demo source {path} is neither a video OpenCV reads nor an event recording: {exc}"
        ) from None
    return DemoPlan(
        PIPELINES / "dvs-replay.toml", {"dvs": {"path": str(path)}}, f"event recording {path}"
    )


def matching_overrides(spec: PipelineSpec) -> dict[str, dict[str, Any]]:
    """Parameters that make a synthetic source act what the model's checkpoint knows (that of
    the first model node): its classes, and the framing and size of its training scenes. (The
    residual node fits itself to a checkpoint through its own ``checkpoint`` parameter.)"""
    from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint
    from respike.synthetic import CLASS_NAMES

    models = [n for n in spec.nodes if hasattr(n.params, "checkpoint") and n.kind != "residual"]
    sources = [n for n in spec.nodes if n.kind == "synthetic"]
    if not (models and sources):
        return {}
    info = read_checkpoint_info(resolve_checkpoint(models[0].params.checkpoint))
    if not set(info.class_names) <= set(CLASS_NAMES):
        return {}
    classes = ",".join(info.class_names)
    return {n.name: {"classes": classes, **_training_scene(info.extra)} for n in sources}


def _training_scene(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Framing and size of the synthetic scenes the checkpoint was trained on, when recorded."""
    try:
        scene = extra["data"]["scene"]
        return {
            "framing": str(scene["framing"]),
            "width": int(scene["width"]),
            "height": int(scene["height"]),
        }
    except (KeyError, TypeError, ValueError):
        return {}


def demo_pipeline(
    plan: DemoPlan,
    *,
    viewer: bool,
    as_json: bool,
    checkpoint: str | None = None,
    teach: str | None = None,
) -> PipelineSpec:
    """Load the planned pipeline fitted to its checkpoint (``checkpoint`` in place of the
    file's, e.g. a taught one), without the viewer if asked, printing JSON if asked; with
    ``teach``, the viewer's Teach panel writes that file and the model node switches to it."""
    chosen: dict[str, dict[str, Any]] = {}
    nodes = load_pipeline(plan.pipeline).nodes
    if checkpoint is not None:
        chosen = {
            n.name: {"checkpoint": checkpoint} for n in nodes if hasattr(n.params, "checkpoint")
        }
    overrides = matching_overrides(load_pipeline(plan.pipeline, chosen))
    for name, values in chosen.items():
        overrides.setdefault(name, {}).update(values)
    if teach is not None:
        models = [n for n in nodes if n.kind == "model"]
        if not viewer or not models:
            raise ValueError("--teach needs the viewer (its Teach panel) and a model node")
        from respike.models.checkpoint import teach_base

        base = teach if Path(teach).is_file() else checkpoint or models[0].params.checkpoint
        base = teach_base(base)
        for node in nodes:
            if node.kind == "viewer":
                overrides.setdefault(node.name, {}).update(teach=teach, teach_base=base)
            if node.kind == "model":
                overrides.setdefault(node.name, {}).update(watch=teach)
    for name, values in plan.overrides.items():
        overrides.setdefault(name, {}).update(values)
    if as_json:
        overrides.setdefault("print", {}).update(format="json", arrays=False)
    spec = load_pipeline(plan.pipeline, overrides)
    if not viewer:
        spec = dataclasses.replace(spec, nodes=tuple(n for n in spec.nodes if n.kind != "viewer"))
    return spec


def with_viewer_port(spec: PipelineSpec, wanted: int | None) -> PipelineSpec:
    """``spec`` with its viewer on a port that is free: ``wanted`` (0 = any), else the file's
    port when free, else any free one, so a second demo does not point at the first's page."""
    nodes = []
    for node in spec.nodes:
        if node.kind == "viewer":
            port = _viewer_port(node.params.host, wanted, node.params.port)
            node = dataclasses.replace(
                node,
                params=dataclasses.replace(node.params, port=port),
                raw_params={**node.raw_params, "port": port},
            )
        nodes.append(node)
    return dataclasses.replace(spec, nodes=tuple(nodes))


def _viewer_port(host: str, wanted: int | None, default: int) -> int:
    if wanted:
        if not _port_free(host, wanted):
            raise ValueError(f"viewer port {wanted} on {host} is in use; pick another with --port")
        return wanted
    if wanted is None and _port_free(host, default):
        return default
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def run_demo(
    source: str | None,
    *,
    duration: float | None,
    viewer: bool,
    as_json: bool,
    port: int | None = None,
    checkpoint: str | None = None,
    teach: str | None = None,
) -> int:
    """Run the demo until Ctrl-C or ``duration``; predictions go to stdout, notes to stderr."""
    from respike.nodes.launcher import Launcher

    plan = plan_demo(source)
    pipeline = demo_pipeline(
        plan, viewer=viewer, as_json=as_json, checkpoint=checkpoint, teach=teach
    )
    spec = with_viewer_port(pipeline, port)
    print(f"respike demo: {plan.note}; pipeline {plan.pipeline.name}", file=sys.stderr)
    for node in spec.nodes:
        if node.kind == "viewer":
            print(
                f"respike demo: viewer at http://{node.params.host}:{node.params.port}",
                file=sys.stderr,
            )
    print("respike demo: predictions follow (Ctrl-C to stop)", file=sys.stderr, flush=True)
    return Launcher(spec, duration=duration, status="off").run()
