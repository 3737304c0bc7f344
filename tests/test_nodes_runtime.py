"""The node runtime: nodes driven without sockets, errors counted not fatal, end propagation."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from respike.nodes.base import (
    Node,
    Pacer,
    ParamError,
    build_params,
    get_node_kind,
    node_kinds,
    param,
    register,
)
from respike.nodes.jsonl import JsonlSink
from respike.nodes.runtime import InputWire, NodeRunner, Wiring
from respike.nodes.testing import MockIO
from respike.nodes.testsource import CounterSource
from respike.stream.messages import Message, now_us
from respike.stream.sockets import Delivery, Publisher, Subscriber


@register("test-fragile")
class FragileNode(Node):
    """Raises on odd messages and forwards even ones (a node with a bug on some input)."""

    @dataclass(frozen=True)
    class Params:
        factor: int = param(2, "multiplier")

    inputs = ("in",)
    outputs = ("out",)

    def on_message(self, port: str, message: Message) -> None:
        if message.meta["i"] % 2:
            raise ZeroDivisionError("odd input")
        self.publish("out", "frame", message.t, i=message.meta["i"] * self.params.factor)


def test_registry_lists_kinds_and_rejects_duplicates() -> None:
    kinds = node_kinds()
    assert {"counter", "jsonl"} <= set(kinds)
    with pytest.raises(ValueError, match="already registered"):
        register("counter")(FragileNode)
    with pytest.raises(KeyError, match=r"known kinds: .*counter.*jsonl"):
        get_node_kind("nope")


def test_params_are_checked_by_name_and_type() -> None:
    assert build_params(CounterSource, {"rate": "2.5", "count": 3}).rate == 2.5
    with pytest.raises(ParamError, match="unknown parameter"):
        build_params(CounterSource, {"speed": 1})
    with pytest.raises(ParamError, match="dtype 'O'"):
        build_params(CounterSource, {"dtype": "O"})


def test_pacer_keeps_a_fixed_schedule_and_reanchors_after_a_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("respike.nodes.base.time.monotonic", lambda: clock[0])
    pacer = Pacer(max_lag=1.0)
    clock[0] = 100.03  # the work of one step took 30 ms
    assert pacer.delay_until(0.1) == pytest.approx(0.07), (
        "the schedule counts from the start, not from now"
    )
    clock[0] = 100.5
    assert pacer.delay_until(0.2) == 0.0, "a late source runs at once"
    clock[0] = 105.0  # stalled for seconds: no burst to catch up
    assert pacer.delay_until(0.3) == 0.0
    assert pacer.delay_until(0.4) == pytest.approx(0.1), (
        "after a stall the schedule restarts from now"
    )


def test_counter_source_driven_without_sockets() -> None:
    io = MockIO(CounterSource, "c", CounterSource.Params(rate=0, count=5, shape="2x3", dtype="<f4"))
    io.run_source()
    assert [m.meta["i"] for _, m in io.outputs] == [0, 1, 2, 3, 4]
    port, last = io.outputs[-1]
    assert port == "ticks" and last.topic == "c/ticks"
    np.testing.assert_array_equal(last.arrays["data"], np.full((2, 3), 4, np.float32))


def test_jsonl_prints_one_json_object_per_message(capsys: pytest.CaptureFixture[str]) -> None:
    io = MockIO(JsonlSink, "j", JsonlSink.Params())
    io.send(
        "in",
        Message(
            "c/ticks", "frame", now_us(), {"data": np.zeros((2, 2), np.uint8)}, {"i": 7}, seq=3
        ),
    )
    record = json.loads(capsys.readouterr().out)
    assert record["meta"] == {"i": 7} and record["seq"] == 3
    assert record["arrays"] == {"data": {"dtype": "uint8", "shape": [2, 2]}}


def test_publishing_on_an_undeclared_port_is_an_error() -> None:
    io = MockIO(CounterSource, "c", CounterSource.Params())
    with pytest.raises(ValueError, match="has no output 'frames'"):
        io.node.publish("frames", "frame", 0)


def test_errors_in_a_node_are_counted_and_end_finishes_it(ipc_dir: Path) -> None:
    feed, out = f"ipc://{ipc_dir}/feed.sock", f"ipc://{ipc_dir}/out.sock"
    publisher = Publisher(feed, source="src", delivery=Delivery.LOSSLESS)
    wiring = Wiring(
        output=out,
        inputs={"in": InputWire(feed, "src/x", Delivery.LOSSLESS)},
        lossless_outputs=True,
        expect_subscribers={"out": 1},
    )
    runner = NodeRunner(FragileNode, "frag", FragileNode.Params(factor=3), wiring)
    results = Subscriber(out, "frag/out", delivery=Delivery.LOSSLESS)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        assert publisher.wait_for_subscribers("src/x", 1, timeout=10)
        for i in range(10):
            publisher.send(Message("src/x", "frame", now_us(), meta={"i": i}))
        publisher.send(Message("src/x", "end", now_us()))
        got: list[Message] = []
        while not (got and got[-1].end):
            batch = results.receive(timeout=10.0)
            assert batch, f"no output; got {got}"
            got += batch
        results.close()  # a lossless node waits for its consumers to leave after `end`
        thread.join(timeout=10)
        assert not thread.is_alive(), "the node must finish after `end` on every input"
        assert [m.meta["i"] for m in got[:-1]] == [0, 6, 12, 18, 24]
        assert runner.errors == {"ZeroDivisionError": 5}, (
            "each failing message is counted, none is fatal"
        )
    finally:
        runner.request_stop()
        thread.join(timeout=10)
        publisher.close()
        results.close()


STOPPED_IN_A_CALLBACK = """
import ctypes, os, signal, sys, time
from dataclasses import dataclass
from respike.nodes.base import Node
from respike.nodes.runtime import NodeRunner, Wiring

class Compiling(Node):
    '''Its start goes through a C callback, as numba's cache notification does.'''

    @dataclass(frozen=True)
    class Params:
        pass

    outputs = ("out",)

    def start(self) -> None:
        def callback() -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the launcher stops the pipeline now
            time.sleep(0.05)
        ctypes.CFUNCTYPE(None)(callback)()
        print("start went on", flush=True)

    def produce(self) -> float | None:
        print("produced", flush=True)
        return None

sys.exit(NodeRunner(Compiling, "compiling", Compiling.Params(), Wiring()).run())
"""


def test_a_stop_during_start_inside_a_c_callback_prints_no_traceback() -> None:
    """The stop cannot leave a C callback; it must neither print a traceback there nor be
    lost: the node stops once its start returns, without producing."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", STOPPED_IN_A_CALLBACK], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "start went on\n", "stopped before the first output"
    assert done.returncode == 0


_FAULTS_PER_MESSAGE = """
import resource, sys
import numpy as np
from respike.nodes.runtime import keep_freed_buffers
if sys.argv[1] == "kept":
    assert keep_freed_buffers()
def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def message() -> None:  # three 4 MiB buffers made afresh (a packet, a state, a copy), then freed
    [np.ones(4 << 20, dtype=np.uint8) for _ in range(3)]
message(); message()  # the first ones map their pages in either way
before = faults()
for _ in range(20):
    message()
print((faults() - before) / 20)
"""


@pytest.mark.parametrize("heap", ["kept", "default"])
def test_a_node_process_reuses_freed_buffers_without_page_faults(heap: str) -> None:
    """With the runtime's heap setting, buffers allocated afresh per message reuse mapped
    pages; glibc's default gives freed megabytes back and faults them in again, a fault per
    4 KiB page (the contrast shows the test measures what it claims)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_MESSAGE, heap],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    faults = float(out.stdout)
    if heap == "kept":
        assert faults < 30
    else:
        assert faults > 500  # about one buffer's pages a message
