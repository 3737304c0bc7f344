"""The ``respike train`` and ``respike eval`` command lines: flags to configs, and the runs.

Every flag defaults to ``None``, "not given": a run's config is its dataclasses' defaults
(:class:`~respike.models.training.TrainConfig`, :class:`~respike.events.inputs.InputSpec`,
:class:`~respike.models.snn.SNNConfig`, ...) with the given flags replaced
(:func:`train_config_from_args`), so each default has one home and the help texts read it
from there. ``respike`` (``nodes/cli.py``) adds these commands; ``python -m respike.models.cli
train|eval ...`` runs them without it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

import cv2
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from respike.events.inputs import InputSpec, KeyResidual, SNNInput, parse_size
from respike.models.adaptive import AdaptiveSettings
from respike.models.ann import ANNConfig
from respike.models.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from respike.models.datasets import (
    TRAINING_SCENE,
    DataOptions,
    DvsRandomisation,
    open_dataset,
    parse_data_spec,
)
from respike.models.evaluation import (
    ablation_paths,
    confusion_image,
    evaluate_checkpoint,
    format_report,
    trained_data_options,
)
from respike.models.fusion import PLACEMENTS, FusionConfig
from respike.models.hybrid import MODES
from respike.models.neurons import LIFConfig
from respike.models.quant import FLOOR_QUANTILE, MEMBRANE_BITS, WEIGHT_BITS, quantized
from respike.models.registry import list_models
from respike.models.snn import SNNConfig
from respike.models.training import TrainConfig, train
from respike.synthetic import GROUPS, class_names
from respike.synthetic.config import Framing

#: The synthetic datasets' scene (:class:`~respike.models.datasets.SyntheticActions`' default:
#: 160x120 at 30 fps, the 4:3 of the demo's camera), which ``--scene-size``, ``--fps`` and
#: ``--framing`` change.

# Which flags set which config's fields: a tuple where the flag's dest is the field's name, a
# mapping from dest to field name where it is not.
_RUN_FIELDS = (
    "data",
    "out",
    "val_data",
    "model",
    "mode",
    "classes",
    "segments",
    "clips",
    "val_clips",
    "resample",
    "augment",
    "cache_dir",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "step_loss",
    "seed",
    "workers",
    "threads",
    "save_every",
    "init",
    "stale_keyframes",
    "stale_gap",
)
_SPEC_FIELDS = (
    "snn_size",
    "snn_input",
    "snn_channels",
    "key_residual",
    "keyframe_size",
    "keyframe_interval",
    "time_bin_us",
)
_SNN_FIELDS = {
    "snn_widths": "widths",
    "snn_blocks": "blocks",
    "snn_stem_stride": "stem_stride",
    "snn_motion": "motion_shifts",
    "snn_motion_delays": "motion_delays",
}
_ANN_FIELDS = {"ann_widths": "widths", "ann_blocks": "blocks"}
_FUSION_FIELDS = {
    "fusion_stages": "stages",
    "fusion_head_dim": "head_dim",
    "fusion_placement": "placement",
}
_SCENE_FIELDS = {"fps": "fps", "framing": "framing"}
_DVS_FIELDS = {
    "dvs_threshold": "threshold_range",
    "dvs_mismatch": "mismatch_range",
    "dvs_noise_hz": "noise_hz_range",
}

Branch = TypeVar("Branch", SNNConfig, ANNConfig)


# --------------------------------------------------------------------------------------------
# Flag values


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _range(text: str) -> tuple[float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH or one value")
    return (parts[0], parts[1])


def _classes(text: str) -> tuple[str, ...]:
    """Comma-separated class names and group names (``temporal``), groups expanded."""
    names: list[str] = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        names += class_names(item) if item in GROUPS else [item]
    return tuple(names)


def _default(config: type, name: str) -> Any:
    """The default of dataclass ``config``'s field ``name``, for help texts."""
    field = next(f for f in fields(config) if f.name == name)
    if field.default_factory is not MISSING:
        return field.default_factory()
    return field.default


def _argument_default(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s keyword argument ``name``, for help texts."""
    return inspect.signature(function).parameters[name].default


def _csv(values: Sequence[object]) -> str:
    return ",".join(str(v) for v in values)


# --------------------------------------------------------------------------------------------
# respike train


def _add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    rows: Sequence[tuple[str, Any, str, object]],
) -> None:
    """Add one flag per row ``(flag, kind, text, default)``, each defaulting to ``None``.

    ``kind`` is a converter, a tuple of choices, or ``bool`` for a switch; the help is ``text``
    and the quoted ``default`` (``None``: nothing to quote), which stays in its config.
    """
    for flag, kind, text, default in rows:
        quoted = "" if default is None else f"default {default}"
        help_text = f"{text} ({quoted})" if text and quoted else text or quoted
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        elif isinstance(kind, tuple):
            parser.add_argument(flag, choices=kind, help=help_text)
        else:
            parser.add_argument(flag, type=kind, help=help_text)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike train`` (a TOML ``--config`` file may set any of them by name).

    Every flag defaults to ``None`` (not given); :func:`train_config_from_args` fills in the
    defaults of the configs, which the help texts quote.
    """
    spec = cast(InputSpec, _default(TrainConfig, "input_spec"))
    snn, ann, fusion, dvs = SNNConfig(), ANNConfig(), FusionConfig(), DvsRandomisation()
    scene = TRAINING_SCENE

    def run(name: str) -> object:
        return _default(TrainConfig, name)

    _add_flags(
        parser,
        [
            ("--config", Path, "TOML file of flag defaults (keys as flags, - or _)", None),
            ("--data", str, "training data SPEC (KIND:PATH or synthetic)", None),
            (
                "--val-data",
                str,
                "validation data SPEC (picks best.pt; synthetic data: its val split); "
                "none: best = last",
                None,
            ),
            ("--out", Path, "output folder", run("out")),
            ("--resume", Path, "continue the run in this folder (or its last.pt)", None),
        ],
    )
    _add_flags(
        parser.add_argument_group("model"),
        [
            ("--model", tuple(list_models()), "", run("model")),
            ("--mode", MODES, "", run("mode")),
            ("--snn-input", get_args(SNNInput), "", spec.snn_input),
            (
                "--snn-channels",
                int,
                "1 grey / 3 RGB residuals; events: 2",
                f"{spec.snn_channels} for {spec.snn_input}",
            ),
            (
                "--key-residual",
                get_args(KeyResidual),
                "a key frame's residual: zero (ReSpike) or minus the previous key frame",
                spec.key_residual,
            ),
            (
                "--snn-size",
                parse_size,
                "SNN input, N or WxH",
                f"{spec.snn_width}x{spec.snn_height}",
            ),
            (
                "--keyframe-size",
                parse_size,
                "N or WxH",
                f"{spec.keyframe_width}x{spec.keyframe_height}",
            ),
            ("--keyframe-interval", int, "K: steps per key frame", spec.keyframe_interval),
            ("--time-bin-us", int, "duration of one step", spec.time_bin_us),
            (
                "--snn-widths",
                _ints,
                f"channels per stage, e.g. {_csv(snn.widths)}; with this or a flag of the "
                "SNN's shape below, the SNN is SNNConfig's defaults and those flags, not the "
                "model's",
                None,
            ),
            ("--snn-blocks", _ints, "blocks per stage, e.g. 1,1,1,1", "1 per stage"),
            ("--snn-stem-stride", int, "", snn.stem_stride),
            (
                "--snn-motion",
                _ints,
                "shifts of the SNN's motion detectors in input pixels, e.g. 1,2,4 (residual input)",
                None,
            ),
            (
                "--snn-motion-delays",
                _ints,
                "delays of the motion detectors in steps, e.g. 1,2",
                _csv(snn.motion_delays),
            ),
            ("--lif-decay", float, "membrane kept per step", f"ReSpike's {snn.lif.decay}"),
            (
                "--ann-widths",
                _ints,
                f"channels per stage, e.g. {_csv(ann.widths)}; with any --ann-* flag, the ANN "
                "is ANNConfig's defaults and those flags, not the model's",
                None,
            ),
            ("--ann-blocks", _ints, "blocks per stage, e.g. 1,1,1,1", "1 per stage"),
            (
                "--fusion-stages",
                _ints,
                f"SNN stages with a fusion block, e.g. {_csv(fusion.stages)}; with any "
                "--fusion-* flag, the fusion is FusionConfig's defaults and those flags, not "
                "the model's",
                None,
            ),
            ("--fusion-head-dim", int, "", fusion.head_dim),
            (
                "--fusion-placement",
                PLACEMENTS,
                "late: fused features go to the head; inline (ReSpike's): they feed the SNN's "
                "next stage",
                fusion.placement,
            ),
        ],
    )
    _add_flags(
        parser.add_argument_group("data"),
        [
            ("--classes", _classes, "synthetic classes: names or groups, comma-separated", None),
            ("--segments", int, "S: key frames per clip", run("segments")),
            ("--clips", int, "synthetic training clips per epoch", run("clips")),
            ("--val-clips", int, "synthetic validation clips", run("val_clips")),
            ("--resample", bool, "new synthetic clips every epoch", None),
            ("--augment", bool, "random event shifts/windows", None),
            ("--cache-dir", Path, "cache synthetic tensors here (.npz)", None),
            ("--scene-size", parse_size, "synthetic render WxH", f"{scene.width}x{scene.height}"),
            ("--framing", get_args(Framing), "", scene.framing),
            ("--fps", float, "synthetic frame rate", scene.fps),
            (
                "--dvs-threshold",
                _range,
                "synthetic events: LOW,HIGH per clip",
                _csv(dvs.threshold_range),
            ),
            ("--dvs-mismatch", _range, "", _csv(dvs.mismatch_range)),
            ("--dvs-noise-hz", _range, "", _csv(dvs.noise_hz_range)),
        ],
    )
    opt = parser.add_argument_group("optimisation")
    _add_flags(
        opt,
        [
            ("--epochs", int, "", run("epochs")),
            ("--batch-size", int, "per process", run("batch_size")),
            ("--lr", float, "", run("lr")),
            ("--weight-decay", float, "", run("weight_decay")),
            ("--step-loss", float, "weight of per-step losses", run("step_loss")),
            ("--seed", int, "", run("seed")),
            ("--workers", int, "DataLoader worker processes", run("workers")),
            ("--threads", int, "torch threads, 0: torch's default", run("threads")),
            ("--save-every", int, "keep epoch-NNN.pt every N epochs", run("save_every")),
            (
                "--stale-keyframes",
                float,
                "share of clips whose segments reuse earlier key frames (key frames on demand)",
                run("stale_keyframes"),
            ),
            (
                "--stale-gap",
                int,
                "a fresh key frame at least every this many segments",
                run("stale_gap"),
            ),
        ],
    )
    opt.add_argument(
        "--init",
        type=Path,
        action="append",
        help="start from this checkpoint's matching weights (repeatable)",
    )
    _add_flags(opt, [("--no-progress", bool, "no progress bar (logs: one line per epoch)", None)])


def apply_config_file(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the values of its ``--config`` TOML file where no flag was given.

    Keys are flag names (``batch-size`` or ``batch_size``); flags on the command line win over
    the file.
    """
    if getattr(args, "config", None) is None:
        return args
    reference = argparse.ArgumentParser()
    add_train_arguments(reference)
    actions = {a.dest: a for a in reference._actions}
    with Path(args.config).open("rb") as f:
        values = tomllib.load(f)
    merged = vars(args).copy()
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in actions or dest == "config":
            raise ValueError(f"{args.config}: unknown key {key!r}")
        if merged.get(dest) is not None:
            continue
        action = actions[dest]
        convert = cast(Callable[[str], Any], action.type or str)
        if isinstance(value, list) and isinstance(action, argparse._AppendAction):
            value = [convert(str(v)) for v in value]
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if action.type is not None and isinstance(value, str | int | float):
            value = convert(str(value))
        merged[dest] = value
    return argparse.Namespace(**merged)


def _given(args: argparse.Namespace, names: Mapping[str, str] | Sequence[str]) -> dict[str, Any]:
    """The flags of ``names`` that were given, keyed by config field (``names``' values)."""
    pairs = names.items() if isinstance(names, Mapping) else ((n, n) for n in names)
    return {field: value for dest, field in pairs if (value := getattr(args, dest)) is not None}


def _input_channels(snn_input: str, base: InputSpec) -> int:
    """An input kind's channels when ``--snn-channels`` is not given: the default spec's of
    that kind (events: :class:`InputSpec`'s 2 polarities; residual: the training default's)."""
    for spec in (base, InputSpec()):
        if spec.snn_input == snn_input:
            return spec.snn_channels
    raise ValueError(f"no default channels for snn_input {snn_input!r}")


def _branch(base: Branch, given: Mapping[str, Any]) -> Branch:
    """``base`` with the ``given`` fields; one block per stage unless blocks are given."""
    widths = given.get("widths", base.widths)
    return replace(base, **{"blocks": (1,) * len(widths), **given})


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the flags of :func:`add_train_arguments` describe.

    Flags not given keep the defaults of :class:`TrainConfig` and the configs it holds; the
    model's SNN, ANN or fusion config is replaced only when one of its flags is given.
    """
    run = _given(args, _RUN_FIELDS)
    if "data" not in run:
        raise ValueError("--data SPEC is required (e.g. synthetic or nmnist:DIR)")
    if "init" in run:
        run["init"] = tuple(run["init"])
    config = TrainConfig(**run)
    spec = _given(args, _SPEC_FIELDS)
    if "snn_input" in spec and "snn_channels" not in spec:
        spec["snn_channels"] = _input_channels(spec["snn_input"], config.input_spec)
    changes: dict[str, Any] = {"input_spec": replace(config.input_spec, **spec)}
    snn = _given(args, _SNN_FIELDS)
    if args.lif_decay is not None:
        snn["lif"] = replace(LIFConfig(), decay=args.lif_decay)
    if snn:
        changes["snn"] = _branch(SNNConfig(), snn)
    if ann := _given(args, _ANN_FIELDS):
        changes["ann"] = _branch(ANNConfig(), ann)
    if fusion := _given(args, _FUSION_FIELDS):
        changes["fusion"] = replace(FusionConfig(), **fusion)
    if parse_data_spec(config.data).kind == "synthetic":
        scene = _given(args, _SCENE_FIELDS)
        if args.scene_size is not None:
            scene.update(width=args.scene_size.width, height=args.scene_size.height)
        changes["scene"] = replace(TRAINING_SCENE, **scene)
        if changes["input_spec"].snn_input == "events":
            changes["dvs"] = replace(DvsRandomisation(), **_given(args, _DVS_FIELDS))
        if config.val_data is None:
            changes["val_data"] = "synthetic?split=val"
    return replace(config, **changes)


def run_train(args: argparse.Namespace) -> int:
    """``respike train``: train, print where the checkpoints went; 0 on success."""
    args = apply_config_file(args)
    config = train_config_from_args(args)
    command = getattr(args, "command_line", None) or " ".join(["respike", *sys.argv[1:]])
    result = train(
        config,
        progress=not args.no_progress and sys.stderr.isatty(),
        resume=args.resume,
        extra={"command": command},
    )
    if result.best is not None:
        print(
            f"trained {len(result.history)} epoch(s) in {result.seconds:.0f} s; best: "
            f"{result.best}, last: {result.last}",
            file=sys.stderr,
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


# --------------------------------------------------------------------------------------------
# respike eval


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike eval CHECKPOINT --data SPEC`` (``None``: not given)."""
    parser.add_argument(
        "checkpoint", help="checkpoint path or shipped name (actions, gestures-dvs, nmnist)"
    )
    parser.add_argument("--data", required=True, help="data SPEC (KIND:PATH or synthetic)")
    parser.add_argument(
        "--ood",
        help="data SPEC holding none of the classes: report how often the model says no action",
    )
    _add_flags(
        parser,
        [
            ("--split", str, "split of the data", _default(DataOptions, "split")),
            ("--seed", int, "synthetic: seed of the test clips", _default(DataOptions, "seed")),
            ("--clips", int, "synthetic: number of clips", _default(DataOptions, "clips")),
            ("--batch-size", int, "", _argument_default(evaluate_checkpoint, "batch_size")),
            (
                "--energy-clips",
                int,
                "clips for energy, 0: skip",
                _argument_default(evaluate_checkpoint, "energy_clips"),
            ),
            ("--confusion", Path, "write the confusion matrix PNG here", None),
            (
                "--ablations",
                bool,
                "also evaluate the NAME-snn and NAME-ann checkpoints next to CHECKPOINT",
                None,
            ),
        ],
    )
    parser.add_argument(
        "--ablation", action="append", help="another checkpoint to compare (repeatable)"
    )
    parser.add_argument(
        "--adaptive",
        nargs="?",
        const="",
        metavar="NAME=VALUE,...",
        help="also stream the clips as the model node does, its work following the scene, with "
        "these settings (the rest the node's defaults: "
        + ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(AdaptiveSettings))
        + ")",
    )
    _add_flags(
        parser,
        [
            ("--threads", int, "torch threads", "torch's"),
            ("--json", bool, "print one JSON object", None),
        ],
    )


def run_eval(args: argparse.Namespace) -> int:
    """``respike eval``: print the report (a table, or JSON with ``--json``); 0 on success."""
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = _given(args, ("split", "seed", "clips", "batch_size", "energy_clips"))
    adaptive = None if args.adaptive is None else AdaptiveSettings.parse(args.adaptive)
    report, about = evaluate_checkpoint(
        args.checkpoint, args.data, ood=args.ood, adaptive=adaptive, **kwargs
    )
    others: dict[str, Path] = {}
    if args.ablations:
        others.update(ablation_paths(Path(about["checkpoint"])))
        if not others:
            raise ValueError(f"no NAME-snn.pt / NAME-ann.pt ablations beside {about['checkpoint']}")
    for item in args.ablation or ():
        others[Path(item).stem] = resolve_checkpoint(item)
    ablations = {
        name: evaluate_checkpoint(path, args.data, **kwargs) for name, path in others.items()
    }
    if args.confusion is not None:
        image = confusion_image(
            report.confusion,
            report.class_names,
            title=f"{Path(about['checkpoint']).stem} on {args.data}",
        )
        args.confusion.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.confusion), image):
            raise OSError(f"{args.confusion}: could not write the PNG")
    if args.json:
        payload = {**about, **report.to_dict()}
        payload["ablations"] = {name: {**a, **r.to_dict()} for name, (r, a) in ablations.items()}
        if args.confusion is not None:
            payload["confusion_png"] = str(args.confusion)
        print(json.dumps(payload))
        return 0
    print(format_report(about, report, ablations))
    return 0


# --------------------------------------------------------------------------------------------
# respike calibrate


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike calibrate CHECKPOINT --out PATH``."""
    parser.add_argument("checkpoint", help="checkpoint path or shipped name")
    parser.add_argument("--out", type=Path, required=True, help="where to write the checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    _add_flags(
        parser,
        [
            ("--clips", int, "training-split clips to fit on", _calibrate_default("clips")),
            ("--val-clips", int, "validation clips", _calibrate_default("val_clips")),
            ("--outlier-clips", int, "outlier clips", _calibrate_default("outlier_clips")),
            ("--quantile", float, "share of known steps kept", _calibrate_default("quantile")),
            ("--shrinkage", float, "covariance shrinkage", _calibrate_default("shrinkage")),
            ("--threads", int, "torch threads", "torch's"),
        ],
    )


def _calibrate_default(name: str) -> Any:
    from respike.models.calibration import calibrate_checkpoint

    return _argument_default(calibrate_checkpoint, name)


def run_calibrate(args: argparse.Namespace) -> int:
    """``respike calibrate``: fit the checkpoint's open-set rule, write it to ``--out``."""
    from respike.models.calibration import calibrate_checkpoint

    if args.out.exists() and not args.force:
        raise ValueError(f"{args.out} exists; pass --force to replace it")
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = _given(args, ("clips", "val_clips", "outlier_clips", "quantile", "shrinkage"))
    loaded, report = calibrate_checkpoint(args.checkpoint, **kwargs)
    extra = {**loaded.extra, "open_set": {**report.to_dict(), "command": args.command_line}}
    save_checkpoint(args.out, loaded.model, loaded.class_names, extra=extra)
    outliers = ", ".join(f"{k} {100 * v:.1f}%" for k, v in report.outliers_rejected.items())
    print(
        f"{args.out}: no action for {100 * report.known_rejected:.1f}% of known validation "
        f"steps and for outliers {outliers} ({report.seconds:.0f} s)"
    )
    return 0


# --------------------------------------------------------------------------------------------
# respike quantize


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike quantize CHECKPOINT --out PATH``."""
    parser.add_argument("checkpoint", help="checkpoint path or shipped name")
    parser.add_argument("--out", type=Path, required=True, help="where to write the checkpoint")
    parser.add_argument(
        "--weight-bits",
        type=int,
        choices=WEIGHT_BITS,
        help="integer width of the SNN's weights (default: float32)",
    )
    parser.add_argument(
        "--membrane-bits",
        type=int,
        choices=MEMBRANE_BITS,
        help="integer width of the SNN's membranes (default: float32)",
    )
    parser.add_argument(
        "--data",
        default="synthetic",
        help="data SPEC whose training split calibrates the membranes' floors (synthetic: "
        "rendered like the checkpoint's training data)",
    )
    parser.add_argument("--clips", type=int, default=32, help="calibration clips")
    parser.add_argument(
        "--floor-quantile",
        type=float,
        default=FLOOR_QUANTILE,
        help="quantile of each cell's float membranes that becomes its floor",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")


def run_quantize(args: argparse.Namespace) -> int:
    """``respike quantize``: the checkpoint with its SNN branch at the given precision."""
    if args.out.exists() and not args.force:
        raise ValueError(f"{args.out} exists; pass --force to replace it")
    if args.weight_bits is None and args.membrane_bits is None:
        raise ValueError("give --weight-bits and/or --membrane-bits (nothing to quantise)")
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint))
    calibration = open_dataset(
        args.data,
        loaded.input_spec,
        options=replace(trained_data_options(loaded), split="train", clips=args.clips),
        class_names=loaded.class_names,
    )
    batches = ((k, s) for k, s, _ in DataLoader(calibration, batch_size=8, shuffle=False))
    model = quantized(
        loaded.model,
        weight_bits=args.weight_bits,
        membrane_bits=args.membrane_bits,
        calibration=batches,
        quantile=args.floor_quantile,
    )
    precision = {
        "weight_bits": args.weight_bits,
        "membrane_bits": args.membrane_bits,
        "floor_quantile": args.floor_quantile,
        "calibration": f"{args.data}, {args.clips} training clips",
    }
    extra = {**loaded.extra, "quantized": {**precision, "command": args.command_line}}
    save_checkpoint(args.out, model, loaded.class_names, extra=extra)
    print(
        f"{args.out}: SNN weights {args.weight_bits or 32}-bit"
        f"{'' if args.weight_bits else ' float'}, membranes {args.membrane_bits or 32}-bit"
        f"{'' if args.membrane_bits else ' float'}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# respike teach


def add_teach_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``respike teach --source VIDEO --segment LABEL=START:END ... --out PATH``."""
    parser.add_argument(
        "--base",
        default="actions-late",
        help="the network to teach on: a shipped name or a checkpoint, a taught one to add to "
        "or remove from (default actions-late: teach mode needs late fusion)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="the video (or, for an event base, the event recording) the --segment times refer to",
    )
    parser.add_argument(
        "--segment",
        action="append",
        default=[],
        metavar="LABEL=START:END",
        help="an action (or `background`: no action) shown from START to END seconds; repeatable",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="a labels.csv of file,label[,start,end] rows (files relative to it) instead of "
        "--source/--segment",
    )
    parser.add_argument(
        "--remove", action="append", default=[], metavar="LABEL", help="forget a taught action"
    )
    parser.add_argument(
        "--window", type=float, default=2.0, help="seconds per example (default 2.0)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_teach(args: argparse.Namespace) -> int:
    """``respike teach``: record examples from a video, fit, write the checkpoint and its card."""
    from respike.models.checkpoint import load_checkpoint
    from respike.models.teach import (
        Segment,
        event_examples,
        stored_examples,
        teach,
        teachable,
        video_examples,
    )
    from respike.recorders import UnknownFormatError, open_events

    if args.out.exists() and not args.force:
        raise ValueError(f"{args.out} exists; pass --force to replace it")
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = _teach_sources(args, Segment.parse)
    base = load_checkpoint(resolve_checkpoint(args.base))
    examples = stored_examples(base)
    taught = {e.label for e in examples if not e.background}
    for label in args.remove:
        if label not in taught:
            raise ValueError(
                f"{args.base} has no taught action {label!r} to remove (taught: "
                f"{', '.join(sorted(taught)) or 'none'})"
            )
    examples = [e for e in examples if e.label not in args.remove]
    for _, segments in sources:
        for segment in segments:
            if segment.label in taught - set(args.remove):
                raise ValueError(
                    f"{segment.label!r} is already taught in {args.base}; --remove "
                    f"{segment.label} to record it again, or pick another name"
                )
    begin = time.perf_counter()
    for video, segments in sources:
        try:  # event recordings are known by their headers; anything else is a video
            open_events(video)
            record = event_examples
        except UnknownFormatError:
            record = video_examples
        examples += record(teachable(base.model), video, segments, args.window)
    recorded = time.perf_counter() - begin
    result = teach(base, examples)
    path = result.save(args.out)
    counts = Counter(e.label for e in examples)
    summary = {
        "checkpoint": str(path),
        "card": str(path.with_suffix(".md")),
        "classes": list(result.class_names),
        "examples": dict(counts),
        "record_seconds": round(recorded, 3),
        "fit_seconds": round(result.fit_seconds, 3),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{path}: {', '.join(result.class_names)} and no action, from "
            f"{sum(counts.values())} examples ({recorded:.1f} s to run them through "
            f"{args.base}, {result.fit_seconds:.2f} s to fit)"
        )
    return 0


def _teach_sources(
    args: argparse.Namespace, parse: Callable[[str], Any]
) -> list[tuple[Path, list[Any]]]:
    """(video, segments) pairs from ``--source``/``--segment`` or ``--labels``."""
    if args.labels is not None:
        if args.source is not None or args.segment:
            raise ValueError("give --labels or --source with --segment, not both")
        return _labelled_segments(args.labels, parse)
    if args.segment and args.source is None:
        raise ValueError("--segment needs --source, the video its times refer to")
    if args.source is not None and not args.segment:
        raise ValueError(f"nothing to record from {args.source}: add --segment LABEL=START:END")
    if args.source is not None and not args.source.is_file():
        raise ValueError(f"video file '{args.source}' does not exist")
    if args.source is None and not args.remove:
        raise ValueError("nothing to do: give --source with --segment, --labels, or --remove")
    return [(args.source, [parse(s) for s in args.segment])] if args.source is not None else []


def _labelled_segments(labels: Path, parse: Callable[[str], Any]) -> list[tuple[Path, list[Any]]]:
    """``labels.csv`` rows ``file,label[,start,end]`` as (video, segments), files in order."""
    if not labels.is_file():
        raise ValueError(f"labels file '{labels}' does not exist")
    grouped: dict[Path, list[Any]] = {}
    with labels.open(newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if number == 1 and cells[:2] == ["file", "label"]:
                continue
            if len(cells) not in (2, 4):
                raise ValueError(
                    f"{labels}:{number}: {len(cells)} columns; expected file,label[,start,end]"
                )
            video = labels.parent / cells[0]
            if not video.is_file():
                raise ValueError(f"{labels}:{number}: video file '{video}' does not exist")
            span = f"{cells[2]}:{cells[3]}" if len(cells) == 4 else "0:"
            grouped.setdefault(video, []).append(parse(f"{cells[1]}={span}"))
    if not grouped:
        raise ValueError(f"{labels}: no rows (expected file,label[,start,end])")
    return list(grouped.items())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m respike.models.cli train|eval ...`` (the CLI's commands, standalone)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m respike.models.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train a model")
    add_train_arguments(train_parser)
    eval_parser = commands.add_parser("eval", help="evaluate a checkpoint")
    add_eval_arguments(eval_parser)
    calibrate_parser = commands.add_parser("calibrate", help="fit a checkpoint's no-action rule")
    add_calibrate_arguments(calibrate_parser)
    quantize_parser = commands.add_parser("quantize", help="integer SNN weights/membranes")
    add_quantize_arguments(quantize_parser)
    teach_parser = commands.add_parser("teach", help="teach actions from a few examples")
    add_teach_arguments(teach_parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m respike.models.cli", *argv])
    runs = {
        "train": run_train,
        "eval": run_eval,
        "calibrate": run_calibrate,
        "quantize": run_quantize,
        "teach": run_teach,
    }
    return runs[args.command](args)


__all__ = [
    "add_eval_arguments",
    "add_train_arguments",
    "apply_config_file",
    "main",
    "run_eval",
    "run_train",
    "train_config_from_args",
]

if __name__ == "__main__":
    sys.exit(main())
