"""Pipeline files: parse a TOML pipeline, check it whole, and assign each node its endpoint.

    [pipeline]
    name = "example"

    [nodes.cam]
    kind = "counter"
    params = { rate = 30, shape = "480x640x3" }

    [nodes.print]
    kind = "jsonl"
    inputs = { in = "cam/ticks" }          # or { in = { from = "cam/ticks", delivery = "lossless", queue = 1 } }
    host = "10.0.0.7"                      # optional: run on another machine (tcp + CURVE)

Every mistake (unknown kind, unknown or ill-typed parameter, unknown input, a cycle) is
reported with the file, the node and what was expected, before any process starts. This lives
in ``nodes`` rather than ``stream`` because checking kinds and parameters needs the registry.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from respike.nodes.base import Node, ParamError, build_params, get_node_kind
from respike.nodes.runtime import STATS_PORT
from respike.stream.sockets import Delivery

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
DEFAULT_BASE_PORT = 5550


class PipelineError(ValueError):
    """A pipeline file that cannot run; the message names the file and the node."""


@dataclass(frozen=True)
class WiredInput:
    """One wired input port: ``source/topic`` with its delivery policy."""

    port: str
    source: str
    topic: str
    delivery: Delivery
    queue: int

    @property
    def full_topic(self) -> str:
        return f"{self.source}/{self.topic}"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a pipeline, checked: its class, typed params, inputs and host."""

    name: str
    kind: str
    node_cls: type[Node]
    params: Any
    raw_params: dict[str, Any]
    inputs: tuple[WiredInput, ...]
    host: str | None
    port: int


@dataclass(frozen=True)
class PipelineSpec:
    """A checked pipeline: nodes in dependency order (sources first)."""

    name: str
    path: Path
    nodes: tuple[NodeSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_host(self) -> bool:
        """Whether any node names a host: then every endpoint is tcp (CURVE off loopback)."""
        return any(node.host is not None for node in self.nodes)

    def node(self, name: str) -> NodeSpec:
        return next(node for node in self.nodes if node.name == name)

    def consumers(self, name: str) -> list[tuple[NodeSpec, WiredInput]]:
        """Inputs elsewhere in the pipeline fed by node ``name``."""
        return [(n, i) for n in self.nodes for i in n.inputs if i.source == name]

    def downstream(self, name: str) -> list[str]:
        """Names of the nodes that node ``name`` feeds, directly or through others, in
        pipeline order (stats inputs count: a viewer of a node's stats is downstream of it)."""
        reached = {name}
        for node in self.nodes:  # dependency order: a node's sources come before it
            if any(wire.source in reached for wire in node.inputs):
                reached.add(node.name)
        return [node.name for node in self.nodes if node.name in reached and node.name != name]


def load_pipeline(
    path: Path | str, overrides: dict[str, dict[str, Any]] | None = None
) -> PipelineSpec:
    """Read and check a pipeline file; ``overrides`` replace parameters per node name."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such pipeline file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: not valid TOML: {exc}") from None
    return parse_pipeline(document, path, overrides or {})


def parse_pipeline(
    document: dict[str, Any], path: Path, overrides: dict[str, dict[str, Any]]
) -> PipelineSpec:
    """Check a parsed pipeline document; see :func:`load_pipeline`."""
    where = str(path)
    unknown = set(document) - {"pipeline", "nodes"}
    if unknown:
        raise PipelineError(
            f"{where}: unknown top-level table(s) {sorted(unknown)}; expected [pipeline] and [nodes.NAME]"
        )
    header = document.get("pipeline", {})
    nodes_doc = document.get("nodes")
    if not isinstance(nodes_doc, dict) or not nodes_doc:
        raise PipelineError(f"{where}: no [nodes.NAME] tables; a pipeline needs at least one node")
    for name in overrides:
        if name not in nodes_doc:
            raise PipelineError(
                f"{where}: override for unknown node {name!r}; nodes: {sorted(nodes_doc)}"
            )
    base_port = header.get("base_port", DEFAULT_BASE_PORT)
    specs = {}
    for index, (name, table) in enumerate(nodes_doc.items()):
        specs[name] = _parse_node(where, name, table, overrides.get(name, {}), base_port + index)
    for spec in specs.values():
        _check_inputs(where, spec, specs)
    order = _topological_order(where, specs)
    extra = {k: v for k, v in header.items() if k not in ("name", "base_port")}
    return PipelineSpec(header.get("name", path.stem), path, tuple(specs[n] for n in order), extra)


def _parse_node(where: str, name: str, table: Any, override: dict[str, Any], port: int) -> NodeSpec:
    at = f"{where}: node {name!r}"
    if not NAME_RE.match(name):
        raise PipelineError(f"{at}: names may hold letters, digits, '_' and '-' only")
    if not isinstance(table, dict):
        raise PipelineError(f"{at}: expected a table [nodes.{name}]")
    unknown = set(table) - {"kind", "params", "inputs", "host", "delivery", "queue"}
    if unknown:
        raise PipelineError(
            f"{at}: unknown key(s) {sorted(unknown)}; expected kind, params, inputs, host, delivery, queue"
        )
    if "kind" not in table:
        raise PipelineError(f"{at}: missing `kind`")
    try:
        node_cls = get_node_kind(table["kind"])
    except KeyError as exc:
        raise PipelineError(f"{at}: {exc.args[0]}") from None
    raw_params = {**table.get("params", {}), **override}
    try:
        params = build_params(node_cls, raw_params)
    except ParamError as exc:
        raise PipelineError(f"{at} ({node_cls.kind}): {exc}") from None
    default_delivery = _delivery(at, table.get("delivery", "live"))
    default_queue = table.get("queue", 1)
    inputs = []
    for input_port, value in table.get("inputs", {}).items():
        if input_port not in node_cls.inputs and not node_cls.any_inputs:
            raise PipelineError(
                f"{at}: {node_cls.kind} has no input {input_port!r}; inputs: {list(node_cls.inputs)}"
            )
        inputs.append(_parse_input(at, input_port, value, default_delivery, default_queue))
    wired = {i.port for i in inputs}
    missing = [p for p in node_cls.inputs if p not in wired and p not in node_cls.optional_inputs]
    if missing and not node_cls.is_source():
        raise PipelineError(
            f'{at}: input(s) {missing} of {node_cls.kind} are not wired (inputs = {{ {missing[0]} = "node/topic" }})'
        )
    host = table.get("host")
    if host is not None and not isinstance(host, str):
        raise PipelineError(f"{at}: host must be a string")
    return NodeSpec(name, table["kind"], node_cls, params, raw_params, tuple(inputs), host, port)


def _parse_input(at: str, port: str, value: Any, delivery: Delivery, queue: int) -> WiredInput:
    if isinstance(value, dict):
        unknown = set(value) - {"from", "delivery", "queue"}
        if unknown or "from" not in value:
            raise PipelineError(
                f'{at}: input {port!r} must be "node/topic" or {{ from = "node/topic", delivery = ..., queue = ... }}'
            )
        delivery = _delivery(at, value.get("delivery", delivery))
        queue = value.get("queue", queue)
        value = value["from"]
    if not isinstance(value, str) or value.count("/") != 1:
        raise PipelineError(f'{at}: input {port!r} is {value!r}; expected "node/topic"')
    if not isinstance(queue, int) or queue < 1:
        raise PipelineError(f"{at}: input {port!r} queue is {queue!r}; expected an integer ≥ 1")
    source, topic = value.split("/")
    return WiredInput(port, source, topic, delivery, queue)


def _delivery(at: str, value: Any) -> Delivery:
    try:
        return Delivery(value)
    except ValueError:
        raise PipelineError(f"{at}: delivery {value!r}; expected 'live' or 'lossless'") from None


def _check_inputs(where: str, spec: NodeSpec, specs: dict[str, NodeSpec]) -> None:
    for wire in spec.inputs:
        at = f"{where}: node {spec.name!r} input {wire.port!r}"
        if wire.source not in specs:
            raise PipelineError(f"{at}: no node named {wire.source!r}; nodes: {sorted(specs)}")
        outputs = (*specs[wire.source].node_cls.outputs, STATS_PORT)
        if wire.topic not in outputs:
            raise PipelineError(
                f"{at}: {wire.source!r} ({specs[wire.source].kind}) has no output {wire.topic!r}; outputs: {list(outputs)}"
            )


def _topological_order(where: str, specs: dict[str, NodeSpec]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise PipelineError(f"{where}: node {name!r} is in a cycle: {cycle}")
        state[name] = "visiting"
        for wire in specs[name].inputs:
            visit(wire.source, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in specs:
        visit(name, [])
    return order
