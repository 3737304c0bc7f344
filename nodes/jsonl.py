"""`jsonl`: prints every message it receives as one JSON line on stdout, the simplest glue."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from respike.nodes.base import Node, param, register
from respike.stream.messages import Message, now_us


def message_record(message: Message) -> dict[str, Any]:
    """A JSON-ready summary of ``message``: header fields, metadata and array shapes."""
    return {
        "topic": message.topic,
        "kind": message.kind,
        "seq": message.seq,
        "t": message.t,
        "latency_ms": round((now_us() - message.t) / 1000, 3),
        "meta": dict(message.meta),
        "arrays": {
            name: {"dtype": str(array.dtype), "shape": list(array.shape)}
            for name, array in message.arrays.items()
        },
    }


@register("jsonl")
class JsonlSink(Node):
    """Writes one JSON object per received message to stdout (flushed per line)."""

    @dataclass(frozen=True)
    class Params:
        arrays: bool = param(True, "include array dtype and shape summaries")

    inputs = ("in",)

    def on_message(self, port: str, message: Message) -> None:
        record = message_record(message)
        if not self.params.arrays:
            del record["arrays"]
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
