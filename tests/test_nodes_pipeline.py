"""Pipeline files: every mistake is reported with the file, the node and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from respike.models.checkpoint import read_checkpoint_info, resolve_checkpoint
from respike.nodes.launcher import Endpoints, node_command
from respike.nodes.pipeline import PipelineError, load_pipeline
from respike.nodes.residual import fitted_residuals
from respike.stream.sockets import Delivery

GOOD = """
[pipeline]
name = "good"

[nodes.sink]
kind = "jsonl"
inputs = { in = { from = "src/ticks", delivery = "lossless" } }

[nodes.src]
kind = "counter"
params = { rate = 5, count = 3, shape = "2x2" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_a_good_pipeline_is_ordered_sources_first_with_typed_params(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD))
    assert [n.name for n in spec.nodes] == ["src", "sink"]
    assert spec.node("src").params.rate == 5.0 and isinstance(spec.node("src").params.rate, float)
    (wire,) = spec.node("sink").inputs
    assert (wire.full_topic, wire.delivery) == ("src/ticks", Delivery.LOSSLESS)


def test_overrides_replace_parameters_and_are_type_checked(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD), {"src": {"count": "7"}})
    assert spec.node("src").params.count == 7
    with pytest.raises(PipelineError, match=r"expected an integer|expected int"):
        load_pipeline(write(tmp_path, GOOD), {"src": {"count": "many"}})


def test_launcher_command_wires_lossless_outputs_and_expected_subscribers(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD))
    endpoints = Endpoints.plan(spec, Path("/r"))
    src = node_command(spec.node("src"), spec, endpoints)
    sink = node_command(spec.node("sink"), spec, endpoints)
    assert "--lossless-outputs" in src and src[src.index("--expect") + 1] == "ticks=1"
    assert sink[sink.index("--input") + 1] == "in=src/ticks@ipc:///r/src.sock"
    assert sink[sink.index("--delivery") + 1] == "in=lossless"
    assert json.loads(src[src.index("--params") + 1]) == {"rate": 5.0, "count": 3, "shape": "2x2"}


def test_parameters_reach_the_node_typed_without_a_string_round_trip(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD), {"src": {"count": "7"}})
    src = node_command(spec.node("src"), spec, Endpoints.plan(spec, Path("/r")))
    params = json.loads(src[src.index("--params") + 1])
    assert params == {"rate": 5.0, "count": 7, "shape": "2x2"}, "--set strings arrive typed"
    assert isinstance(params["rate"], float) and isinstance(params["count"], int)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('kind = "counter"', 'kind = "camera9"'),
            r"node 'src': unknown node kind 'camera9'; known kinds: .*counter",
        ),
        (
            ("rate = 5", "rat = 5"),
            r"node 'src' \(counter\): unknown parameter\(s\) rat; counter takes: rate",
        ),
        (
            ("rate = 5", 'rate = "fast"'),
            r"node 'src' \(counter\): parameter 'rate' is 'fast'; expected float",
        ),
        (("count = 3", "count = true"), r"parameter 'count' is True; expected an integer"),
        (("rate = 5", "rate = -1"), r"node 'src' \(counter\): rate and count must be ≥ 0"),
        (('"src/ticks"', '"cam/ticks"'), r"node 'sink' input 'in': no node named 'cam'"),
        (
            ('"src/ticks"', '"src/frames"'),
            r"'src' \(counter\) has no output 'frames'; outputs: \['ticks', 'stats'\]",
        ),
        (('"src/ticks"', '"src.ticks"'), r"input 'in' is 'src.ticks'; expected \"node/topic\""),
        (("in = {", "out = {"), r"jsonl has no input 'out'; inputs: \['in'\]"),
        (
            ('delivery = "lossless"', 'delivery = "eventually"'),
            r"delivery 'eventually'; expected 'live' or 'lossless'",
        ),
        (
            ('kind = "jsonl"', 'kind = "jsonl"\ncolor = "red"'),
            r"node 'sink': unknown key\(s\) \['color'\]",
        ),
    ],
)
def test_mistakes_name_the_file_the_node_and_what_was_expected(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(PipelineError, match=message) as info:
        load_pipeline(path)
    assert str(path) in str(info.value), "the error must name the file"


def test_unwired_required_input_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[nodes.sink]\nkind = "jsonl"\n')
    with pytest.raises(PipelineError, match=r"input\(s\) \['in'\] of jsonl are not wired"):
        load_pipeline(path)


def test_cycles_are_reported_with_their_path(tmp_path: Path) -> None:
    text = """
[nodes.a]
kind = "jsonl"
inputs = { in = "b/stats" }
[nodes.b]
kind = "jsonl"
inputs = { in = "a/stats" }
"""
    with pytest.raises(PipelineError, match=r"cycle: a -> b -> a"):
        load_pipeline(write(tmp_path, text))


def test_invalid_toml_and_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not valid TOML"):
        load_pipeline(write(tmp_path, "[nodes.a\nkind="))
    with pytest.raises(PipelineError, match="no such pipeline file"):
        load_pipeline(tmp_path / "missing.toml")


def test_named_hosts_get_tcp_endpoints(tmp_path: Path) -> None:
    text = GOOD.replace('kind = "counter"', 'kind = "counter"\nhost = "10.0.0.7"').replace(
        'kind = "jsonl"', 'kind = "jsonl"\nhost = "edge-box"'
    )
    spec = load_pipeline(write(tmp_path, text))
    endpoints = Endpoints.plan(spec, tmp_path)
    src_port, sink_port = spec.node("src").port, spec.node("sink").port
    assert endpoints.bind["src"] == f"tcp://10.0.0.7:{src_port}"
    assert endpoints.bind["sink"] == f"tcp://*:{sink_port}", "a host name binds every interface"
    assert endpoints.connect["sink"] == f"tcp://edge-box:{sink_port}"
    sink = node_command(spec.node("sink"), spec, endpoints)
    assert sink[sink.index("--input") + 1] == f"in=src/ticks@tcp://10.0.0.7:{src_port}"


def test_shipped_pipelines_are_valid() -> None:
    folder = Path(__file__).resolve().parents[1] / "pipelines"
    files = sorted(folder.glob("*.toml"))
    assert files, "pipelines/ must hold ready pipeline files"
    for path in files:
        load_pipeline(path)


def test_shipped_pipelines_feed_their_model_what_its_checkpoint_was_trained_on() -> None:
    folder = Path(__file__).resolve().parents[1] / "pipelines"
    checked = 0
    for path in sorted(folder.glob("*.toml")):
        spec = load_pipeline(path)
        for node in spec.nodes:
            if node.kind != "residual":
                continue
            for consumer, _ in spec.consumers(node.name):
                if consumer.kind not in ("model", "snn"):
                    continue
                info = read_checkpoint_info(resolve_checkpoint(consumer.params.checkpoint))
                assert fitted_residuals(node.params) == info.input_spec.residual_frames("rgb"), (
                    f"{path.name}: residual node {node.name!r} does not fit {consumer.name!r}"
                )
                checked += 1
    assert checked >= 5, "demo, video, webcam and both split-hosts each feed a model residuals"


def test_shipped_pipelines_split_a_model_only_where_its_fusion_allows() -> None:
    """An `snn` or `fusion` node cannot run a checkpoint whose fusion feeds its SNN (in line)."""
    from respike.models.checkpoint import load_checkpoint

    folder = Path(__file__).resolve().parents[1] / "pipelines"
    for path in sorted(folder.glob("*.toml")):
        for node in load_pipeline(path).nodes:
            if node.kind in ("snn", "fusion"):
                model = load_checkpoint(resolve_checkpoint(node.params.checkpoint)).model
                assert not model.inline, f"{path.name}: {node.name} cannot run an in-line model"


def test_residual_settings_beside_a_checkpoint_must_agree_with_it() -> None:
    from respike.nodes.residual import ResidualNode

    agreeing = ResidualNode.Params(checkpoint="actions", stride=4, width=64, height=48)
    assert fitted_residuals(agreeing).key_residual == "previous", "the rest from the checkpoint"
    with pytest.raises(ValueError, match=r"stride=8 \(it has 4\).*checkpoint 'actions'"):
        fitted_residuals(ResidualNode.Params(checkpoint="actions", stride=8))
    alone = fitted_residuals(ResidualNode.Params(stride=2))
    assert (alone.stride, alone.size, alone.color, alone.key_residual) == (2, None, "grey", "zero")
