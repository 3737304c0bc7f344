"""respike nodes inside dora-rs: the message mapping, the exported dataflow, and `dora run`.

The end-to-end tests run the real ``dora`` CLI offline (``dora run`` starts its own daemon on
loopback) and compare the predictions of a pipeline under dora with those of the same
pipeline under ``respike run`` on the same video.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from respike.events.types import make_events
from respike.nodes.dora import export_dataflow, from_arrow, to_arrow
from respike.nodes.pipeline import load_pipeline
from respike.stream.messages import Message, MessageError
from respike.synthetic import SceneConfig, render_clip

pa = pytest.importorskip("pyarrow")
DORA = shutil.which("dora")
needs_dora = pytest.mark.skipif(DORA is None, reason="the dora CLI (dora-rs-cli) is not installed")


def round_trip(message: Message) -> Message:
    value, metadata = to_arrow(message, seq=3)
    return from_arrow("dora/in", value, metadata)


def test_every_kind_of_message_survives_the_arrow_mapping() -> None:
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    events = make_events([1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 0, 1])
    messages = [
        Message("s/frames", "frame", 10, {"frame": frame}, {"index": 2, "source": "cam"}),
        Message("d/events", "events", 11, {"events": events}, {"width": 10, "height": 10}),
        Message("r/residual", "residual", 12, {"residual": np.ones((1, 3, 4), np.float32)}, {}),
        Message(
            "k/keyframes",
            "features",
            13,
            {"stage1": np.ones((2, 3), np.float32), "stage2": np.arange(4, dtype=np.float16)},
            {"energy_pj": 1.5, "latency_ms": {"ann": 2.0}},
        ),
        Message(
            "m/predictions",
            "prediction",
            14,
            {"probs": np.array([0.25, 0.75], np.float32)},
            {"label": "wave", "topk": [["wave", 0.75], ["clap", 0.25]]},
        ),
        Message("x/end", "stats", 15, {}, {"node": "x", "kind": "counter"}),
    ]
    for message in messages:
        back = round_trip(message)
        assert (back.kind, back.t, dict(back.meta), back.seq) == (
            message.kind,
            message.t,
            dict(message.meta),
            3,
        )
        assert back.arrays.keys() == message.arrays.keys()
        for name, array in message.arrays.items():
            assert back.arrays[name].dtype == array.dtype
            np.testing.assert_array_equal(back.arrays[name], array)
    _, metadata = to_arrow(messages[0])
    assert (metadata["encoding"], metadata["width"], metadata["height"]) == ("rgb8", 5, 4)
    assert to_arrow(messages[4])[1]["label"] == "wave", "scalar meta readable without respike"
    assert pa.types.is_struct(to_arrow(messages[1])[0].type)


def test_images_of_other_dora_nodes_become_frames() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    image = {"width": 6, "height": 4}
    frame = from_arrow(
        "cam/image", pa.array(rgb[:, :, ::-1].ravel()), {**image, "encoding": "bgr8"}
    )
    assert frame.kind == "frame"
    np.testing.assert_array_equal(frame.arrays["frame"], rgb)
    grey = from_arrow("cam/image", pa.array(rgb[:, :, 0].ravel()), {**image, "encoding": "mono8"})
    np.testing.assert_array_equal(grey.arrays["frame"][:, :, 2], rgb[:, :, 0])


@pytest.mark.parametrize(
    ("value", "metadata", "cause"),
    [
        (["text"], {"encoding": "rgb8", "width": 1, "height": 1}, "bad-type"),
        ([1, 2, 3], {}, "unknown-input"),
        (np.zeros(11, np.uint8), {"encoding": "rgb8", "width": 2, "height": 2}, "byte-count"),
        ([0] * 12, {"encoding": "rgb8", "width": 2}, "bad-meta"),
        ([0.5], {"respike_kind": "residual", "respike_array": "r", "dtype": "<f4"}, "bad-meta"),
        (
            [1, 2],
            {"respike_kind": "residual", "respike_array": "r", "dtype": "<f4", "shape": "[3]"},
            "bad-dtype",
        ),
        ([1], {"respike_kind": "nonsense"}, "bad-kind"),
    ],
)
def test_input_that_cannot_be_mapped_says_what_is_wrong(
    value: object, metadata: dict, cause: str
) -> None:
    with pytest.raises(MessageError) as caught:
        from_arrow("dora/in", pa.array(value), metadata)
    assert caught.value.cause == cause


LOSSLESS = """
[nodes.source]
kind = "camera"
params = {{ source = "{video}", loop = false }}

[nodes.residual]
kind = "residual"
inputs = {{ frames = {{ from = "source/frames", delivery = "lossless" }} }}
params = {{ checkpoint = "actions" }}

[nodes.model]
kind = "model"
inputs = {{ steps = {{ from = "residual/residual", delivery = "lossless" }}, keyframes = {{ from = "residual/keyframes", delivery = "lossless" }} }}
params = {{ checkpoint = "actions" }}

[nodes.print]
kind = "jsonl"
inputs = {{ in = {{ from = "model/predictions", delivery = "lossless" }} }}
"""


@pytest.fixture
def lossless_pipeline(tmp_path: Path) -> Path:
    """camera (a 3 s synthetic clip, played once) → residual → model → jsonl, all lossless."""
    video = tmp_path / "wave.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    for frame in render_clip(
        "swipe_left", 5, 90, SceneConfig(width=160, height=120, framing="upper")
    ):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    path = tmp_path / "lossless.toml"
    path.write_text(LOSSLESS.format(video=video))
    return path


def test_a_pipeline_exports_to_a_dataflow(lossless_pipeline: Path, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load(export_dataflow(load_pipeline(lossless_pipeline)))
    nodes = {node["id"]: node for node in flow["nodes"]}
    assert list(nodes) == ["source", "residual", "model", "print"]
    assert nodes["model"]["inputs"]["keyframes"] == {
        "source": "residual/keyframes",
        "queue_size": 1000,
    }
    assert nodes["model"]["outputs"] == ["predictions"]
    assert nodes["residual"]["args"].split()[:4] == ["dora-node", "residual", "--name", "residual"]
    demo = yaml.safe_load(export_dataflow(load_pipeline(Path("pipelines/demo.toml"))))
    viewer = next(node for node in demo["nodes"] if node["id"] == "viewer")
    assert not [i for i in viewer["inputs"].values() if i["source"].endswith("/stats")]
    out = tmp_path / "dataflow.yml"
    command = [sys.executable, "-m", "respike.nodes.cli", "export-dataflow", str(lossless_pipeline)]
    assert subprocess.run([*command, "--out", str(out)], check=False).returncode == 0
    again = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists; not replacing it" in again.stderr


def dora_output(folder: Path, node: str, stream: str = "stdout") -> list[str]:
    """The lines one node of the last `dora run` in ``folder`` wrote to ``stream``, from
    dora's log of the node."""
    (log,) = folder.glob(f"out/*/log_{node}.jsonl")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e["msg"] for e in entries if e.get("stream") == stream]


def dora_run(
    folder: Path, dataflow: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    assert DORA is not None
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    return subprocess.run(
        [DORA, "run", str(dataflow)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_dora
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dora_run_predicts_what_respike_run_predicts(
    lossless_pipeline: Path, tmp_path: Path
) -> None:
    """The same pipeline, exported to a dataflow and run by `dora run`, gives the same
    predictions as under `respike run`: every frame, same labels and scores."""
    dataflow = tmp_path / "dataflow.yml"
    dataflow.write_text(export_dataflow(load_pipeline(lossless_pipeline)))
    done = dora_run(tmp_path, dataflow)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    under_dora = [
        json.loads(line) for line in dora_output(tmp_path, "print") if line.startswith("{")
    ]
    respike = subprocess.run(
        [
            sys.executable,
            "-m",
            "respike.nodes.cli",
            "run",
            str(lossless_pipeline),
            "--status",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert respike.returncode == 0, respike.stderr[-3000:]
    under_respike = [json.loads(line) for line in respike.stdout.splitlines()]
    times = [p["t"] for p in under_dora]
    gaps = [(i, b - a) for i, (a, b) in enumerate(itertools.pairwise(times)) if b - a > 50_000]
    assert len(under_dora) == len(under_respike) == 90, (
        f"{len(under_dora)} predictions under dora, {len(under_respike)} under respike; "
        f"dora's sequence numbers {[p['seq'] for p in under_dora[:3]]}..., capture-time gaps "
        f"over 50 ms after these predictions (index, µs): {gaps}"
    )
    # Both runtimes batch the steps that wait when the model falls behind, maybe differently:
    # a batch's arithmetic can differ in the last float bits, and scores are printed rounded.
    for i, (a, b) in enumerate(zip(under_dora, under_respike, strict=True)):
        scores_a, scores_b = dict(a["meta"]["topk"]), dict(b["meta"]["topk"])
        close = [abs(scores_a[n] - scores_b.get(n, 0.0)) <= 2e-3 for n in scores_a]
        assert all(close), f"prediction {i}: {a['meta']['topk']} vs {b['meta']['topk']}"
        assert a["meta"]["label"] == b["meta"]["label"], f"prediction {i}"


FOREIGN_NODE = """
import time
import numpy as np, pyarrow as pa
from dora import Node

node = Node()
time.sleep(0.5)  # dora 1.1 can lose outputs sent while the receiver connects (SOURCE_GRACE_S)
image = {"encoding": "bgr8", "width": 4, "height": 2}
node.send_output("out", pa.array(["not", "pixels"]), image)
node.send_output("out", pa.array(np.zeros(4 * 2 * 3, np.uint8)), image)
node.send_output("out", pa.array(np.zeros(5, np.uint8)), image)
node.send_output("out", pa.array(np.zeros(5, np.uint8)), image)
node.send_output("out", pa.array(np.full(4 * 2 * 3, 7, np.uint8)), {**image, "t": 42})
time.sleep(0.5)  # dora 1.1 may drop outputs still in flight when their sender exits
"""


@needs_dora
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bad_input_from_other_dora_nodes_is_counted_and_the_node_keeps_running(
    tmp_path: Path,
) -> None:
    """Someone else's camera node sends an image, junk, a short image twice, an image: the
    respike sink prints both images, logs each cause once with its name, and ends cleanly."""
    (tmp_path / "camera.py").write_text(FOREIGN_NODE)
    dataflow = tmp_path / "dataflow.yml"
    dataflow.write_text(
        "nodes:\n"
        f"  - id: camera\n    path: {sys.executable}\n    args: camera.py\n    outputs: [out]\n"
        f"  - id: sink\n    path: {sys.executable}\n"
        '    args: "-m respike.nodes.cli dora-node jsonl --name sink"\n'
        "    inputs:\n      in:\n        source: camera/out\n        queue_size: 100\n"
    )
    done = dora_run(tmp_path, dataflow)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    printed = [json.loads(line) for line in dora_output(tmp_path, "sink")]
    lines = dora_output(tmp_path, "sink", "stderr")
    assert [(m["kind"], m["arrays"]["frame"]["shape"]) for m in printed] == [
        ("frame", [2, 4, 3]),
        ("frame", [2, 4, 3]),
    ]
    assert printed[1]["t"] == 42
    warnings = [line for line in lines if "invalid input on in" in line]
    assert len(warnings) == 2, lines  # bad-type once, byte-count once (it came twice)
    assert all("sink: invalid input" in line for line in warnings)
    (ended,) = [line for line in lines if "sink: ended" in line]
    assert '"invalid": {"bad-type": 1, "byte-count": 2}' in ended


def test_an_unknown_kind_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "respike.nodes.cli", "dora-node", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("respike: error: unknown node kind 'nope'; known kinds:")
    assert done.stderr.count("\n") == 1


def test_the_example_dataflow_is_the_export_of_its_pipeline() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "dora"
    exported = export_dataflow(load_pipeline(example / "pipeline.toml"))
    assert (example / "dataflow.yml").read_text() == exported, (
        "regenerate: respike export-dataflow examples/dora/pipeline.toml --out ..."
    )
