"""Shared fixtures (recordings, seeded generators, processes, paced sources) and the test tiers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from respike.nodes.testing import MockIO

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESPIKE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Model nodes in tests (and the pipelines they start) stay eager instead of building compiled
# steps in the background; tests/test_models_compiled.py turns it back on where it is tested.
os.environ.setdefault("RESPIKE_COMPILED_STEP", "off")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the fast tier first and the ``slow`` tier after it, in one ``python -m pytest``.

    Quick feedback comes before the minutes of pipelines and training; the sort is stable, so
    each tier keeps the collection order and a module's tests stay together within a tier.
    ``-m "not slow"`` runs the fast tier alone.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings (../shared/data); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set RESPIKE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a test module (the machine is shared; results stay repeatable)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so numeric tests are repeatable."""
    return np.random.default_rng(20261127)


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short private folder for ipc sockets (unix socket paths must stay under ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``respike ARGS...`` processes that are always killed at the end of the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "respike.nodes.cli", *args]
        process = subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.PIPE, start_new_session=True
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
        if process.stdout is not None:
            process.stdout.close()


def _node_pids(pipeline_name: str, node: str) -> list[int]:
    """PIDs of the processes running ``node`` of a launched pipeline (found by command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        in_pipeline = any(f"respike-{pipeline_name}-".encode() in a for a in argv)
        if in_pipeline and b"--name" in argv and argv[argv.index(b"--name") + 1] == node.encode():
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def node_pids() -> Callable[[str, str], list[int]]:
    """Find node processes of a pipeline started by ``respike run`` (to kill them in tests)."""
    return _node_pids


def _run_paced(io: MockIO, max_calls: int = 1_000_000) -> None:
    """Call a source's ``produce`` as the runtime does, sleeping the delay it asks for each time."""
    for _ in range(max_calls):
        delay = io.node.produce()
        if delay is None:
            return
        time.sleep(delay)


@pytest.fixture
def run_paced() -> Callable[..., None]:
    """Run a ``MockIO`` source at its own pace (``MockIO.run_source`` never sleeps).

    The sleeps are the node's own schedule, the thing under test, not a guess at how long
    something takes: assert on the times the node stamped on its messages, never on the clock.
    """
    return _run_paced


TINY_CLASSES = ("clap", "wave", "drum")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny untrained hybrid checkpoints for node tests: residual and event input, and
    ``inline``, residual input with in-line fusion that changes what the SNN sees."""
    import torch

    from respike.models import FusionConfig, get_model
    from respike.models.checkpoint import save_checkpoint
    from respike.models.hybrid import InputSpec

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    specs = {
        "residual": InputSpec(
            snn_size=(32, 32),
            snn_input="residual",
            snn_channels=1,
            keyframe_size=(32, 32),
            keyframe_interval=2,
        ),
        "events": InputSpec(
            snn_size=(32, 32), keyframe_size=(32, 32), keyframe_interval=2, time_bin_us=10_000
        ),
    }
    paths = {}
    for kind, spec in specs.items():
        paths[kind] = folder / f"{kind}.pt"
        save_checkpoint(
            paths[kind], get_model("respike_tiny", num_classes=3, input_spec=spec), TINY_CLASSES
        )
    fusion = FusionConfig(stages=(2, 3, 4), head_dim=8, placement="inline")
    inline = get_model("respike_tiny", num_classes=3, input_spec=specs["residual"], fusion=fusion)
    with torch.no_grad():
        for block in inline.fusion.values():  # a new block is the identity: make it fuse
            block.proj_out.weight.normal_(0.0, 0.5)
    paths["inline"] = folder / "inline.pt"
    save_checkpoint(paths["inline"], inline, TINY_CLASSES)
    return paths


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; the test skips without it, except in CI, which must install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; CI must install it (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return path
