"""Benchmark of the open-set rule: `no action` on what a model does not know, beside an alternative.

For a checkpoint with a rule (``respike calibrate``), on the same steps:

- **rule**: the checkpoint's Gaussian discriminant on per-step statistics
  (:mod:`respike.models.open_set`), threshold at its calibrated quantile;
- **energy**: the energy score of Liu et al. 2020, ``-logsumexp(logits)`` of the plain class
  logits, threshold at the same quantile of the same validation steps (no outlier data needed).

Reported: the share of known validation steps rejected (what the threshold is set to), the
held-out synthetic test accuracy with rejections counted wrong next to the closed-set accuracy,
the share of synthetic outlier steps rejected per kind, and the share of steps of ``--ood``
data (default: every whole window of the real clips in ``../shared/data/videos``) rejected.

    python bench/open_set.py --checkpoint actions --json
    python bench/open_set.py --ood "videos:clips/?windows=all"
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
from respike.models.calibration import step_statistics, with_rule
from respike.models.checkpoint import resolve_checkpoint
from respike.models.datasets import SyntheticActions, SyntheticOutliers, open_dataset
from respike.models.evaluation import trained_data_options

SHARED = Path(
    os.environ.get("RESPIKE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def energy(logits: np.ndarray) -> np.ndarray:
    """The energy score (higher: less like the classes) of plain class logits."""
    peak = logits.max(-1, keepdims=True)
    return -(peak[..., 0] + np.log(np.exp(logits - peak).sum(-1)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="actions")
    parser.add_argument("--ood", default=f"videos:{SHARED / 'videos'}?windows=all")
    parser.add_argument("--val-clips", type=int, default=96)
    parser.add_argument("--test-clips", type=int, default=190)
    parser.add_argument("--outlier-clips", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    begin = time.perf_counter()
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint))
    rule = loaded.model.open_set
    if rule is None:
        raise SystemExit(f"{args.checkpoint} has no open-set rule (respike calibrate fits one)")
    plain = with_rule(loaded.model, None)
    options = trained_data_options(loaded)
    names = loaded.class_names

    def known(split: str, clips: int, seed: int) -> SyntheticActions:
        data = open_dataset(
            "synthetic",
            loaded.input_spec,
            options=replace(options, split=split, clips=clips, seed=seed),
            class_names=names,
        )
        assert isinstance(data, SyntheticActions)
        return data

    val, test = known("val", args.val_clips, 0), known("test", args.test_clips, 1)
    outliers = SyntheticOutliers(
        loaded.input_spec,
        split="val",
        clips=args.outlier_clips,
        segments=val.segments,
        scene=val.scene,
        dvs=val.dvs,
    )
    ood = open_dataset(args.ood, loaded.input_spec, options=options)
    runs = {
        name: step_statistics(plain, data)
        for name, data in (("val", val), ("test", test), ("outliers", outliers), ("ood", ood))
    }

    def rule_scores(run: Any) -> np.ndarray:
        with torch.no_grad():
            return rule.score(torch.from_numpy(run.stats)).numpy()  # > 0: no action

    quantile = rule.config.quantile or 0.99
    energy_threshold = float(np.quantile(energy(runs["val"].outputs), quantile))
    methods = {
        "rule": rule_scores,
        "energy": lambda run: energy(run.outputs) - energy_threshold,
    }
    k = loaded.input_spec.keyframe_interval
    results: dict[str, Any] = {}
    for method, score in methods.items():
        test_run = runs["test"]
        rejected = score(test_run)[:, k - 1 :: k].mean(1) > 0  # the clip's segment ends
        closed = test_run.outputs[:, k - 1 :: k].mean(1).argmax(-1) == test_run.labels
        outlier_scores = score(runs["outliers"]) > 0
        results[method] = {
            "known_val_steps_rejected": float((score(runs["val"]) > 0).mean()),
            "test_closed_accuracy": float(closed.mean()),
            "test_accuracy": float((closed & ~rejected).mean()),
            "outlier_steps_rejected": {
                kind: float(outlier_scores[runs["outliers"].labels == i].mean())
                for i, kind in enumerate(outliers.class_names)
            },
            "ood_steps_rejected": float((score(runs["ood"]) > 0).mean()),
        }
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_start": os.getloadavg()[0],
        "command": " ".join(["python", *sys.argv]),
        "checkpoint": str(loaded.path),
        "ood": args.ood,
        "ood_steps": int(runs["ood"].stats.shape[0] * runs["ood"].stats.shape[1]),
        "quantile": quantile,
        "methods": results,
        "seconds": time.perf_counter() - begin,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for method, row in results.items():
            print(f"{method}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
