"""`counter`: a test source that publishes numbered messages with synthetic arrays at a set rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from respike.nodes.base import Node, Pacer, param, register
from respike.stream.messages import DTYPES, now_us


def parse_shape(text: str) -> tuple[int, ...]:
    """``"480x640x3"`` → ``(480, 640, 3)``; ``""`` → no array."""
    if not text:
        return ()
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r} is not like 480x640x3") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"shape {text!r} has a negative size")
    return shape


@register("counter")
class CounterSource(Node):
    """Publishes message i = 0, 1, 2, … on ``ticks`` with ``meta.i`` and an optional array.

    The array is filled with i (cheap to check on the far side) so tests and benchmarks can
    verify payloads end to end.
    """

    @dataclass(frozen=True)
    class Params:
        rate: float = param(10.0, "messages per second; 0 = as fast as possible")
        count: int = param(0, "messages to send before `end`; 0 = forever")
        shape: str = param("", "array shape like 480x640x3; empty = no array")
        dtype: str = param("|u1", "array dtype (wire name, e.g. |u1, <f4)")

        def __post_init__(self) -> None:
            if self.rate < 0 or self.count < 0:
                raise ValueError("rate and count must be ≥ 0")
            parse_shape(self.shape)
            if self.dtype not in DTYPES or self.dtype == "events":
                raise ValueError(
                    f"dtype {self.dtype!r} is not one of {[d for d in DTYPES if d != 'events']}"
                )

    outputs = ("ticks",)

    def start(self) -> None:
        self._i = 0
        self._shape = parse_shape(self.params.shape)

    def produce(self) -> float | None:
        if self.params.count and self._i >= self.params.count:
            return None
        if self._i == 0:
            self._pacer = Pacer()  # the schedule starts with the first message, after wiring
        arrays = {}
        if self._shape:
            arrays["data"] = np.full(self._shape, self._i % 256, dtype=DTYPES[self.params.dtype])
        self.publish("ticks", "frame", now_us(), arrays, i=self._i)
        self._i += 1
        return self._pacer.delay_until(self._i / self.params.rate) if self.params.rate else 0.0
