"""Benchmark of teach mode: k-shot accuracy and fit times on a base checkpoint's frozen features.

Each task gives every class a pool of example windows (``--window`` seconds) to teach from and
another to test on, plus background windows (a performer holding still, or nobody in view:
:mod:`respike.synthetic.outliers`, through the same kernels). For ``k`` in ``--shots``, each of
``--trials`` draws teaches ``k`` windows per class and ``k`` background windows
(:func:`respike.models.teach.teach`), then predicts every test window: the mean of its steps'
probabilities, the best output wins. ``accuracy`` counts ``no action`` as wrong;
``closed_accuracy`` is the best taught class's; ``background_no_action`` is the share of
held-out background windows called ``no action``.

Tasks (``--task``, repeatable; real data only from ``--shared``):

- ``synthetic``: the 11 DVS-Gesture-like synthetic classes, which the ``actions`` base never
  trained on; teach windows from validation seeds, test windows from test seeds on the
  held-out backgrounds. ``--select`` instead sweeps the head's shrinkage with teach and test
  windows both from validation seeds (how the default was chosen).
- ``dvs``: the 10 real DVS Gesture recordings (one class each, about 1.45 s long) through
  ``gestures-dvs``; windows of ``--dvs-window`` seconds, teach on those of the first half of
  each recording, test on the second half.
- ``videos``: the 4 real clips of ``../shared/data/videos`` (one "class" each) through
  ``actions``; first half / second half.

    python bench/teach.py --task synthetic --json
    python bench/teach.py --task dvs --task videos --shared ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from respike.models import load_checkpoint
from respike.models.checkpoint import Checkpoint, resolve_checkpoint
from respike.models.datasets import SyntheticOutliers, open_dataset
from respike.models.datasets.recordings import DvsGesture
from respike.models.datasets.synthetic import SyntheticActions
from respike.models.evaluation import trained_data_options
from respike.models.teach import (
    Example,
    Segment,
    TeachSettings,
    featurize,
    teach,
    teachable,
    video_examples,
)
from respike.synthetic import HELDOUT_BACKGROUNDS, TRAIN_BACKGROUNDS, class_names

SHARED = Path(
    os.environ.get("RESPIKE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

Pools = dict[str, tuple[list[Example], list[Example]]]
"""Per class (and ``background``): (teach pool, test pool)."""


def window_examples(base: Checkpoint, dataset: Any, indices: Sequence[int], label: str) -> list:
    """Examples of the dataset's samples ``indices``, all labelled ``label``."""
    out = []
    network = teachable(base.model)
    for i in indices:
        sample = dataset[i]
        features = featurize(network, sample.keyframes, sample.steps)
        out.append(Example(label, f"{type(dataset).__name__}[{i}]", features))
    return out


def synthetic_pools(base: Checkpoint, segments: int, pool: int, select: bool) -> Pools:
    """Gesture classes (never seen by the ``actions`` base) and background, teach/test pools."""
    options = trained_data_options(base)
    names = class_names("gesture")
    test_split = "val" if select else "test"

    def clips(split: str, seed: int) -> SyntheticActions:
        data = open_dataset(
            f"synthetic?split={split}&clips={pool * len(names)}&seed={seed}",
            base.input_spec,
            options=replace(options, segments=segments),
            class_names=names,
        )
        assert isinstance(data, SyntheticActions)
        return data

    teach_data, test_data = clips("val", 3), clips(test_split, 4)
    backgrounds = HELDOUT_BACKGROUNDS if test_split == "test" else TRAIN_BACKGROUNDS
    pools: Pools = {}
    for c, name in enumerate(names):
        idx = [i for i in range(len(teach_data)) if i % len(names) == c]
        pools[name] = (
            window_examples(base, teach_data, idx, name),
            window_examples(base, test_data, idx, name),
        )
    pools["background"] = background_pools(base, teach_data, segments, pool, backgrounds)
    return pools


def background_pools(
    base: Checkpoint, like: SyntheticActions, segments: int, pool: int, test_backgrounds: tuple
) -> tuple[list[Example], list[Example]]:
    """Background windows rendered in ``like``'s scene: teach on validation seeds, test on
    test seeds with ``test_backgrounds``."""

    def outliers(split: str, backgrounds: tuple[str, ...]) -> SyntheticOutliers:
        return SyntheticOutliers(
            base.input_spec,
            split=split,
            clips=pool,
            segments=segments,
            seed=5,
            scene=replace(like.scene, backgrounds=backgrounds),
            dvs=like.dvs,
            kinds=("still", "empty"),
        )

    teach_set = outliers("val", TRAIN_BACKGROUNDS)
    test_set = outliers("test", test_backgrounds)
    return (
        window_examples(base, teach_set, range(pool), "background"),
        window_examples(base, test_set, range(pool), "background"),
    )


def dvs_pools(base: Checkpoint, root: Path, segments: int, pool: int) -> Pools:
    """Each real recording one class: windows of its first half to teach, second half to test."""
    data = open_dataset(
        f"dvsgesture:{root}?windows=all&split=all&segments={segments}", base.input_spec
    )
    assert isinstance(data, DvsGesture)
    by_recording: dict[int, list[int]] = {}
    for i in range(len(data)):
        by_recording.setdefault(data.window(i)[0], []).append(i)
    pools: Pools = {}
    for r, idx in sorted(by_recording.items()):
        half = len(idx) // 2
        name = f"recording{r + 1}:{data.class_names[data.labels[idx[0]]]}"
        pools[name] = (
            window_examples(base, data, idx[:half][:pool], name),
            window_examples(base, data, idx[half:][:pool], name),
        )
    like = open_dataset("synthetic?clips=1", base.input_spec, options=trained_data_options(base))
    assert isinstance(like, SyntheticActions)
    pools["background"] = background_pools(base, like, segments, pool, HELDOUT_BACKGROUNDS)
    return pools


def video_pools(base: Checkpoint, folder: Path, window: float, pool: int) -> Pools:
    """Each real clip one "class": windows of its first half to teach, second half to test."""
    from respike.recorders.video import frame_count

    pools: Pools = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        frames, fps = frame_count(path)
        middle = frames / fps / 2
        name = path.stem
        first = video_examples(teachable(base.model), path, [Segment(name, 0.0, middle)], window)
        second = video_examples(
            teachable(base.model), path, [Segment(name, middle, frames / fps)], window
        )
        pools[name] = (first[:pool], second[:pool])
    like = open_dataset("synthetic?clips=1", base.input_spec, options=trained_data_options(base))
    assert isinstance(like, SyntheticActions)
    segments = max(1, round(window * 30 / base.input_spec.keyframe_interval))
    pools["background"] = background_pools(base, like, segments, pool, HELDOUT_BACKGROUNDS)
    return pools


def run_shots(
    base: Checkpoint, pools: Pools, shots: int, trials: int, settings: TeachSettings
) -> dict[str, Any]:
    """Teach ``shots`` windows per class ``trials`` times; accuracy on every test window."""
    accuracy, closed, background, fits = [], [], [], []
    classes = [name for name in pools if name != "background"]
    for trial in range(trials):
        rng = np.random.default_rng([trial, shots])
        chosen = []
        for teach_pool, _ in pools.values():
            picks = rng.choice(len(teach_pool), size=min(shots, len(teach_pool)), replace=False)
            chosen += [teach_pool[i] for i in picks]
        taught = teach(base, chosen, settings)
        fits.append(taught.fit_seconds)
        order = [taught.class_names.index(name) for name in classes]
        right = right_closed = total = 0
        for name in classes:
            for example in pools[name][1]:
                probs = window_probs(taught.model, example)
                total += 1
                right += int(np.argmax(probs) == order[classes.index(name)])
                right_closed += int(np.argmax(probs[:-1]) == order[classes.index(name)])
        accuracy.append(right / total)
        closed.append(right_closed / total)
        held_out = pools["background"][1]
        background.append(
            float(
                np.mean(
                    [np.argmax(window_probs(taught.model, e)) == len(classes) for e in held_out]
                )
            )
        )
    return {
        "shots": shots,
        "trials": trials,
        "classes": len(classes),
        "accuracy": float(np.mean(accuracy)),
        "accuracy_min": float(np.min(accuracy)),
        "closed_accuracy": float(np.mean(closed)),
        "background_no_action": float(np.mean(background)),
        "fit_seconds_max": float(np.max(fits)),
    }


def window_probs(model: Any, example: Example) -> np.ndarray:
    """The mean over a window's steps of the taught model's output probabilities."""
    with torch.no_grad():
        features = torch.from_numpy(example.features)
        assert model.open_set is not None
        return model.open_set(features, model.head(features)).exp().mean(0).numpy()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", choices=("synthetic", "dvs", "videos"))
    parser.add_argument("--shared", type=Path, default=SHARED, help="../shared/data")
    parser.add_argument("--input", type=Path, help="dvs: a DVS Gesture folder; videos: a folder")
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--pool", type=int, default=8, help="windows per class in each pool")
    parser.add_argument("--window", type=float, default=2.0, help="seconds per example")
    parser.add_argument(
        "--dvs-window",
        type=float,
        default=0.4,
        help="seconds per example of the DVS Gesture recordings (each about 1.45 s long)",
    )
    parser.add_argument("--select", action="store_true", help="synthetic: sweep head shrinkage")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shots = [int(s) for s in args.shots.split(",")]
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_start": os.getloadavg()[0],
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "tasks": {},
    }
    for task in args.task or ["synthetic"]:
        begin = time.perf_counter()
        name = "gestures-dvs" if task == "dvs" else "actions"
        base = load_checkpoint(resolve_checkpoint(name))
        k = base.input_spec.keyframe_interval
        window = args.dvs_window if task == "dvs" else args.window
        segments = max(1, round(window / (base.input_spec.time_bin_us / 1e6) / k))
        if task == "synthetic":
            pools = synthetic_pools(base, segments, args.pool, args.select)
        elif task == "dvs":
            pools = dvs_pools(
                base, args.input or args.shared / "dvs_gesture10", segments, args.pool
            )
        else:
            pools = video_pools(base, args.input or args.shared / "videos", args.window, args.pool)
        featurized = time.perf_counter() - begin
        examples = sum(len(a) + len(b) for a, b in pools.values())
        sweep = (0.1, 0.3, 0.5, 0.7, 0.9) if args.select else (TeachSettings().head_shrinkage,)
        rows = []
        for shrinkage in sweep:
            settings = TeachSettings(head_shrinkage=shrinkage)
            for k_shots in shots:
                row = run_shots(base, pools, k_shots, args.trials, settings)
                rows.append({"head_shrinkage": shrinkage, **row})
                if not args.json:
                    print(f"{task} base={name} shrinkage={shrinkage} {row}", flush=True)
        results["tasks"][task] = {
            "base": name,
            "examples": examples,
            "featurize_seconds_per_example": featurized / max(examples, 1),
            "rows": rows,
        }
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
