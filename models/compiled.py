"""Compiled streaming steps: a model's step as an AOTInductor artifact, built once, cached on disk.

An eager step of a small model is mostly Python and op dispatch: the shipped ``actions`` model
spends about 3 ms per step around 1 ms of convolutions and matmuls. ``torch.compile`` removes
that but costs 30-40 s in every process that starts. Here the step is exported once
(``torch.export``) and compiled ahead of time by AOTInductor into a package in the cache folder
(``$RESPIKE_CACHE``, else ``~/.cache/respike``, under ``compiled-steps/``); a later process
loads it in milliseconds.

An artifact is specific to one step signature: batch 1, one step, a stream under way (SNN
membranes and a segment's running features present; the first step of a segment is brought to
that form with a zero running sum, which gives the same numbers). Its file name is a digest of
everything it depends on: the weights, the model config, the models package's source, torch's
version and the signature, so a changed model never loads a stale artifact. A few steps at
once (up to :data:`LOOP_UP_TO`) go through it one by one; any other call (the first step of a
stream, a long batch, another batch size, autograd, hooks for energy counting) runs the eager
step. The compiled step computes the same operations fused, so its numbers differ from the
eager ones by float rounding (about 1e-6 on logits).

Building needs a C++ compiler (AOTInductor compiles C++); without one the build fails with the
compiler's error and the eager step stays. ``respike compile-step CHECKPOINT`` (or ``python -m
respike.models.compiled CHECKPOINT``) builds an artifact ahead of time; :class:`StepCompiler`
is what a model node uses: load, or build in the background.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.utils._pytree as pytree

from respike.models.hybrid import HeadState, HybridReSpike, ModelState

log = logging.getLogger(__name__)

CACHE_ENV = "RESPIKE_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/respike``)."""

FORMAT = 1
"""Version of this module's artifact layout; part of every digest."""


def cache_folder() -> Path:
    """Where compiled steps are kept: ``$RESPIKE_CACHE/compiled-steps`` (default under ~/.cache)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "respike"
    return Path(root) / "compiled-steps"


@dataclass(frozen=True)
class Layout:
    """How a state part (nested named tuples, some fields None) maps to the flat tensors an
    artifact takes: its tree, and which of the tree's leaves are tensors (the rest are None)."""

    spec: pytree.TreeSpec
    is_tensor: tuple[bool, ...]

    @classmethod
    def of(cls, tree: Any) -> Layout:
        leaves, spec = pytree.tree_flatten(tree)
        return cls(spec, tuple(leaf is not None for leaf in leaves))

    def tensors(self, tree: Any) -> list[torch.Tensor] | None:
        """The tensors of ``tree``, or None when its layout is another."""
        leaves, spec = pytree.tree_flatten(tree)
        if spec != self.spec or tuple(leaf is not None for leaf in leaves) != self.is_tensor:
            return None
        return [leaf for leaf in leaves if leaf is not None]

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> Any:
        """The tree of this layout holding ``tensors``."""
        given = iter(tensors)
        return pytree.tree_unflatten(
            [next(given) if tensor else None for tensor in self.is_tensor], self.spec
        )

    @property
    def count(self) -> int:
        return sum(self.is_tensor)


@dataclass(frozen=True)
class StepExample:
    """A steady-state step's inputs (``x (1, 1, C, h, w)`` time-major and the state), the
    layout of the whole state and of the parts the artifact gives back (SNN and head)."""

    x: torch.Tensor
    state: ModelState
    layout: Layout
    snn: Layout
    head: Layout

    def inputs(self) -> list[torch.Tensor]:
        """The artifact's inputs: ``x``, then the state's tensors (SNN, context, head)."""
        tensors = self.layout.tensors(self.state)
        assert tensors is not None
        return [self.x, *tensors]

    def signature(self) -> str:
        """What an artifact is specific to: the shapes, dtypes and layout of its inputs."""
        parts = [f"{tuple(t.shape)}:{t.dtype}" for t in self.inputs()]
        return ";".join([*parts, str(self.layout)])


def step_example(model: HybridReSpike) -> StepExample:
    """Inputs of a step in a running stream (one key frame and one step on zeros before it)."""
    spec = model.config.input_spec
    device = next(model.parameters()).device
    frame = None if model.ann is None else torch.zeros(1, 3, *spec.keyframe_size, device=device)
    x = torch.zeros(1, 1, spec.snn_channels, *spec.snn_size, device=device)
    with torch.no_grad(), model.eager():
        _, state = model.steps(x, model.set_keyframe(frame))
    if state.snn is None or state.head is None or state.head.history is not None:
        raise ValueError(
            "compiled steps need a model with an SNN branch and a running-average head "
            f"(mode {model.config.mode}, head_window {model.config.head_window})"
        )
    return StepExample(x, state, Layout.of(state), Layout.of(state.snn), Layout.of(state.head))


def artifact_digest(model: HybridReSpike, example: StepExample) -> str:
    """Digest of all an artifact depends on: weights, config, the models' code, torch, inputs."""
    digest = hashlib.sha256()
    for text in (
        f"format {FORMAT}",
        torch.__version__,
        sys.version,
        json.dumps(model.config.to_dict(), sort_keys=True, default=str),
        example.signature(),
        str(next(model.parameters()).device),
    ):
        digest.update(text.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def artifact_path(
    model: HybridReSpike, cache: Path | None = None, example: StepExample | None = None
) -> Path:
    """The package file of ``model``'s compiled step in ``cache`` (built or not)."""
    example = example or step_example(model)
    return (cache or cache_folder()) / f"step-{artifact_digest(model, example)}.pt2"


class _ExportedStep(torch.nn.Module):
    """The step as export sees it: flat tensors in, logits and the new SNN and head state out
    (the key-frame context passes through unchanged, so it is not an output)."""

    def __init__(self, model: HybridReSpike, example: StepExample) -> None:
        super().__init__()
        self.model = model
        self.example = example

    def forward(self, x: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new = self.model._steps_impl(x, self.example.layout.rebuild(tensors))
        snn, head = self.example.snn.tensors(new.snn), self.example.head.tensors(new.head)
        assert snn is not None and head is not None, "the step changed the state's layout"
        return (logits, *snn, *head)


def build(model: HybridReSpike, cache: Path | None = None) -> Path:
    """Export and compile ``model``'s step into the cache (tens of seconds); returns the file.

    Written under a temporary name and renamed, so a reader never sees half a package; a lock
    makes one process build it at a time (another raises :class:`BuildInProgress`).
    """
    example = step_example(model)
    path = artifact_path(model, cache, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(path.with_suffix(".lock")):
        _compile(model, example, path)
    prune(path.parent, keep=path)
    return path


def _compile(model: HybridReSpike, example: StepExample, path: Path) -> None:
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            exported = torch.export.export(
                _ExportedStep(model, example),
                tuple(example.inputs()),
                strict=False,
            )
            torch._inductor.aoti_compile_and_package(exported, package_path=str(partial))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
        model.train(was_training)


class BuildInProgress(RuntimeError):
    """Another live process is building this package (its pid is ``owner``)."""

    def __init__(self, owner: int) -> None:
        super().__init__(f"being built by process {owner}")
        self.owner = owner


STALE_LOCK_S = 600.0
"""A build lock older than this is taken as left by a build that died (or a reused pid)."""


def lock_owner(lock: Path) -> int | None:
    """The pid of the live process holding ``lock``, or None (a stale lock is removed)."""
    try:
        text, age = lock.read_text(), time.time() - lock.stat().st_mtime
    except OSError:  # no lock (or no cache folder)
        return None
    try:
        pid = int(text)
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return pid
    except (ValueError, ProcessLookupError):
        lock.unlink(missing_ok=True)
        return None
    if age > STALE_LOCK_S:
        lock.unlink(missing_ok=True)
        return None
    return pid


@contextlib.contextmanager
def build_lock(lock: Path) -> Iterator[None]:
    """Hold ``lock`` while building (so two processes never build one package at once);
    raises :class:`BuildInProgress` when a live process holds it. The pid is written first
    and the lock made by one ``link``, so a reader never sees an empty lock."""
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                owner = lock_owner(lock)
                if owner is not None:
                    raise BuildInProgress(owner) from None
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


KEEP = 16
"""Compiled steps kept in the cache (the most recently used; each is a few MB). Every model a
Teach panel fits gets its own, so the cache would otherwise grow without bound."""


def prune(cache: Path, *, keep: Path) -> None:
    """Remove all but the :data:`KEEP` most recently used packages of ``cache`` (and their logs
    and failure notes), never ``keep``."""
    packages = sorted(
        (p for p in cache.glob("step-*.pt2") if p != keep and ".partial" not in p.name),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in packages[KEEP - 1 :]:
        for part in (old, old.with_suffix(".log"), old.with_suffix(".failed")):
            part.unlink(missing_ok=True)


LOOP_UP_TO = 16
"""Several steps at once (a node catching up) run through the artifact one by one up to this
many; more go through the eager batched pass, which then costs less per step. Measured on the
shipped models (one thread): per step, ``actions`` 1.0 ms compiled against 1.4-2.0 eager batched
at 4 to 32 steps; ``gestures-dvs`` 0.69 against 0.75 ms at 16 steps, 0.73 against 0.53 at 32."""


Runner = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def load_runner(path: Path) -> Runner:
    """A package's compiled function, flat tensors in and out.

    Through AOTInductor's C++ loader directly where torch has it: loading then takes 5 ms and
    does not import ``torch._inductor`` (1.2 s at a node's start), and a call skips the Python
    wrapper's two tree-spec parses (about 0.2 ms of a 1 ms step).
    """
    loader_type = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_type is not None:
        return cast(Runner, loader_type(str(path), "model", False, 1, -1).boxed_run)
    compiled_model = torch._inductor.aoti_load_package(str(path))
    return lambda inputs: list(compiled_model(*inputs))


class CompiledStep:
    """A model's step function running a loaded artifact where the call fits it, else eager.

    Install it with :meth:`HybridReSpike.use_steps`. The artifact holds the weights it was
    built from: a model whose weights change needs a new one (:func:`load` finds it by digest).
    ``calls`` counts the steps the artifact ran, ``eager_calls`` the calls that ran eagerly.
    """

    def __init__(
        self, model: HybridReSpike, path: Path, example: StepExample | None = None
    ) -> None:
        self._model = model
        self._example = example = example or step_example(model)
        self._inputs = [(t.shape, t.dtype) for t in example.inputs()]
        head = example.state.head
        assert head is not None  # step_example checks it
        self._head_zero = HeadState(
            torch.zeros_like(head.feature_sum), torch.zeros_like(head.steps)
        )
        self._run = load_runner(path)
        self.path = path
        self.calls = 0
        self.eager_calls = 0

    def __call__(self, x: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        steps = x.shape[0]
        inputs = self._fitting_inputs(x[:1], state) if 1 <= steps <= LOOP_UP_TO else None
        if inputs is None:
            self.eager_calls += 1
            return self._model._steps_impl(x, state)
        logits = []
        for t in range(steps):
            if t > 0:
                inputs = self._fitting_inputs(x[t : t + 1], state)
                assert inputs is not None  # the state keeps its layout from step to step
            self.calls += 1
            out = self._run(inputs)  # a fresh list: the loader consumes it
            count = self._example.snn.count
            snn = self._example.snn.rebuild(out[1 : 1 + count])
            head = self._example.head.rebuild(out[1 + count :])
            state = ModelState(snn=snn, context=state.context, head=head)
            logits.append(out[0])
        return (logits[0] if steps == 1 else torch.cat(logits)), state

    def _fitting_inputs(self, x: torch.Tensor, state: ModelState) -> list[torch.Tensor] | None:
        """The artifact's inputs when the call fits its signature, else None.

        A segment's first step (no head state yet) gets a zero running sum and count, which
        give the same averages as none.
        """
        if torch.is_grad_enabled() or self._model.training:
            return None
        if state.head is None and state.snn is not None:
            state = state._replace(head=self._head_zero)
        tensors = self._example.layout.tensors(state)
        if tensors is None:
            return None
        inputs = [x, *tensors]
        for tensor, (shape, dtype) in zip(inputs, self._inputs, strict=True):
            if tensor.shape != shape or tensor.dtype != dtype:
                return None
        return inputs


def load(model: HybridReSpike, cache: Path | None = None) -> CompiledStep | None:
    """``model``'s compiled step from the cache, or None when none was built for it."""
    example = step_example(model)
    path = artifact_path(model, cache, example)
    if not path.is_file():
        return None
    return CompiledStep(model, path, example)


MODES = ("auto", "cached", "build", "off")
"""What a model node does about its compiled step: ``auto`` loads one from the cache or builds it
in the background (a low-priority process; eager steps until it is there), ``cached`` only
loads, ``build`` builds at start (waits), ``off`` stays eager."""

MODE_ENV = "RESPIKE_COMPILED_STEP"
"""Environment variable that replaces the ``auto`` default (e.g. ``off`` in test suites)."""


class StepCompiler:
    """Gives a node's model its compiled step as ``mode`` says (see :data:`MODES`).

    ``checkpoint`` is the file the model came from: a background build loads it in its own
    process, which holds a lock in the cache so that nodes starting together build it once (the
    others wait for the package). A node that stops leaves its build running to the end, for
    the next start; a node that swaps models stops the old model's build. A failed build is
    logged once with its reason and remembered in the cache (a ``.failed`` file beside where
    the package would be), so later starts do not retry it.
    """

    def __init__(
        self, mode: str, checkpoint: Path, *, name: str = "model", cache: Path | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"compiled_step is {mode!r}; expected one of {', '.join(MODES)}")
        if mode == "auto":
            mode = os.environ.get(MODE_ENV, "auto")
            if mode not in MODES:
                raise ValueError(f"{MODE_ENV} is {mode!r}; expected one of {', '.join(MODES)}")
        self.mode = mode
        self.checkpoint = checkpoint
        self.cache = cache or cache_folder()
        self.step: CompiledStep | None = None
        self._name = name
        self._path: Path | None = None
        self._example: StepExample | None = None
        self._build: subprocess.Popen[bytes] | None = None
        self._awaiting = False

    def attach(self, model: HybridReSpike) -> None:
        """Install the compiled step on ``model`` if there is one (building it as the mode says)."""
        if self.mode == "off":
            return
        try:
            self._example = step_example(model)
            self._path = artifact_path(model, self.cache, self._example)
        except ValueError as error:
            log.info("%s: eager steps: %s", self._name, error)
            return
        if next(model.parameters()).device.type != "cpu":
            log.info("%s: eager steps: compiled steps are built for the CPU", self._name)
            return
        failed = self._path.with_suffix(".failed")
        if not self._path.is_file() and self.mode == "build":
            try:
                build(model, self.cache)
            except BuildInProgress as busy:
                self._awaiting = True
                log.info("%s: eager steps while the compiled step is %s", self._name, busy)
                return
            except Exception as error:  # a compiler's error of any kind: eager still works
                with contextlib.suppress(OSError):
                    self.cache.mkdir(parents=True, exist_ok=True)
                    failed.write_text(f"{type(error).__name__}: {error}\n")
                log.warning(
                    "%s: eager steps: building the compiled step failed: %s",
                    self._name,
                    _first_line(error),
                )
                return
        if self._path.is_file():
            self._install(model)
        elif self.mode == "auto" and not failed.is_file():
            self._start_build()
        elif self.mode == "cached":
            log.info(
                "%s: eager steps: no compiled step in %s (`respike compile-step %s` builds it)",
                self._name,
                self.cache,
                self.checkpoint,
            )
        elif failed.is_file():
            log.info(
                "%s: eager steps: building the compiled step failed before (%s)", self._name, failed
            )

    def poll(self, model: HybridReSpike) -> None:
        """Install the background build's result once it is there (call now and then)."""
        if self._build is not None:
            if self._build.poll() is None:
                return
            build_process, self._build = self._build, None
            if build_process.returncode != 0:
                assert self._path is not None
                reason = _last_line(self._path.with_suffix(".log"))
                with contextlib.suppress(OSError):  # not remembered: the next start tries again
                    self._path.with_suffix(".failed").write_text(reason + "\n")
                log.warning(
                    "%s: eager steps: building the compiled step failed: %s", self._name, reason
                )
                return
            self._awaiting = True  # built, or another process was building it
        if not self._awaiting:
            return
        assert self._path is not None
        if self._path.is_file():
            self._awaiting = False
            self._install(model)
        elif lock_owner(self._path.with_suffix(".lock")) is None:  # that build died
            self._awaiting = False
            self._start_build()

    def close(self, *, keep_building: bool = False) -> None:
        """Stop a background build that is still running (its partial file is removed), or
        with ``keep_building`` let it finish on its own for the next start."""
        if self._build is not None and self._build.poll() is None:
            if keep_building:
                log.info(
                    "%s: the compiled step's build goes on in the background (process %d) "
                    "for the next start",
                    self._name,
                    self._build.pid,
                )
            else:
                os.killpg(self._build.pid, signal.SIGTERM)
                self._build.wait()
        self._build = None

    def _install(self, model: HybridReSpike) -> None:
        assert self._path is not None
        try:
            self.step = CompiledStep(model, self._path, self._example)
            self._path.touch()  # used now: pruning keeps the most recently used
        except (OSError, RuntimeError) as error:  # pruned by another process, or damaged
            log.warning("%s: eager steps: cannot load %s: %s", self._name, self._path, error)
            return
        model.use_steps(self.step)
        log.info("%s: compiled step %s", self._name, self._path.name)

    def _start_build(self) -> None:
        assert self._path is not None
        owner = lock_owner(self._path.with_suffix(".lock"))
        if owner is not None:
            self._awaiting = True
            log.info("%s: eager steps while process %d builds the compiled step", self._name, owner)
            return
        log_file = self._path.with_suffix(".log")
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            with log_file.open("wb") as out:
                self._build = subprocess.Popen(
                    [
                        *(sys.executable, "-m", __name__, str(self.checkpoint)),
                        *("--cache", str(self.cache), "--low-priority"),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its compiler workers go with it on close
                )
        except OSError as error:  # e.g. a read-only cache folder: eager steps still work
            log.warning("%s: eager steps: cannot build in %s: %s", self._name, self.cache, error)
            return
        log.info(
            "%s: eager steps while the compiled step is built in the background "
            "(once per model, about a minute at low priority; log %s)",
            self._name,
            log_file,
        )


def _exit_on_terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[0] if text else type(error).__name__


def _last_line(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {log_file}"
    return lines[-1] if lines else f"the build exited without a message (log {log_file})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m respike.models.compiled CHECKPOINT``: build its compiled step into the cache."""
    from respike.models.checkpoint import load_checkpoint, resolve_checkpoint

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", help="a checkpoint file or a shipped model name")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"folder of compiled steps (default {cache_folder()}; ${CACHE_ENV} moves it)",
    )
    parser.add_argument(
        "--low-priority", action="store_true", help="run at the lowest CPU priority (nice 19)"
    )
    args = parser.parse_args(argv)
    if args.low_priority:
        os.nice(19)
    signal.signal(signal.SIGTERM, _exit_on_terminate)  # so a stopped build removes its partial file
    model = load_checkpoint(resolve_checkpoint(args.checkpoint)).model.eval()
    torch.set_num_threads(1)
    begin = time.perf_counter()
    try:
        path = build(model, args.cache)
    except BuildInProgress as busy:
        print(f"already {busy}; it goes to {args.cache or cache_folder()} when done")
        return 0
    print(f"{path} ({time.perf_counter() - begin:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
