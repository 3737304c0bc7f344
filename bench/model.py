"""Model benchmark: ms per streaming SNN step and per key-frame ANN pass, eager and compiled.

What it measures (issue 5), on the default model (``respike_r18``: SNN 16/32/64/128 channels
on ``--size`` px event frames, full-width ResNet-18 key-frame ANN at 112 px) or the model of
``--checkpoint``, batch 1, in eval mode under ``torch.no_grad``, with ``torch.set_num_threads(1)``:

- ``snn_step``: one :meth:`SpikingResNet.step` (all convolutions, batch norms, LIF cells,
  residual adds) with the state carried from step to step;
- ``snn_convs``: the same network's convolutions alone, each called on the very input it got
  in a real step (captured with hooks), back to back: the floor the step is compared with;
- ``ann_keyframe``: one ANN pass on a key frame (the four stage features);
- ``hybrid_step``: one full :meth:`HybridReSpike.step` (SNN, fusion against cached key-frame
  keys/values, head), mid-segment;
- ``hybrid_arithmetic``: the part of a hybrid step spent inside its convolution, matmul and
  attention kernels (their own time in torch's profiler, eager), and ``hybrid_ratio`` the
  step over it (issue 18's target: at most 2x);
- ``compiled_step``: the hybrid step through its AOTInductor artifact
  (:mod:`respike.models.compiled`, what the model node runs), built into the cache first when
  it is not there (``build_s``), its load time, and its ratio to the same arithmetic;

- ``placements``: the hybrid step and the energy of a prediction with ``late`` and with
  ``inline`` fusion (issue 20), the same weights rebuilt both ways, their steps timed
  interleaved (in-line fusion runs the same blocks, but on the SNN's stage outputs, so the
  stages after them spike differently);

each ``eager`` and, unless ``--no-compile``, through ``torch.compile`` (inductor, static shapes;
compile time reported apart). ``ratio`` is SNN step / convolutions alone (target <= 1.5x with
compile), the median of per-call ratios of a step and its convolutions (eager in both columns)
timed right after it, so that both sides see the same load. Times are medians over ``--steps``
timed calls after warm-up (the machine may be shared: the median resists other load). Inputs
are random event frames (10 % of pixels per polarity active) and a random key frame;
``energy`` counts the work of one prediction on them (:func:`respike.models.measure_energy`;
SNN ACs depend on the spikes, so on the weights: with untrained weights, batch-norm statistics
recomputed on the input, they illustrate the accounting, not a trained model) next to an
ANN-only ``r3d_18`` on a 16-frame clip. Run from the repository root::

    python bench/model.py                  # table on stdout (a few minutes: compilation)
    python bench/model.py --json           # one JSON summary on stdout
    python bench/model.py --size 128 --steps 100 --no-compile
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from respike.models import (
    Clip,
    HybridReSpike,
    InputSpec,
    compiled,
    get_model,
    load_checkpoint,
    measure_energy,
)
from respike.models.checkpoint import resolve_checkpoint
from respike.models.energy import r3d18_reference
from respike.models.fusion import PLACEMENTS
from respike.models.snn import ConvBN, SNNState, SpikingResNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="SNN input size in px (default 64)")
    parser.add_argument("--steps", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--model", default="respike_r18", help="registered model name")
    parser.add_argument(
        "--checkpoint", help="benchmark this checkpoint's model (path or shipped name)"
    )
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile column")
    parser.add_argument(
        "--no-compiled-step", action="store_true", help="no AOTInductor compiled-step row"
    )
    parser.add_argument(
        "--cache", type=Path, help="cache root of compiled steps (default: $RESPIKE_CACHE)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> HybridReSpike:
    if args.checkpoint is not None:
        return load_checkpoint(resolve_checkpoint(args.checkpoint)).model
    spec = InputSpec(snn_size=(args.size, args.size))
    return get_model(args.model, num_classes=101, input_spec=spec).eval()


def calibrate_batchnorm(model: HybridReSpike, clip: Clip) -> None:
    """Recompute every batch norm's statistics on ``clip`` (cumulative average, one pass).

    An untrained network with fresh statistics (mean 0, variance 1) barely spikes on sparse
    events; statistics of the actual input normalise every layer as training would, so the
    measured spike counts (and ACs) are those of a network in its working range.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(clip)
    model.eval()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def median_ms(fn: Callable[[], object], steps: int, warmup: int) -> float:
    return 1e3 * statistics.median(interleaved_times([fn], steps, warmup)[0])


def interleaved_times(
    fns: list[Callable[[], object]], steps: int, warmup: int
) -> list[list[float]]:
    """Seconds of each call of each function, calls interleaved so all see the same load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for fn, log in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            log.append(time.perf_counter() - start)
    return times


def step_vs_convs(
    step: Callable[[], object], convs: Callable[[], object], steps: int, warmup: int
) -> dict[str, float]:
    """Median ms of the SNN step and of its convolutions, and the median of their paired ratios.

    Each ratio compares a step with the convolutions timed right after it, so a burst of load
    from other processes on a shared machine hits both sides of the ratio alike.
    """
    step_s, convs_s = interleaved_times([step, convs], steps, warmup)
    return {
        "snn_step": 1e3 * statistics.median(step_s),
        "snn_convs": 1e3 * statistics.median(convs_s),
        "ratio": statistics.median(a / b for a, b in zip(step_s, convs_s, strict=True)),
    }


def capture_conv_inputs(
    snn: SpikingResNet, x: torch.Tensor, state: SNNState
) -> list[tuple[ConvBN, torch.Tensor]]:
    """Every convolution of one SNN step (with its batch norm folded in, as inference runs
    it) with the input it received."""
    pairs: list[tuple[ConvBN, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, ConvBN)
        pairs.append((module, inputs[0].clone()))

    handles = [m.register_forward_pre_hook(hook) for m in snn.modules() if isinstance(m, ConvBN)]
    snn.step(x, state)
    for h in handles:
        h.remove()
    return pairs


def run_convs(pairs: list[tuple[ConvBN, torch.Tensor]]) -> None:
    """The step's convolutions alone: the same folded weights, biases and inputs."""
    for block, inp in pairs:
        weight, bias = block.folded()
        F.conv2d(inp, weight, bias, block.conv.stride, block.conv.padding)


ARITHMETIC_OPS = (
    "aten::_slow_conv2d_forward",
    "aten::mkldnn_convolution",
    "aten::thnn_conv2d",
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)
"""The kernels that do a step's convolutions, matmuls and attention: its arithmetic."""


def arithmetic_ms(step: Callable[[], object], steps: int) -> float:
    """Milliseconds per call that ``step`` spends inside :data:`ARITHMETIC_OPS` kernels (their
    own time, from torch's profiler): what a step would cost with no other op and no Python."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    own_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ARITHMETIC_OPS)
    return own_us / 1e3 / steps


class Stepper:
    """Calls a step function repeatedly, carrying its state (as a stream does)."""

    def __init__(
        self, fn: Callable[[torch.Tensor, Any], tuple[Any, Any]], x: torch.Tensor, state: Any
    ):
        self.fn, self.x, self.state = fn, x, state

    def __call__(self) -> None:
        _, self.state = self.fn(self.x, self.state)


def compiled_step_times(
    model: HybridReSpike, x: torch.Tensor, state: Any, args: argparse.Namespace, arithmetic: float
) -> dict[str, Any]:
    """The hybrid step through its AOTInductor artifact (:mod:`respike.models.compiled`): built
    into ``--cache`` unless it is there (build seconds reported), loaded, timed as the eager
    step is, and its ratio to the same arithmetic."""
    if args.no_compiled_step:
        return {}
    cache = args.cache / "compiled-steps" if args.cache else None
    result: dict[str, Any] = {"cached": compiled.artifact_path(model, cache).is_file()}
    if not result["cached"]:
        start = time.perf_counter()
        compiled.build(model, cache)
        result["build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    step = compiled.load(model, cache)
    result["load_s"] = time.perf_counter() - start
    assert step is not None
    model.use_steps(step)
    try:
        result["hybrid_step"] = median_ms(Stepper(model.step, x, state), args.steps, args.warmup)
        with model.eager():
            eager_logits, _ = model.step(x, state)
        compiled_logits, _ = model.step(x, state)
    finally:
        model.use_steps(None)
    assert step.calls > 0, "the timed steps ran the artifact"
    result["max_logit_difference"] = float((compiled_logits - eager_logits).abs().max())
    result["hybrid_ratio"] = result["hybrid_step"] / arithmetic
    return result


def placement_rows(
    model: HybridReSpike, x: torch.Tensor, frame: torch.Tensor, clip: Clip, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Eager step time (interleaved) and energy per prediction of ``model``'s weights with late
    and with in-line fusion."""
    models = {
        placement: model.rebuilt(
            replace(model.config, fusion=replace(model.config.fusion, placement=placement))
        )
        for placement in PLACEMENTS
    }
    steppers = []
    for variant in models.values():
        state = variant.set_keyframe(frame)
        _, state = variant.step(x, state)
        steppers.append(Stepper(variant.step, x, state))
    times = interleaved_times(steppers, args.steps, args.warmup)
    rows = {}
    for (placement, variant), seconds in zip(models.items(), times, strict=True):
        prediction = measure_energy(variant, clip).prediction
        rows[placement] = {
            "hybrid_step_ms": 1e3 * statistics.median(seconds),
            "energy_per_prediction_pj": prediction.energy_pj(),
            "snn_acs": float(prediction.acs.get("snn", 0)),
            "fusion_macs": float(prediction.macs.get("fusion", 0)),
        }
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build(args)
    if model.snn is None or model.ann is None:
        raise SystemExit("bench/model.py needs a hybrid model (both branches)")
    spec = model.config.input_spec
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, spec.snn_channels, *spec.snn_size, generator=gen) < 0.1).float()
    frame = torch.randn(1, 3, *spec.keyframe_size, generator=gen)
    k = spec.keyframe_interval
    clip = Clip(
        frame.unsqueeze(1).repeat(1, 2, 1, 1, 1),
        (torch.rand(1, 2 * k, spec.snn_channels, *spec.snn_size, generator=gen) < 0.1).float(),
    )
    if args.checkpoint is None:
        calibrate_batchnorm(model, clip)
    snn = model.snn
    results: dict[str, Any] = {"eager": {}, "compiled": {}, "compile_s": {}}
    with torch.no_grad():
        _, snn_state = snn.step(x)
        pairs = capture_conv_inputs(snn, x, snn_state)
        state = model.set_keyframe(frame)
        _, state = model.step(x, state)

        def convs() -> None:
            run_convs(pairs)

        def ann() -> None:
            model.encode_keyframe(frame)

        eager = results["eager"]
        eager.update(step_vs_convs(Stepper(snn.step, x, snn_state), convs, args.steps, args.warmup))
        eager["ann_keyframe"] = median_ms(lambda: model.ann(frame), args.steps, args.warmup)
        eager["keyframe_with_kv"] = median_ms(ann, args.steps, args.warmup)
        eager["hybrid_step"] = median_ms(Stepper(model.step, x, state), args.steps, args.warmup)
        eager["hybrid_arithmetic"] = arithmetic_ms(Stepper(model.step, x, state), args.steps)
        eager["hybrid_ratio"] = eager["hybrid_step"] / eager["hybrid_arithmetic"]
        results["placements"] = placement_rows(model, x, frame, clip, args)
        results["compiled_step"] = compiled_step_times(
            model, x, state, args, eager["hybrid_arithmetic"]
        )

        if not args.no_compile:
            compiled = results["compiled"]
            compile_s = results["compile_s"]
            snn_fn = torch.compile(snn.step, dynamic=False)
            ann_fn = torch.compile(model.ann, dynamic=False)
            for name, fn, call in (
                ("snn_step", snn_fn, lambda f: f(x, snn_state)),
                ("ann_keyframe", ann_fn, lambda f: f(frame)),
            ):
                start = time.perf_counter()
                call(fn)
                compile_s[name] = time.perf_counter() - start
            compiled.update(
                step_vs_convs(Stepper(snn_fn, x, snn_state), convs, args.steps, args.warmup)
            )
            compiled["ann_keyframe"] = median_ms(lambda: ann_fn(frame), args.steps, args.warmup)
            model.enable_compile()
            start = time.perf_counter()
            model.step(x, state)
            compile_s["hybrid_step"] = time.perf_counter() - start
            compiled["hybrid_step"] = median_ms(
                Stepper(model.step, x, state), args.steps, args.warmup
            )
            model.enable_compile(False)

    report = measure_energy(model, clip)
    reference = r3d18_reference(frames=16, size=spec.keyframe_size)
    results["energy"] = {
        "per_prediction": report.prediction.to_dict(),
        "per_step": report.step.to_dict(),
        "per_keyframe": report.keyframe.to_dict(),
        "per_16_step_clip_pj": report.clip(16).energy_pj(),
        "r3d_18_16_frame_clip": reference.to_dict(),
    }
    results["config"] = {
        "model": str(args.checkpoint) if args.checkpoint else args.model,
        "snn_size": list(spec.snn_size),
        "keyframe_size": list(spec.keyframe_size),
        "keyframe_interval": k,
        "snn_widths": list(model.config.snn.widths),
        "ann_widths": list(model.config.ann.widths),
        "fusion_stages": list(model.config.fusion.stages),
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return results


def print_table(results: dict[str, Any]) -> None:
    cfg = results["config"]
    print(
        f"model {cfg['model']}: SNN {cfg['snn_size'][0]} px {cfg['snn_widths']}, "
        f"ANN {cfg['keyframe_size'][0]} px {cfg['ann_widths']}, K={cfg['keyframe_interval']}, "
        f"{cfg['threads']} thread, median of {cfg['steps']}"
    )
    print(f"{'ms':>22} {'eager':>9} {'compiled':>9}")
    for key in (
        "snn_step",
        "snn_convs",
        "ratio",
        "ann_keyframe",
        "hybrid_step",
        "hybrid_arithmetic",
        "hybrid_ratio",
    ):
        e = results["eager"].get(key)
        c = results["compiled"].get(key)
        fmt = (lambda v: f"{v:9.2f}x") if key == "ratio" else (lambda v: f"{v:9.2f} ")
        print(
            f"{key:>22} {fmt(e) if e is not None else '':>10}{fmt(c) if c is not None else '':>10}"
        )
    if results["compile_s"]:
        times = ", ".join(f"{k} {v:.0f} s" for k, v in results["compile_s"].items())
        print(f"compile time: {times}")
    step = results["compiled_step"]
    if step:
        built = f"built in {step['build_s']:.0f} s, " if "build_s" in step else "from the cache, "
        print(
            f"compiled step (AOTInductor, {built}loaded in {step['load_s'] * 1e3:.0f} ms): "
            f"hybrid_step {step['hybrid_step']:.2f} ms, {step['hybrid_ratio']:.2f}x the "
            f"arithmetic, logits within {step['max_logit_difference']:.1e} of eager"
        )
    for placement, row in results["placements"].items():
        print(
            f"{placement} fusion: hybrid_step {row['hybrid_step_ms']:.2f} ms (eager), "
            f"{row['energy_per_prediction_pj'] / 1e6:.2f} uJ a prediction"
        )
    energy = results["energy"]
    pred = energy["per_prediction"]
    macs, acs = sum(pred["macs"].values()), sum(pred["acs"].values())
    print(
        f"energy per prediction: {pred['energy_pj'] / 1e6:.1f} uJ "
        f"(MACs {macs / 1e6:.1f} M, ACs {acs / 1e6:.2f} M); "
        f"16-step clip {energy['per_16_step_clip_pj'] / 1e6:.0f} uJ vs r3d_18 "
        f"{energy['r3d_18_16_frame_clip']['energy_pj'] / 1e6:.0f} uJ"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
