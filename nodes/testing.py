"""A test double for node authors: run a node kind in the test's own thread, no sockets.

:class:`MockIO` builds the node, starts it, hands it messages as the runtime would (each
followed by :meth:`~respike.nodes.base.Node.flush`), drives a source's ``produce`` without
sleeping, and keeps what the node publishes. ``end()`` is the end of input, as ``end`` from
upstream is in a pipeline: the node finishes and everything it published is returned::

    from respike.nodes.testing import MockIO, message
    from respike.stream import kinds

    def test_alarm_fires_on_a_fall() -> None:
        io = MockIO(Alarm, params=Alarm.Params(label="fall"))
        io.send("predictions", message(kinds.Prediction(label="fall"), t=1_000))
        assert [m.meta["label"] for _, m in io.end()] == ["fall"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from respike.nodes.base import Node
from respike.stream import kinds
from respike.stream.messages import Message, decode


def message(
    kind: kinds.Meta,
    t: int = 0,
    arrays: Mapping[str, np.ndarray] | None = None,
    topic: str = "test/out",
) -> Message:
    """A message of a typed meta (``kinds.Prediction(label="wave")``) at capture time ``t`` µs,
    as a node upstream would publish it on ``topic``."""
    return Message(topic, kind.KIND, t, dict(arrays or {}), kind.to_meta())


@dataclass
class MockIO:
    """Drive one node of ``node_cls`` without sockets: feed messages, collect its outputs.

    ``params`` defaults to the kind's defaults; ``name`` (default: the kind) makes the topics
    ``NAME/PORT``. The node is started on construction, as the runtime starts it before the
    first message.
    """

    node_cls: type[Node[Any]]
    name: str = ""
    params: Any = None
    outputs: list[tuple[str, Message]] = field(default_factory=list)
    """``(port, message)`` for everything published so far, in order."""

    def __post_init__(self) -> None:
        self.name = self.name or self.node_cls.kind or self.node_cls.__name__.lower()
        if self.params is None:
            self.params = self.node_cls.Params()
        self.node = self.node_cls(self.name, self.params, self)
        self.node.start()

    def publish(self, port: str, message: Message) -> None:
        self.outputs.append((port, message))

    def publish_frames(self, port: str, frames: list[Any]) -> None:
        self.outputs.append((port, decode(frames)))

    def send(self, port: str, message: Message) -> None:
        """Hand ``message`` to the node's input ``port``, then let it flush deferred work."""
        if port not in self.node_cls.inputs and not self.node_cls.any_inputs:
            raise ValueError(f"{self.node_cls.kind} has no input {port!r}")
        self.node.on_message(port, message)
        self.node.flush()

    def run_source(self, max_calls: int = 1_000_000) -> None:
        """Call ``produce`` (without sleeping) until the source is done or ``max_calls``."""
        for _ in range(max_calls):
            if self.node.produce() is None:
                return

    def published(self, port: str) -> list[Message]:
        """The messages published on output ``port`` so far."""
        return [m for p, m in self.outputs if p == port]

    def end(self) -> list[tuple[str, Message]]:
        """End of input: the node finishes (flushes, closes); returns everything it published."""
        self.node.finish()
        return self.outputs


__all__ = ["MockIO", "message"]
