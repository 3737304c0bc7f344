"""What the model, snn, keyframe and fusion nodes share: loading, inputs, alignment, predictions.

Steps and key frames travel on different sockets (and, split across hosts, through different
nodes), so a step can arrive before the key frame of its segment. The residual node stamps each
step and each key frame with ``key_index`` (the residual node's frame count at that key frame);
:class:`KeyframeAligner` holds steps until their key frame's context is there, so the single
``model`` node and the split ``snn``/``keyframe``/``fusion`` nodes pair them identically.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from respike.events.inputs import InputSpec
from respike.models.adaptive import AdaptiveSettings
from respike.nodes.base import Node, param
from respike.nodes.rolling import RollingState, Smoothing, roll
from respike.stream import kinds
from respike.stream.messages import Message, now_us

C = TypeVar("C")
S = TypeVar("S")
Q = TypeVar("Q")


@dataclass(frozen=True)
class RuntimeParams:
    """Parameters of every node that runs a checkpoint."""

    checkpoint: str = param(
        "actions",
        "checkpoint path or shipped name (actions, actions-late, gestures-dvs, nmnist)",
    )
    threads: int = param(1, "torch CPU threads")
    device: str = param("cpu", "torch device (cpu, cuda)")
    energy_every: int = param(
        8,
        "count MACs and spike ACs on every N-th call (0 = never); the others reuse the last count",
    )

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError("threads must be ≥ 1")
        if self.energy_every < 0:
            raise ValueError("energy_every must be ≥ 0")


@dataclass(frozen=True)
class BatchParams(RuntimeParams):
    """Parameters of the nodes that step the SNN on every input."""

    batch: int = param(
        32, "most waiting steps run in one SNN pass when the node is behind (1 = one by one)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch < 1:
            raise ValueError("batch must be ≥ 1")


def run_gated(
    batch: Sequence[Q],
    admit: Callable[[Q], Q | None],
    run: Callable[[list[Q]], None],
    hold: Callable[[Q], None],
) -> None:
    """Compute the items of ``batch`` that ``admit`` lets through (as it returns them) in runs,
    and ``hold`` the others, in arrival order: a run is computed before the held item after
    it, so the held item repeats what that run predicted."""
    computed: list[Q] = []
    for item in batch:
        admitted = admit(item)
        if admitted is not None:
            computed.append(admitted)
            continue
        if computed:
            run(computed)
            computed = []
        hold(item)
    if computed:
        run(computed)


@dataclass(frozen=True)
class IdleParams:
    """How a node that steps the SNN idles on a still scene (:class:`AdaptiveSettings`)."""

    idle_below: float = param(
        AdaptiveSettings.idle_below,
        "inputs within this of zero are still, and key frames within a quarter of it "
        "on average (negative: never idle)",
    )
    idle_after: int = param(AdaptiveSettings.idle_after, "still steps before the node idles")


@dataclass(frozen=True)
class KeyframeParams:
    """When a node runs the ANN on a key frame (:class:`AdaptiveSettings`)."""

    keyframe_gap: int = param(
        AdaptiveSettings.keyframe_gap,
        "most segments between two ANN passes (1: a pass on every key frame not still)",
    )
    keyframe_change: float = param(
        AdaptiveSettings.keyframe_change,
        "mean change of a key frame (0-1 units) that calls for an ANN pass",
    )


def adaptive_settings(params: object) -> AdaptiveSettings:
    """The :class:`AdaptiveSettings` of a node's parameters: those it has, the defaults for the
    rest (a ``keyframe`` node has no prediction, so no confidence to read)."""
    names = (f.name for f in dataclasses.fields(AdaptiveSettings))
    return AdaptiveSettings(**{n: getattr(params, n) for n in names if hasattr(params, n)})


class StepQueue(Generic[Q]):
    """Inputs waiting for the node's ``flush``, taken in batches of at most ``limit`` steps.

    A batch holds at least one input, however many steps it has, and keeps arrival order.
    """

    def __init__(self, limit: int, steps: Callable[[Q], int]) -> None:
        self._items: list[Q] = []
        self._limit = limit
        self._steps = steps

    def append(self, item: Q) -> None:
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def batches(self) -> Iterator[list[Q]]:
        """Take the waiting inputs batch by batch (each batch leaves the queue as it is taken)."""
        while self._items:
            count, steps = 0, 0
            for item in self._items:
                steps += self._steps(item)
                if count and steps > self._limit:
                    break
                count += 1
            batch, self._items = self._items[:count], self._items[count:]
            yield batch


@dataclass(frozen=True)
class PredictionParams(RuntimeParams):
    """Parameters of the nodes that publish rolling predictions."""

    alpha: float = param(0.25, "smoothing: weight of the newest step's probabilities")
    enter: float = param(0.45, "a new label needs this smoothed score")
    margin: float = param(0.1, "... and must beat the current label by this much")
    threshold: float = param(0.3, "below this best score the state is `no action`")
    top_k: int = param(3, "labels with scores in each prediction")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.smoothing()

    def smoothing(self) -> Smoothing:
        return Smoothing(self.alpha, self.enter, self.margin, self.threshold, self.top_k)


class Loaded(NamedTuple):
    """A checkpoint ready to run: the model in eval mode, the names of its outputs (its classes,
    then ``no action`` when it has an open-set rule) and its input spec."""

    model: Any
    classes: tuple[str, ...]
    spec: InputSpec


def load_model(params: RuntimeParams) -> Loaded:
    """Load ``params.checkpoint`` (a path or a shipped name) on ``params.device``."""
    import torch

    from respike.models.checkpoint import load_checkpoint, resolve_checkpoint

    torch.set_num_threads(params.threads)
    loaded = load_checkpoint(resolve_checkpoint(params.checkpoint), map_location=params.device)
    outputs = loaded.config.output_names(loaded.class_names)  # with `no action` when it has one
    return Loaded(loaded.model.eval(), outputs, loaded.input_spec)


class CheckpointWatch:
    """Tells when a checkpoint file was written (it appeared, or its modification time or size
    changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def changed(self) -> bool:
        """Whether the file changed since the last call (or since the watch began)."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        return True

    def __str__(self) -> str:
        return str(self.path)


class StepInputs:
    """Turns a ``residual`` or ``events`` message into SNN steps ``(T, C, h, w)`` float32."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self._binners: dict[tuple[int, int, int], Any] = {}

    def warm_up(self) -> None:
        """Compile (or load) the binning kernel before the first events message needs it."""
        if self.spec.snn_input == "events":
            from respike.events.warmup import warm_up

            warm_up(self.spec.event_frames((self.spec.snn_width, self.spec.snn_height)))

    def __call__(self, message: Message) -> np.ndarray:
        if message.kind == "residual":
            return self._residual(message)
        if message.kind == "events":
            return self._events(message)
        raise ValueError(
            f"a {message.kind!r} message is not an SNN input; expected residual or events"
        )

    def _residual(self, message: Message) -> np.ndarray:
        residual = message.arrays["residual"]
        expected = (self.spec.snn_channels, *self.spec.snn_size)
        if residual.shape != expected or residual.dtype != np.float32:
            raise ValueError(
                f"residual of shape {residual.shape} {residual.dtype}; the checkpoint expects {expected} float32 "
                "(set the residual node's width, height and color to the model's input)"
            )
        key_residual = kinds.Residual.read(message).key_residual
        if key_residual != self.spec.key_residual:
            raise ValueError(
                f"residual with key_residual={key_residual!r}; the checkpoint was trained on "
                f"{self.spec.key_residual!r} (set the residual node's key_residual to it)"
            )
        return residual[None].copy()  # received buffers are read-only; torch wants its own

    def _events(self, message: Message) -> np.ndarray:
        if self.spec.snn_input != "events":
            raise ValueError(f"the checkpoint takes {self.spec.snn_input} input, not events")
        events = message.arrays["events"]
        meta = kinds.Events.read(message)
        sensor = (meta.width, meta.height)
        start = meta.window_start
        if start is None:
            start = int(events["t"][0]) if len(events) else 0
        end = meta.window_end
        if end is None:
            end = int(events["t"][-1]) + 1 if len(events) else start + 1
        bins = max(1, round((end - start) / self.spec.time_bin_us))
        key = (*sensor, bins)
        if key not in self._binners:
            self._binners[key] = self.spec.event_frames(sensor, bins)
        return self._binners[key](events, start, max(end, start + 1))


def black_keyframe(spec: InputSpec) -> Message:
    """A black key frame at the ANN's input size, for warming a node up along the real path
    (the first conversion imports OpenCV and the ANN module: time no real frame should wait)."""
    frame = np.zeros((spec.keyframe_height, spec.keyframe_width, 3), dtype=np.uint8)
    return Message("warm-up/keyframes", "frame", now_us(), {"frame": frame}, {})


def keyframe_input(message: Message, spec: InputSpec) -> Any:
    """A key-frame message's RGB frame as the ANN's ``(1, 3, Hk, Wk)`` tensor."""
    import torch

    from respike.models.ann import keyframe_tensor

    size = (spec.keyframe_width, spec.keyframe_height)
    return torch.from_numpy(keyframe_tensor(message.arrays["frame"], size, "rgb"))[None]


def ann_maps(message: Message, widths: tuple[int, ...]) -> list[Any]:
    """A ``keyframe`` node's ``features`` message as the ANN's stage maps ``(1, C_i, h, w)``;
    ValueError naming the message when a stage is missing or has other than ``widths[i]``
    channels."""
    import torch

    maps = []
    for i, width in enumerate(widths, start=1):
        array = message.arrays.get(f"stage{i}")
        if array is None or array.ndim != 3 or array.shape[0] != width:
            shape = None if array is None else array.shape
            raise ValueError(
                f"{message.topic}: key-frame features stage{i} has shape {shape}; "
                f"expected ({width}, h, w) from this checkpoint's ANN"
            )
        # torch.tensor copies: a received message's buffers are read-only
        maps.append(torch.tensor(array, dtype=torch.float32)[None])
    return maps


class KeyframeAligner(Generic[C, S]):
    """Pairs each step with the context of its key frame, in step order.

    ``add_context(key, context)`` and ``add_step(key, step)`` return the steps now ready, as
    ``(step, context, new_segment)``. A step whose key frame has not arrived waits (at most
    ``max_pending`` steps); steps whose key frame was lost are dropped once a later key frame
    arrives, and counted. A ``None`` key means "the latest key frame" (sources without indices).
    """

    def __init__(self, keep: int = 8, max_pending: int = 64) -> None:
        self._contexts: OrderedDict[int | None, tuple[int, C]] = OrderedDict()
        self._generation = 0
        self._pending: deque[tuple[int | None, S]] = deque()
        self._keep = keep
        self._max_pending = max_pending
        self._current = -1
        self._latest: int | None = None
        self.dropped = 0

    def add_context(self, key: int | None, context: C) -> list[tuple[S, C, bool]]:
        self._generation += 1
        self._contexts[key] = (self._generation, context)
        self._contexts.move_to_end(key)
        self._latest = key
        while len(self._contexts) > self._keep:
            self._contexts.popitem(last=False)
        return self._release(newest=key)

    def add_step(self, key: int | None, step: S) -> list[tuple[S, C, bool]]:
        self._pending.append((key, step))
        while len(self._pending) > self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        return self._release(newest=None)

    def _release(self, newest: int | None) -> list[tuple[S, C, bool]]:
        ready = []
        while self._pending:
            key, step = self._pending[0]
            lookup = self._latest if key is None else key
            if self._contexts and lookup in self._contexts:
                self._pending.popleft()
                generation, context = self._contexts[lookup]
                ready.append((step, context, generation != self._current))
                self._current = generation
            elif key is not None and newest is not None and key < newest:
                self._pending.popleft()  # its key frame never came; a later one did
                self.dropped += 1
            else:
                break
        return ready


class PredictionPublisher:
    """Rolls per-step probabilities into predictions and publishes them with latency and energy."""

    def __init__(
        self, node: Node, classes: tuple[str, ...], smoothing: Smoothing, keyframe_interval: int
    ) -> None:
        self.node = node
        self.classes = classes
        self.smoothing = smoothing
        self.keyframe_interval = keyframe_interval
        self._rolling: RollingState | None = None

    def publish(
        self,
        step: Message,
        probs: np.ndarray,
        compute_ms: float,
        energy_pj: float,
        keyframe_pj: float,
        snn_steps: int | None = None,
        ann_passes: int | None = None,
    ) -> None:
        prediction, self._rolling = roll(probs, self._rolling, self.classes, self.smoothing)
        meta = kinds.read_step(step)
        now = now_us()
        latency = {
            **(meta.latency_ms or {}),
            "upstream": (step.pt - step.t) / 1000,
            "hop": max(0.0, (now - step.pt) / 1000 - compute_ms),
            self.node.kind: compute_ms,
            "e2e": (now - step.t) / 1000,
        }
        energy_uj = (energy_pj + keyframe_pj / self.keyframe_interval) / 1e6
        published = kinds.Prediction(
            label=prediction.label,
            topk=[list(item) for item in prediction.topk],
            raw_label=prediction.raw_label,
            state="changed" if prediction.changed else "steady",
            latency_ms={k: round(float(v), 3) for k, v in latency.items()},
            energy_uj=round(energy_uj, 3),
            snn_steps=snn_steps,
            ann_passes=ann_passes,
            truth=meta.action,
        )
        self.node.publish("predictions", published, step.t, {"probs": probs.astype(np.float32)})
