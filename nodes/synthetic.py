"""`synthetic`: a live source of rendered actions with their ground-truth labels (no camera needed)."""

from __future__ import annotations

from dataclasses import dataclass

from respike.nodes.base import Node, Pacer, param, register
from respike.stream import kinds
from respike.stream.messages import now_us


@register("synthetic")
class SyntheticNode(Node):
    """Publishes RGB frames of a figure acting out classes in turn, each with its true label.

    Every ``frames`` message carries ``label`` (class index into ``classes``) and ``action``
    (class name) in its metadata, so a pipeline can be scored against the truth live. Frames are
    paced at ``fps`` (``speed`` 0 = as fast as consumers take them).
    """

    @dataclass(frozen=True)
    class Params:
        width: int = param(320, "frame width in pixels")
        height: int = param(240, "frame height in pixels")
        fps: float = param(30.0, "frames per second of the scene clock")
        speed: float = param(1.0, "pacing factor; 0 = as fast as consumers take frames")
        seed: int = param(0, "scene and action-order seed")
        classes: str = param(
            "", "comma-separated class names or groups (gesture, appearance, temporal); empty = all"
        )
        segment_min: float = param(2.0, "shortest action segment in seconds")
        segment_max: float = param(4.0, "longest action segment in seconds")
        framing: str = param("full", "full (whole body) or upper (waist up, like DVS Gesture)")
        count: int = param(0, "frames before `end`; 0 = forever")

        def __post_init__(self) -> None:
            if self.speed < 0 or self.count < 0:
                raise ValueError("speed and count must be ≥ 0")
            if not 0 < self.segment_min <= self.segment_max:
                raise ValueError("segments need 0 < segment_min ≤ segment_max")

    outputs = ("frames",)

    def start(self) -> None:
        from respike.synthetic import GROUPS, ActionStream, SceneConfig, class_names

        names: list[str] = []
        for item in (part.strip() for part in self.params.classes.split(",") if part.strip()):
            names += class_names(item) if item in GROUPS else [item]
        config = SceneConfig(
            width=self.params.width,
            height=self.params.height,
            fps=self.params.fps,
            framing=self.params.framing,
        )
        self._stream = ActionStream(
            config,
            self.params.seed,
            classes=names or None,
            segment_seconds=(self.params.segment_min, self.params.segment_max),
        )
        self._index = 0

    def produce(self) -> float | None:
        if self.params.count and self._index >= self.params.count:
            return None
        if self._index == 0:
            self._pacer = Pacer()
        frame, label, t_s = self._stream.next_frame()
        meta = kinds.Frame(
            index=self._index,
            label=int(label),
            action=self._stream.class_names[label],
            scene_t=round(t_s, 6),
        )
        self.publish("frames", meta, now_us(), {"frame": frame})
        self._index += 1
        if self.params.speed == 0:
            return 0.0
        return self._pacer.delay_until(self._index / self.params.fps / self.params.speed)

    def stats(self) -> dict[str, float]:
        return {"frames": float(self._index)}
