"""Compiled steps: built once in the background, loaded from the cache, the eager step's numbers."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from respike.models.checkpoint import load_checkpoint
from respike.models.compiled import (
    KEEP,
    MODE_ENV,
    BuildInProgress,
    CompiledStep,
    StepCompiler,
    artifact_path,
    build_lock,
    lock_owner,
    prune,
)
from respike.models.hybrid import HybridReSpike
from respike.nodes.model import ModelNode
from respike.nodes.testing import MockIO
from respike.stream.messages import Message

pytestmark = pytest.mark.slow  # one AOTInductor build: 20-60 s


def need_compiler() -> None:
    """AOTInductor compiles C++: skip without a compiler, except in CI, which has one."""
    if shutil.which("c++") or shutil.which("g++"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("no C++ compiler (c++ or g++) on PATH; CI machines have one")
    pytest.skip("no C++ compiler (c++ or g++) on PATH: compiled steps cannot be built")


def wait_for(compiler: StepCompiler, model: HybridReSpike, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while compiler._build is not None:
        assert time.monotonic() < deadline, "the background build did not finish"
        compiler.poll(model)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def built(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """The tiny residual checkpoint and a cache root holding its compiled step, built by the
    ``auto`` mode's background process."""
    need_compiler()
    root = tmp_path_factory.mktemp("cache")
    checkpoint = checkpoints["residual"]
    model = load_checkpoint(checkpoint).model.eval()
    with pytest.MonkeyPatch.context() as env:
        env.delenv(MODE_ENV, raising=False)
        compiler = StepCompiler("auto", checkpoint, cache=root / "compiled-steps")
        compiler.attach(model)
        assert compiler._build is not None, "nothing cached: auto starts a build"
        wait_for(compiler, model)
    assert isinstance(compiler.step, CompiledStep), (
        (root / "compiled-steps").glob("*.log").__next__().read_text()
    )
    yield checkpoint, root


@pytest.fixture
def auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` as a node would have it (the suite's conftest turns it off)."""
    monkeypatch.delenv(MODE_ENV, raising=False)


@pytest.fixture
def tiny(checkpoints: dict[str, Path]) -> HybridReSpike:
    return load_checkpoint(checkpoints["residual"]).model.eval()


def stream(model: HybridReSpike, seed: int, steps: int = 9) -> torch.Tensor:
    """Logits of ``steps`` steps, a key frame every 2 (as the checkpoint's K)."""
    spec = model.config.input_spec
    gen = torch.Generator().manual_seed(seed)
    state, logits = None, []
    with torch.no_grad():
        for i in range(steps):
            if i % spec.keyframe_interval == 0:
                state = model.set_keyframe(
                    torch.rand(1, 3, *spec.keyframe_size, generator=gen), state
                )
            x = torch.rand(1, spec.snn_channels, *spec.snn_size, generator=gen) * 2 - 1
            out, state = model.step(x, state)
            logits.append(out)
    return torch.cat(logits)


def test_the_compiled_step_gives_the_eager_logits_and_loads_from_the_cache(
    built: tuple[Path, Path],
) -> None:
    checkpoint, root = built
    model = load_checkpoint(checkpoint).model.eval()
    eager = stream(model, seed=5)
    compiler = StepCompiler("cached", checkpoint, cache=root / "compiled-steps")
    compiler.attach(model)
    step = compiler.step
    assert step is not None, "a second process loads the cached step without building"
    compiled = stream(model, seed=5)
    assert step.calls == 8 and step.eager_calls == 1, "all but a stream's first step compiled"
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    x = torch.zeros(1, 1, 32, 32)
    with torch.no_grad():
        _, state = model.step(x, model.set_keyframe(torch.zeros(1, 3, 32, 32)))
        model.step(x, state)
    assert (step.calls, step.eager_calls) == (9, 2)
    with torch.enable_grad():
        model.step(x, state)
    assert (step.calls, step.eager_calls) == (9, 3), "with autograd on the step is eager"
    several = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        compiled_logits, compiled_state = model.steps(several, state)
        with model.eager():
            eager_logits, eager_state = model.steps(several, state)
    assert step.calls == 12, "a few steps at once go through the artifact one by one"
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_state.head, eager_state.head, rtol=1e-4, atol=1e-5)


def test_changed_weights_never_load_a_stale_artifact(built: tuple[Path, Path]) -> None:
    checkpoint, root = built
    model = load_checkpoint(checkpoint).model.eval()
    before = artifact_path(model, root)
    with torch.no_grad():
        model.head.bias.add_(0.5)
    assert artifact_path(model, root) != before
    compiler = StepCompiler("cached", checkpoint, cache=root / "compiled-steps")
    compiler.attach(model)
    assert compiler.step is None, "no artifact for these weights: the step stays eager"


def test_the_model_node_runs_its_cached_compiled_step(
    built: tuple[Path, Path], rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, root = built
    monkeypatch.setenv("RESPIKE_CACHE", str(root))
    io = MockIO(
        ModelNode,
        "model",
        ModelNode.Params(checkpoint=str(checkpoint), compiled_step="cached", alpha=1.0),
    )
    for i in range(4):
        if i % 2 == 0:
            frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            io.send("keyframes", Message("res/keyframes", "frame", i, {"frame": frame}))
        residual = rng.uniform(-1, 1, (1, 32, 32)).astype(np.float32)
        io.send("steps", Message("res/residual", "residual", 1000 + i, {"residual": residual}))
    assert len(io.outputs) == 4
    assert io.node.stats()["compiled_steps"] == 3, "every step but the stream's first"


@pytest.mark.usefixtures("auto_mode")
def test_a_failed_build_is_logged_and_not_retried(
    tiny: HybridReSpike, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny
    missing = tmp_path / "gone.pt"  # the build process cannot load it
    compiler = StepCompiler("auto", missing, name="model-x", cache=tmp_path)
    with caplog.at_level(logging.INFO):
        compiler.attach(model)
        wait_for(compiler, model, seconds=120)
    assert compiler.step is None
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 1 and "model-x" in failures[0] and "gone.pt" in failures[0], failures
    again = StepCompiler("auto", missing, cache=tmp_path)
    again.attach(model)
    assert again._build is None, "a build that failed is not started again"


def test_unknown_modes_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="compiled_step is 'fast'; expected one of auto"):
        StepCompiler("fast", Path("x.pt"))
    monkeypatch.setenv(MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match=f"{MODE_ENV} is 'sometimes'"):
        StepCompiler("auto", Path("x.pt"))


def test_the_cache_keeps_the_most_recently_used_steps(tmp_path: Path) -> None:
    packages = [tmp_path / f"step-{i:02d}.pt2" for i in range(KEEP + 4)]
    for age, package in enumerate(reversed(packages)):
        package.write_bytes(b"x")
        package.with_suffix(".log").write_text("built")
        os.utime(package, (1e9 - age, 1e9 - age))  # packages[0] is the oldest
    prune(tmp_path, keep=packages[0])
    kept = sorted(tmp_path.glob("*.pt2"))
    assert kept == sorted([packages[0], *packages[-(KEEP - 1) :]]), "the newest, and the one in use"
    assert sorted(tmp_path.glob("*.log")) == [p.with_suffix(".log") for p in kept]


@pytest.mark.usefixtures("auto_mode")
def test_a_cache_that_cannot_be_written_leaves_the_step_eager(
    tiny: HybridReSpike, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    compiler = StepCompiler("auto", tmp_path / "x.pt", cache=tmp_path / "a-file" / "steps")
    compiler.attach(tiny)
    assert compiler._build is None and compiler.step is None
    assert any("cannot build in" in r.getMessage() for r in caplog.records)


def test_one_build_at_a_time_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "step-x.lock"
    with build_lock(lock):
        assert lock_owner(lock) == os.getpid()
        with pytest.raises(BuildInProgress, match=f"process {os.getpid()}"), build_lock(lock):
            pass
    assert not lock.exists(), "released"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    for left in (gone.stdout.strip(), "not a pid"):  # a dead builder's lock, a damaged one
        lock.write_text(left)
        with build_lock(lock):
            assert lock_owner(lock) == os.getpid()
    lock.write_text(str(os.getpid()))
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    assert lock_owner(lock) is None, "a lock older than any build is stale"


@pytest.mark.usefixtures("auto_mode")
def test_a_node_waits_for_a_build_another_process_holds(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, root = built
    model = load_checkpoint(checkpoint).model.eval()
    package = artifact_path(model, tmp_path)
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        package.with_suffix(".lock").write_text(str(builder.pid))
        compiler = StepCompiler("auto", checkpoint, cache=tmp_path)
        compiler.attach(model)
        assert compiler._build is None and compiler.step is None, "no second build"
        compiler.poll(model)
        assert compiler.step is None, "nothing to load yet"
        shutil.copy(artifact_path(model, root / "compiled-steps"), package)  # the other's result
        compiler.poll(model)
        assert isinstance(compiler.step, CompiledStep)
    finally:
        builder.kill()
        builder.wait()


def test_a_stopping_node_leaves_its_build_running_and_a_swap_stops_it(tmp_path: Path) -> None:
    compiler = StepCompiler("auto", tmp_path / "x.pt", cache=tmp_path)
    for keep in (True, False):
        build = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        compiler._build = build
        compiler.close(keep_building=keep)
        try:
            assert (build.poll() is None) == keep
        finally:
            build.kill()
            build.wait()


def test_an_inline_model_compiles_its_step_with_the_fusion_inside(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """In-line fusion runs inside the SNN's step: the artifact takes the key frame's keys and
    values with the state and gives the eager step's logits."""
    need_compiler()
    path = checkpoints["inline"]
    model = load_checkpoint(path).model.eval()
    assert model.inline
    eager = stream(model, seed=3)
    compiler = StepCompiler("build", path, cache=tmp_path / "compiled-steps")
    compiler.attach(model)
    step = compiler.step
    assert isinstance(step, CompiledStep), "built at start"
    compiled = stream(model, seed=3)
    assert step.calls == 8, "all but the stream's first step went through the artifact"
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
