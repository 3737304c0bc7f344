"""respike node kinds inside dora-rs dataflows, and respike pipelines as dora dataflows.

`dora-rs <https://dora-rs.ai>`_ runs nodes as processes that exchange Apache Arrow arrays with
metadata, through shared memory on one host. ``respike dora-node KIND [--PARAM VALUE ...]``
runs one respike node kind as such a node: its respike inputs and outputs are dora inputs and
outputs of the same names, and :func:`to_arrow` / :func:`from_arrow` map messages both ways:

- one array: the array flattened, as Arrow's own type (an events packet: a struct array of
  ``t, x, y, p``); several arrays: their bytes one after the other in a ``uint8`` array, the
  layout in ``metadata["respike_buffers"]`` (``[name, dtype, shape]`` each, as on the wire);
- metadata: ``respike_kind``, ``t`` (capture time, µs), ``pt`` (sent, µs), ``respike_seq``
  (dora reserves ``seq``), ``respike_array``, ``dtype``,
  ``shape`` (JSON), ``respike_meta`` (the message's meta as JSON), and each scalar meta value
  under its own key (a prediction's ``label``), so dora nodes written by others can read
  them without respike;
- frames also carry dora's image convention (``encoding`` ``rgb8``, ``width``, ``height``),
  and input from others' nodes in that convention (``rgb8``, ``bgr8``, ``mono8``: a camera
  node) becomes respike frames.

Input that cannot be mapped (another Arrow type, a missing field, a wrong size) is counted
and logged once per cause with the node's name; the node keeps running. A respike source is
paced by its own ``produce`` and ends the dataflow's stream when it is done, as dora expects.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from respike.events.images import FRAME_ENCODINGS, rgb_frame
from respike.events.types import EVENT_DTYPE
from respike.nodes.base import Node
from respike.nodes.pipeline import PipelineSpec
from respike.stream import kinds
from respike.stream.messages import (
    DTYPES,
    KINDS,
    MAX_NDIM,
    Message,
    MessageError,
    dtype_name,
    now_us,
)

log = logging.getLogger(__name__)

DORA_RESERVED = frozenset(
    {"flush", "request_id", "goal_id", "goal_status", "seq", "fin", "session_id", "segment_id"}
    | {"timestamp"}
)
"""Metadata keys dora gives a meaning (``flush`` empties a queue): never copied from meta."""


def to_arrow(message: Message, seq: int = 0) -> tuple[Any, dict[str, Any]]:
    """A message as dora sends it (the ``seq``-th on its output, now): an Arrow array and its
    metadata (see the module doc)."""
    import pyarrow as pa

    metadata: dict[str, Any] = {
        key: value
        for key, value in message.meta.items()
        if isinstance(value, str | int | float | bool) and key not in DORA_RESERVED
    }
    metadata |= {
        "respike_kind": message.kind,
        "t": int(message.t),
        "pt": now_us(),
        "respike_seq": seq,
        "respike_meta": json.dumps(message.meta, separators=(",", ":")),
    }
    arrays = list(message.arrays.items())
    if len(arrays) == 1:
        name, array = arrays[0]
        metadata |= {
            "respike_array": name,
            "dtype": dtype_name(array.dtype),
            "shape": json.dumps(list(array.shape)),
        }
        if message.kind == kinds.Frame.KIND and array.ndim == 3:
            metadata |= {"encoding": "rgb8", "width": array.shape[1], "height": array.shape[0]}
        if array.dtype == EVENT_DTYPE:
            columns = [pa.array(np.ascontiguousarray(array[f])) for f in ("t", "x", "y", "p")]
            return pa.StructArray.from_arrays(columns, names=["t", "x", "y", "p"]), metadata
        return pa.array(np.ascontiguousarray(array).reshape(-1)), metadata
    layout = [[name, dtype_name(a.dtype), list(a.shape)] for name, a in arrays]
    metadata["respike_buffers"] = json.dumps(layout)
    raw = b"".join(np.ascontiguousarray(a).tobytes() for _, a in arrays)
    return pa.array(np.frombuffer(raw, dtype=np.uint8)), metadata


def from_arrow(topic: str, value: Any, metadata: Mapping[str, Any]) -> Message:
    """The message a dora input carries: one a respike node sent (``respike_kind``), or an
    image in dora's convention. Raises :class:`MessageError` naming what does not fit."""
    kind = metadata.get("respike_kind")
    t = _int(metadata, "t", now_us())
    if kind is None:
        return _foreign_image(topic, value, metadata, t)
    return replace(
        _respike_message(topic, kind, t, value, metadata),
        seq=_int(metadata, "respike_seq", 0),
        pt=_int(metadata, "pt", 0),
    )


def _int(metadata: Mapping[str, Any], key: str, default: int) -> int:
    value = metadata.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _respike_message(
    topic: str, kind: Any, t: int, value: Any, metadata: Mapping[str, Any]
) -> Message:
    """A message a respike node sent through dora."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise MessageError("bad-kind", f"respike_kind {kind!r} is not a message kind")
    meta = _json(metadata, "respike_meta", {})
    if not isinstance(meta, dict):
        raise MessageError("bad-meta", "respike_meta is not a JSON object")
    if "respike_buffers" in metadata:
        layout = _json(metadata, "respike_buffers", [])
        raw = _numpy(value, np.dtype(np.uint8)).tobytes()
        arrays, offset = {}, 0
        for name, dtype, shape in _checked_layout(layout):
            size = math.prod(shape) * dtype.itemsize
            if offset + size > len(raw):
                raise MessageError("byte-count", f"buffer {name!r} runs past the array's end")
            arrays[name] = np.frombuffer(raw, dtype, math.prod(shape), offset).reshape(shape)
            offset += size
        if offset != len(raw):
            raise MessageError("byte-count", f"{len(raw) - offset} bytes left after the buffers")
        return Message(topic, kind, t, arrays, meta)
    array_name = metadata.get("respike_array")
    if array_name is None:
        return Message(topic, kind, t, {}, meta)
    ((_, dtype, shape),) = _checked_layout(
        [[array_name, metadata.get("dtype"), _json(metadata, "shape")]]
    )
    array = _numpy(value, dtype)
    if array.size != math.prod(shape):
        raise MessageError(
            "byte-count",
            f"{array.size} values for {array_name!r}; shape {shape} needs {math.prod(shape)}",
        )
    return Message(topic, kind, t, {str(array_name): array.reshape(shape)}, meta)


def _foreign_image(topic: str, value: Any, metadata: Mapping[str, Any], t: int) -> Message:
    """A frame from an image in dora's convention (another project's camera node)."""
    encoding = metadata.get("encoding")
    if encoding not in FRAME_ENCODINGS:
        raise MessageError(
            "unknown-input",
            f"metadata has no respike_kind and encoding {encoding!r} is none of "
            f"{', '.join(FRAME_ENCODINGS)}",
        )
    width, height = metadata.get("width"), metadata.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise MessageError("bad-meta", f"an {encoding} image needs width and height > 0")
    pixels = _numpy(value, np.dtype(np.uint8))
    try:
        frame = rgb_frame(pixels, width, height, encoding)
    except ValueError as error:
        raise MessageError("byte-count", str(error)) from None
    return Message(topic, kinds.Frame.KIND, t, {"frame": frame}, {"source": topic})


def _numpy(value: Any, dtype: np.dtype) -> np.ndarray:
    """The values of an Arrow array as numpy ``dtype`` (a struct array as an events packet)."""
    import pyarrow as pa

    if not isinstance(value, pa.Array):
        raise MessageError("bad-type", f"input is {type(value).__name__}; expected an Arrow array")
    if dtype == EVENT_DTYPE:
        if not pa.types.is_struct(value.type) or {f.name for f in value.type} != {
            "t",
            "x",
            "y",
            "p",
        }:
            raise MessageError("bad-type", f"events are {value.type}; expected struct<t, x, y, p>")
        events = np.zeros(len(value), dtype=EVENT_DTYPE)
        for field in ("t", "x", "y", "p"):
            events[field] = value.field(field).to_numpy(zero_copy_only=False)
        return events
    if value.null_count or not (
        pa.types.is_integer(value.type)
        or pa.types.is_floating(value.type)
        or pa.types.is_boolean(value.type)
    ):
        raise MessageError("bad-type", f"input is {value.type}; expected numbers without nulls")
    array = value.to_numpy(zero_copy_only=False)
    if array.dtype != dtype:
        raise MessageError("bad-dtype", f"input is {array.dtype}; expected {dtype}")
    return array


def _json(metadata: Mapping[str, Any], key: str, default: Any = None) -> Any:
    text = metadata.get(key)
    if text is None:
        if default is None:
            raise MessageError("bad-meta", f"metadata lacks {key!r}")
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise MessageError("bad-meta", f"metadata {key!r} is not JSON: {text!r}") from None


def _checked_layout(layout: Any) -> list[tuple[str, np.dtype, list[int]]]:
    """``[name, dtype, shape]`` entries, checked as the wire's buffer descriptors are."""
    if not isinstance(layout, list):
        raise MessageError("bad-buffer", f"buffer layout {layout!r}; expected a list")
    checked = []
    for entry in layout:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise MessageError("bad-buffer", f"buffer {entry!r}; expected [name, dtype, shape]")
        name, wire, shape = entry
        dtype = DTYPES.get(wire) if isinstance(wire, str) else None
        if not isinstance(name, str) or dtype is None:
            raise MessageError("bad-dtype", f"buffer {name!r} has dtype {wire!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= MAX_NDIM
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise MessageError("bad-shape", f"buffer {name!r} has shape {shape!r}")
        checked.append((name, dtype, shape))
    return checked


class DoraOutput:
    """Where a respike node's messages go inside dora: its outputs, as Arrow arrays."""

    def __init__(self) -> None:
        self.node: Any = None
        """The dora node, once joined."""
        self.sent: Counter[str] = Counter()

    def publish(self, port: str, message: Message) -> None:
        if message.end:
            return  # dora closes a node's outputs when it exits
        value, metadata = to_arrow(message, self.sent[port])
        self.node.send_output(port, value, metadata)
        self.sent[port] += 1

    def publish_frames(self, port: str, frames: list[Any]) -> None:
        from respike.stream.messages import decode

        self.publish(port, decode(frames))


def run_dora_node(node_cls: type[Node[Any]], name: str, params: Any) -> int:
    """Run one respike node as a dora node until its inputs close, it is stopped, or (a
    source) it is done. Returns the exit status."""
    import pyarrow  # noqa: F401  (loaded before joining, not on the first message)
    from dora import Node as DoraNode

    output = DoraOutput()
    node = node_cls(name, params, output)
    node.start()  # before joining: dora starts the dataflow once every node has joined
    dora = output.node = DoraNode()
    consumer = _Consumer(node, name)
    try:
        if node.is_source():
            _run_source(dora, node)
        else:
            consumer.run(dora)
    finally:
        node.finish()
        summary = {
            "sent": dict(output.sent),
            "invalid": dict(consumer.invalid),
            "errors": dict(consumer.errors),
            **node.stats(),
        }
        log.info("%s: ended %s", name, json.dumps(summary))
    return 0


def _waiting(dora: Any) -> list[Any]:
    """The events already waiting, without blocking (none once dora closed the stream)."""
    try:
        return list(dora.drain() or ())
    except RuntimeError:  # "Could not drain events. Channel is closed": the stream ended
        return []


SOURCE_LINGER_S = 0.5
"""How long a finished source stays before it exits: dora 1.1 can drop outputs still in flight
when their sender exits (seen here with a node that exits right after sending)."""
SOURCE_GRACE_S = 0.5
"""How long a source waits after the dataflow started before its first output: dora 1.1 can
lose the first outputs while its receivers finish connecting (seen in 2-4 % of runs here)."""


def _run_source(dora: Any, node: Node[Any]) -> None:
    """Call ``produce`` on its schedule; between calls, look for dora's STOP (Ctrl-C)."""
    time.sleep(SOURCE_GRACE_S)
    while True:
        delay = node.produce()
        if delay is None:
            time.sleep(SOURCE_LINGER_S)
            return
        if delay > 0:
            time.sleep(delay)
        if any(event["type"] == "STOP" for event in _waiting(dora)):
            return


class _Consumer:
    """Hands dora's input events to a respike node as the respike runtime does: every event
    already waiting through ``on_message``, then one ``flush`` (a node that fell behind runs
    the waiting work in one batch); bad input and node errors counted, logged once per cause."""

    def __init__(self, node: Node[Any], name: str) -> None:
        self.node, self.name = node, name
        self.invalid: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def run(self, dora: Any) -> None:
        """Until dora ends the event stream. ``STOP`` and ``INPUT_CLOSED`` can overtake
        inputs still queued, so they do not end the loop: the stream's end does."""
        for event in dora:
            for waiting in (event, *_waiting(dora)):
                self._handle(waiting)
            self._call("flush", self.node.flush)

    def _handle(self, event: Mapping[str, Any]) -> None:
        if event["type"] != "INPUT":
            return
        port = event["id"]
        try:
            message = from_arrow(f"dora/{port}", event["value"], event["metadata"] or {})
        except MessageError as exc:
            if not self.invalid[exc.cause]:
                log.warning(
                    "%s: invalid input on %s (further ones are counted): %s", self.name, port, exc
                )
            self.invalid[exc.cause] += 1
            return
        self._call(port, lambda: self.node.on_message(port, message))

    def _call(self, where: str, call: Any) -> None:
        try:
            call()
        except Exception as exc:
            cause = type(exc).__name__
            if not self.errors[cause]:
                log.exception("%s: error on %s (further ones are counted)", self.name, where)
            self.errors[cause] += 1


def export_dataflow(pipeline: PipelineSpec, command: Sequence[str] = ("respike",)) -> str:
    """The dora ``dataflow.yml`` of a respike pipeline: each node a ``respike dora-node``
    with its parameters, its inputs from the same outputs (queues deep enough that lossless
    inputs lose nothing). Inputs of respike's ``stats`` topics are left out: inside dora,
    dora reports on its nodes."""
    lines = [
        f"# dora-rs dataflow of the respike pipeline {pipeline.name!r}",
        "# (respike export-dataflow; run with `dora run dataflow.yml`)",
        "nodes:",
    ]
    for spec in pipeline.nodes:
        args = ["dora-node", spec.kind, "--name", spec.name]
        if spec.raw_params:
            args += ["--params", json.dumps(spec.raw_params, separators=(",", ":"))]
        if spec.host:
            lines.append(
                f"  # respike placed {spec.name} on {spec.host}: place it with dora's deploy"
            )
        lines += [
            f"  - id: {spec.name}",
            f"    path: {command[0]}",
            f"    args: {json.dumps(shlex.join([*command[1:], *args]))}",
        ]
        inputs = [wired for wired in spec.inputs if wired.topic != "stats"]
        if inputs:
            lines.append("    inputs:")
            for wired in inputs:
                queue = 1000 if wired.delivery == "lossless" else max(1, wired.queue)
                lines += [
                    f"      {wired.port}:",
                    f"        source: {wired.full_topic}",
                    f"        queue_size: {queue}",
                ]
        if spec.node_cls.outputs:
            lines.append(f"    outputs: [{', '.join(spec.node_cls.outputs)}]")
    return "\n".join(lines) + "\n"


__all__ = ["DoraOutput", "export_dataflow", "from_arrow", "run_dora_node", "to_arrow"]
