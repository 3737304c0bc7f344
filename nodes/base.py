"""The Node base class, typed node parameters, and the registry of node kinds.

A node is a loop over typed inputs with an explicit stop (the runtime in
:mod:`respike.nodes.runtime` owns the loop). A node kind subclasses :class:`Node`, declares its
``inputs`` and ``outputs`` ports and a frozen ``Params`` dataclass, and implements some of:

- :meth:`Node.start`: open devices, warm up kernels (before the first message, not on it);
- :meth:`Node.on_message`: handle one input message (transforms and sinks);
- :meth:`Node.produce`: emit the next output and say when to be called again (sources);
- :meth:`Node.finish`: flush and close, at the end of input or on shutdown.

Outputs go through :meth:`Node.publish`, which the runtime routes to sockets and tests route
to a list (:class:`respike.nodes.testing.MockIO`), so node code never touches a socket.

Kinds come from three places: respike's own modules (:data:`NODE_MODULES`), installed
packages that declare an entry point in the ``respike.nodes`` group (``name =
"package.module:Class"``), and ``kind = "package.module:Class"`` written in a pipeline file.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from respike.stream import kinds
from respike.stream.messages import Message

NODE_MODULES = (
    "respike.nodes.testsource",
    "respike.nodes.jsonl",
    "respike.nodes.camera",
    "respike.nodes.recorder",
    "respike.nodes.dvs",
    "respike.nodes.viewer",
    "respike.nodes.synthetic",
    "respike.nodes.residual",
    "respike.nodes.model",
    "respike.nodes.split",
    "respike.nodes.ros2",
    "respike.nodes.foxglove",
)
"""Modules that define node kinds; importing them fills the registry. Heavy dependencies
(torch, numba) are imported inside those nodes' methods, so listing kinds stays fast."""


class SourceFailed(RuntimeError):
    """A source's input failed for good (a damaged or vanished file): what was already published
    stands, ``end`` follows it, and the node is not restarted. Raise it from :meth:`Node.produce`
    with a message naming the input and what is wrong with it."""


class StopPipeline(Exception):
    """Raised by a node when the whole pipeline should stop cleanly, e.g. a sink whose reader
    went away (``respike demo --json | head -2``)."""


def param(default: Any, help: str) -> Any:
    """A node parameter: a dataclass field with a default and the help text shown by the CLI."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For node kinds without parameters."""


class Output(Protocol):
    """Where a node's messages go: sockets in a pipeline, a list in tests."""

    def publish(self, port: str, message: Message) -> None: ...

    def publish_frames(self, port: str, frames: list[Any]) -> None: ...


P = TypeVar("P")


class Node(Generic[P]):
    """Base of every node kind; see the module docstring for the life cycle.

    Generic over its parameters: ``class Alarm(Node[AlarmParams])`` with ``Params =
    AlarmParams`` makes ``self.params`` an ``AlarmParams`` for a type checker.
    """

    kind: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    optional_inputs: ClassVar[frozenset[str]] = frozenset()
    any_inputs: ClassVar[bool] = False
    """True for nodes that take any set of named inputs (the recorder)."""
    tick_interval: ClassVar[float | None] = None
    """Seconds between calls of :meth:`tick`, for periodic work such as flushing a file."""

    def __init__(self, name: str, params: P, output: Output) -> None:
        self.name = name
        self.params: P = params
        self._output = output
        self.stop_requested = threading.Event()
        """Set when the node is told to stop (Ctrl-C, SIGTERM): a node that keeps working in
        :meth:`finish` after its input ended (a viewer that holds its page) watches it."""

    @classmethod
    def is_source(cls) -> bool:
        """Sources override :meth:`produce`; the runtime calls it on their schedule."""
        return cls.produce is not Node.produce

    def start(self) -> None:
        """Prepare to run: open devices and files, compile kernels. Errors here are fatal."""

    def on_message(self, port: str, message: Message) -> None:
        """Handle one validated message that arrived on input ``port``."""

    def flush(self) -> None:
        """Run work that :meth:`on_message` deferred; called once no input message is waiting.

        A node that has fallen behind gets every waiting message through :meth:`on_message`
        first and can then process them in one batch here (the ``model`` node steps its SNN
        over all of them in one pass). Nodes that work per message leave this empty.
        """

    def produce(self) -> float | None:
        """Emit output; return seconds from now until the next call, or None when done.

        Sources that keep a rate use a :class:`Pacer` so their schedule does not drift. A
        permanent failure raises :class:`SourceFailed`; any other exception restarts the node.
        """
        return None

    def tick(self) -> None:
        """Periodic work every ``tick_interval`` seconds, whether or not input arrives."""

    def finish(self) -> None:
        """Flush and release resources; called once at the end of input or on shutdown."""

    def stats(self) -> dict[str, float]:
        """Node-specific numbers for the stats topic (e.g. events/s, kernel ms)."""
        return {}

    def publish(
        self,
        port: str,
        kind: str | kinds.Meta,
        t: int,
        arrays: Mapping[str, np.ndarray] | None = None,
        **meta: Any,
    ) -> None:
        """Publish on output ``port`` a message of ``kind`` referring to capture time ``t`` (µs).

        ``kind`` is a kind's name with its ``meta`` as keywords, or a typed meta of
        :mod:`respike.stream.kinds` (``kinds.Frame(index=3)``), which brings both.
        """
        if isinstance(kind, kinds.Meta):
            meta = {**kind.to_meta(), **meta}
            kind = kind.KIND
        self._output.publish(port, Message(self.topic(port), kind, t, dict(arrays or {}), meta))

    def publish_frames(self, port: str, frames: list[Any]) -> None:
        """Publish already-encoded ``[topic, header, *buffers]`` on ``port`` with header and
        buffers unchanged (replay of recorded bytes); only the topic frame is replaced."""
        self._output.publish_frames(port, [self.topic(port).encode(), *frames[1:]])

    def topic(self, port: str) -> str:
        """The wire topic of output ``port``: ``name/port``."""
        if port not in self.outputs:
            raise ValueError(f"node {self.name!r} has no output {port!r}; outputs: {self.outputs}")
        return f"{self.name}/{port}"


class Pacer:
    """Paces a source on a fixed schedule from its start, without drift.

    ``delay_until(offset)`` is the time to wait until ``offset`` seconds after the start; a
    source that falls more than ``max_lag`` behind (a stalled consumer) is re-anchored instead
    of bursting to catch up.
    """

    def __init__(self, max_lag: float = 1.0) -> None:
        self.max_lag = max_lag
        self.start = time.monotonic()

    def delay_until(self, offset: float) -> float:
        delay = self.start + offset - time.monotonic()
        if delay < -self.max_lag:
            self.start -= delay
            return 0.0
        return max(0.0, delay)


N = TypeVar("N", bound=type[Node[Any]])

ENTRY_POINT_GROUP = "respike.nodes"
"""The entry-point group through which installed packages add node kinds."""

_KINDS: dict[str, type[Node[Any]]] = {}
_BROKEN: dict[str, str] = {}
"""Entry points that could not be loaded: kind name → one line saying why."""
_PACKAGES: dict[str, str] = {}
"""Kinds of entry points: kind name → the distribution and version that declared it."""


def register(kind: str) -> Callable[[N], N]:
    """Class decorator adding a node kind to the registry; a duplicate name is an error."""

    def add(cls: N) -> N:
        if kind in _KINDS and _KINDS[kind] is not cls:
            raise ValueError(
                f"node kind {kind!r} is already registered by {_KINDS[kind].__module__}"
            )
        _check_node_class(cls, kind)
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return add


def _check_node_class(cls: Any, kind: str) -> None:
    """Raise TypeError unless ``cls`` is a node kind: a Node subclass with frozen Params."""
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise TypeError(f"node kind {kind!r} is {cls!r}, not a subclass of respike's Node")
    params = cls.Params
    if not (dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}.Params must be a frozen dataclass")


def node_kinds() -> dict[str, type[Node[Any]]]:
    """All node kinds by name: respike's own, then those of installed packages' entry points
    (one that fails to load is left out and reported by :func:`broken_kinds`)."""
    for module in NODE_MODULES:
        importlib.import_module(module)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _KINDS or entry.name in _BROKEN:
            continue
        try:
            cls = entry.load()
            if getattr(cls, "kind", "") not in ("", entry.name):
                raise TypeError(f"the class is registered as kind {cls.kind!r}")
            register(entry.name)(cls)
            if entry.dist is not None:
                _PACKAGES[entry.name] = f"{entry.dist.name} {entry.dist.version}"
        except Exception as exc:  # a broken plug-in must not take the other kinds down
            package = entry.dist.name if entry.dist is not None else "?"
            _BROKEN[entry.name] = (
                f"node kind {entry.name!r} of package {package} ({entry.value}) cannot be "
                f"loaded: {type(exc).__name__}: {exc}"
            )
    return dict(sorted(_KINDS.items()))


def broken_kinds() -> dict[str, str]:
    """Entry-point kinds that failed to load, each with one line saying why."""
    node_kinds()
    return dict(_BROKEN)


def get_node_kind(kind: str) -> type[Node[Any]]:
    """The node class of ``kind``: a registered name, or ``package.module:Class``.

    Raises KeyError with one line: the known kinds, or why the class cannot be used.
    """
    if ":" in kind:
        return _import_kind(kind)
    kinds = node_kinds()
    if kind in _BROKEN:
        raise KeyError(_BROKEN[kind])
    if kind not in kinds:
        raise KeyError(f"unknown node kind {kind!r}; known kinds: {', '.join(kinds)}")
    return kinds[kind]


def _import_kind(spec: str) -> type[Node[Any]]:
    """The class named by ``package.module:Class`` (importable from ``sys.path`` or the current
    folder); its ``kind`` is ``spec`` unless the class registered a name."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise KeyError(f"node kind {spec!r}; expected package.module:Class")
    if os.getcwd() not in sys.path:  # as `python -m` would: modules beside the pipeline's user
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise KeyError(
            f"node kind {spec!r}: module {module_name!r} cannot be imported: {exc}"
        ) from None
    cls: Any = module
    for part in attr.split("."):
        cls = getattr(cls, part, None)
    if cls is None:
        raise KeyError(f"node kind {spec!r}: module {module_name!r} has no {attr!r}")
    try:
        _check_node_class(cls, spec)
    except TypeError as exc:
        raise KeyError(str(exc)) from None
    if not cls.kind:
        cls.kind = spec
    return typing.cast(type[Node[Any]], cls)


def kind_package(node_cls: type[Node[Any]]) -> str:
    """The distribution a node kind comes from (``respike-stream`` for respike's own), with
    its version when installed; the top-level module when no distribution provides it."""
    if node_cls.kind in _PACKAGES:
        return _PACKAGES[node_cls.kind]
    top = node_cls.__module__.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if not names:
        return top
    name = names[0]
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """One parameter of a node kind, as the CLI and the pipeline checker see it."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str


_SCALARS = (bool, int, float, str, Path)


def param_infos(params_cls: type) -> list[ParamInfo]:
    """Describe the fields of a node's Params dataclass (scalars, optionally ``| None``)."""
    hints = typing.get_type_hints(params_cls)
    infos = []
    for f in dataclasses.fields(params_cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        if base not in _SCALARS:
            raise TypeError(f"parameter {f.name!r} has type {hint}; expected one of {_SCALARS}")
        infos.append(ParamInfo(f.name, base, optional, f.default, f.metadata.get("help", "")))
    return infos


class ParamError(ValueError):
    """A parameter value that does not fit its declaration."""


def coerce_param(info: ParamInfo, value: Any) -> Any:
    """Check (TOML values) or parse (CLI strings) ``value`` for parameter ``info``."""
    if value is None or (isinstance(value, str) and info.optional and value.lower() == "none"):
        if info.optional:
            return None
        raise ParamError(f"parameter {info.name!r} may not be empty; expected {info.type.__name__}")
    if isinstance(value, str) and info.type is not str:
        return _parse(info, value)
    if info.type is bool and not isinstance(value, bool):
        raise ParamError(f"parameter {info.name!r} is {value!r}; expected true or false")
    if info.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParamError(f"parameter {info.name!r} is {value!r}; expected an integer")
    if info.type is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ParamError(f"parameter {info.name!r} is {value!r}; expected a number")
    if info.type is str and not isinstance(value, str):
        raise ParamError(f"parameter {info.name!r} is {value!r}; expected a string")
    return info.type(value)


def _parse(info: ParamInfo, text: str) -> Any:
    if info.type is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ParamError(f"parameter {info.name!r} is {text!r}; expected true or false")
    try:
        return info.type(text)
    except ValueError:
        raise ParamError(
            f"parameter {info.name!r} is {text!r}; expected {info.type.__name__}"
        ) from None


def build_params(node_cls: type[Node], values: Mapping[str, Any]) -> Any:
    """Make ``node_cls.Params`` from raw values, naming any unknown or ill-typed parameter."""
    infos = {info.name: info for info in param_infos(node_cls.Params)}
    unknown = sorted(set(values) - set(infos))
    if unknown:
        known = ", ".join(infos) or "none"
        raise ParamError(
            f"unknown parameter(s) {', '.join(unknown)}; {node_cls.kind} takes: {known}"
        )
    typed = {name: coerce_param(infos[name], value) for name, value in values.items()}
    try:
        return node_cls.Params(**typed)
    except (TypeError, ValueError) as exc:
        raise ParamError(str(exc)) from exc
