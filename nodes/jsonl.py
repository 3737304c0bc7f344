"""`jsonl`: prints every message it receives as one JSON line on stdout, the simplest glue."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from respike.nodes.base import Node, StopPipeline, param, register
from respike.stream import kinds
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


def prediction_line(message: Message) -> str:
    """One human-readable line for a prediction: time, label, top scores, truth, latency, energy."""
    prediction = kinds.Prediction.read(message)
    clock = time.strftime("%H:%M:%S", time.localtime(message.t / 1e6))
    scores = " ".join(f"{name} {score:.2f}" for name, score in prediction.topk)
    truth = f"  truth: {prediction.truth}" if prediction.truth else ""
    latency = prediction.latency_ms.get("e2e")
    timing = f"  {latency:.1f} ms" if latency is not None else ""
    energy = f"  {prediction.energy_uj:.0f} µJ" if prediction.energy_uj is not None else ""
    return f"{clock}  {prediction.label or '?':<28} [{scores}]{truth}{timing}{energy}"


@register("jsonl")
class JsonlSink(Node):
    """Writes one JSON object per received message to stdout (flushed per line).

    ``format = "text"`` prints predictions as one readable line each instead. When the reader of
    stdout goes away (``respike demo --json | head -2``) the pipeline stops, quietly.
    """

    @dataclass(frozen=True)
    class Params:
        arrays: bool = param(True, "include array dtype and shape summaries")
        format: str = param(
            "json", "json (one object per message) or text (readable prediction lines)"
        )

        def __post_init__(self) -> None:
            if self.format not in ("json", "text"):
                raise ValueError(f"format is {self.format!r}; expected 'json' or 'text'")

    inputs = ("in",)

    def on_message(self, port: str, message: Message) -> None:
        if self.params.format == "text" and message.kind == "prediction":
            line = prediction_line(message)
        else:
            record = message_record(message)
            if not self.params.arrays:
                del record["arrays"]
            line = json.dumps(record, default=str)
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Python would fail again flushing stdout at exit: point it at nothing instead.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise StopPipeline("the reader of stdout has gone") from None
