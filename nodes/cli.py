"""The `respike` command line: run pipelines, run single nodes, list node kinds, make keys."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from respike.nodes.base import (
    Node,
    ParamError,
    broken_kinds,
    build_params,
    get_node_kind,
    kind_package,
    node_kinds,
    param_infos,
)
from respike.nodes.pipeline import PipelineError, load_pipeline
from respike.nodes.runtime import InputWire, NodeRunner, Wiring
from respike.stream.security import Security, generate_keys
from respike.stream.sockets import Delivery

if TYPE_CHECKING:
    from respike.events.types import EventArray
    from respike.recorders.base import Frame


class _FormatsHelp(argparse.RawDescriptionHelpFormatter):
    """Help of `respike info`: the readable formats after the options (the error for an
    unknown file points here); the registry is imported only when this help is shown."""

    def format_help(self) -> str:
        from respike.recorders import supported_formats

        lines = "\n".join(f"  {line}" for line in supported_formats())
        self.add_text(f"formats (detected from the file, or named with --format NAME):\n{lines}")
        return super().format_help()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``respike`` console script."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    parser = argparse.ArgumentParser(prog="respike", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline file, one process per node")
    run.add_argument("pipeline", type=Path, help="TOML pipeline file")
    run.add_argument("--for", dest="duration", type=float, help="stop after this many seconds")
    run.add_argument(
        "--status",
        choices=("auto", "table", "plain", "off"),
        default="auto",
        help="status display (auto: table on a terminal)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a node parameter",
    )
    run.add_argument("--keys", type=Path, help="CURVE key folder for tcp endpoints off this host")
    run.add_argument("--insecure", action="store_true", help="allow unencrypted tcp off this host")
    run.add_argument(
        "--host", action="append", default=[], help="run the nodes placed on this host (repeatable)"
    )

    node = commands.add_parser(
        "node", help="run one node on its own (`respike node KIND --help`)", add_help=False
    )
    node.add_argument("-h", "--help", action="store_true", dest="node_help")
    node.add_argument("kind", nargs="?", help="node kind (see `respike nodes`)")
    node.add_argument("rest", nargs=argparse.REMAINDER)

    commands.add_parser("nodes", help="list node kinds with their parameters")

    dora_node = commands.add_parser(
        "dora-node",
        help="run one node kind inside a dora-rs dataflow (`respike dora-node KIND --help`)",
        add_help=False,
    )
    dora_node.add_argument("-h", "--help", action="store_true", dest="node_help")
    dora_node.add_argument("kind", help="node kind (see `respike nodes`)")
    dora_node.add_argument("rest", nargs=argparse.REMAINDER)

    export_flow = commands.add_parser(
        "export-dataflow", help="write a pipeline file as a dora-rs dataflow.yml"
    )
    export_flow.add_argument("pipeline", type=Path, help="TOML pipeline file")
    export_flow.add_argument(
        "--out", type=Path, help="file to write (default: stdout); refused if it exists"
    )
    export_flow.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a node parameter",
    )

    interface = commands.add_parser(
        "ros2-interface",
        help="write the ROS 2 package respike_msgs (typed predictions) for a colcon workspace",
    )
    interface.add_argument(
        "--out", type=Path, required=True, help="new package folder, e.g. ws/src/respike_msgs"
    )

    keys = commands.add_parser("keys", help="create CURVE server/client keys in a folder")
    keys.add_argument("folder", type=Path, help="key folder (made if missing)")
    keys.add_argument(
        "--force",
        action="store_true",
        help="replace keys already in the folder (hosts holding the old public keys stop connecting)",
    )

    info = commands.add_parser(
        "info", help="describe an event file or a recording", formatter_class=_FormatsHelp
    )
    info.add_argument("file", type=Path)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--format", help="format name, to override detection")

    convert = commands.add_parser(
        "convert", help="convert an event file (suffix picks the output format)"
    )
    convert.add_argument(
        "input", type=Path, help="any readable event file, or a video (DVS-emulated)"
    )
    convert.add_argument("output", type=Path, help="output file: .h5/.hdf5, .aedat4, .txt")
    convert.add_argument("--format", help="input format name, to override detection")
    convert.add_argument(
        "--threshold", type=float, default=0.2, help="video input: DVS contrast threshold"
    )
    convert.add_argument(
        "--size", help="video input: emulate at WIDTHxHEIGHT (default: the video's)"
    )

    demo = commands.add_parser(
        "demo", help="run the demo: synthetic source, a camera, a video or a recording"
    )
    demo.add_argument(
        "--source", help="camera index (0), video file or event recording; default: synthetic"
    )
    demo.add_argument("--for", dest="duration", type=float, help="stop after this many seconds")
    demo.add_argument("--no-viewer", action="store_true", help="do not start the web viewer")
    demo.add_argument(
        "--port",
        type=int,
        help="viewer port (default 8765, or a free one when 8765 is taken; 0 = any free one)",
    )
    demo.add_argument(
        "--json", action="store_true", help="one JSON object per prediction on stdout"
    )
    demo.add_argument(
        "--checkpoint",
        help="run this checkpoint instead of the source's shipped one (e.g. one you taught)",
    )
    demo.add_argument(
        "--teach",
        metavar="PATH",
        help="a Teach panel in the viewer: record your own actions, fit, and the model switches "
        "to PATH",
    )

    for name, summary in (
        ("train", "train a model (`respike train --help`)"),
        ("eval", "evaluate a checkpoint (`respike eval --help`)"),
        ("calibrate", "fit a checkpoint's `no action` rule (`respike calibrate --help`)"),
        ("quantize", "a checkpoint with integer SNN weights/membranes (`respike quantize --help`)"),
        ("teach", "teach your own actions from a few examples (`respike teach --help`)"),
    ):
        commands.add_parser(name, help=summary, add_help=False)

    export = commands.add_parser(
        "export", help="export a checkpoint's SNN to NIR and/or its ANN to ONNX"
    )
    export.add_argument(
        "checkpoint", help="checkpoint path or shipped name (actions, gestures-dvs, nmnist)"
    )
    export.add_argument("--nir", type=Path, help="NIR file for the SNN branch")
    export.add_argument("--onnx", type=Path, help="ONNX file for the key-frame ANN branch")

    compile_step = commands.add_parser(
        "compile-step",
        help="build a checkpoint's compiled step into the cache once (model nodes load it)",
    )
    compile_step.add_argument("checkpoint", help="checkpoint path or shipped name")

    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in TRAINING_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "node":
            return _node(args.kind, ["--help", *args.rest] if args.node_help else args.rest)
        if args.command == "nodes":
            return _list_nodes()
        if args.command == "dora-node":
            return _dora_node(args.kind, ["--help", *args.rest] if args.node_help else args.rest)
        if args.command == "export-dataflow":
            return _export_dataflow(args.pipeline, args.set, args.out)
        if args.command == "ros2-interface":
            return _ros2_interface(args.out)
        if args.command == "keys":
            return _keys(args.folder, force=args.force)
        if args.command == "info":
            return _info(args.file, args.json, args.format)
        if args.command == "convert":
            return _convert(args)
        if args.command == "demo":
            from respike.nodes.demo import run_demo

            return run_demo(
                args.source,
                duration=args.duration,
                viewer=not args.no_viewer,
                as_json=args.json,
                port=args.port,
                checkpoint=args.checkpoint,
                teach=args.teach,
            )
        if args.command in TRAINING_COMMANDS:
            return _training(args.command, rest)
        if args.command == "export":
            return _export(args.checkpoint, args.nir, args.onnx)
        if args.command == "compile-step":
            from respike.models.compiled import main as compile_step_main

            return compile_step_main([args.checkpoint])
    except (PipelineError, ParamError, KeyError, FileNotFoundError, ValueError) as exc:
        print(
            f"respike: error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr
        )
        return 2
    return 2


def _overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--set NODE.PARAM=VALUE`` flags as a map per node."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        target, _, value = item.partition("=")
        node_name, _, param_name = target.partition(".")
        if not (node_name and param_name and _):
            raise ValueError(f"--set {item!r}; expected NODE.PARAM=VALUE")
        overrides.setdefault(node_name, {})[param_name.replace("-", "_")] = value
    return overrides


def _run(args: argparse.Namespace) -> int:
    from respike.nodes.launcher import Launcher

    pipeline = load_pipeline(args.pipeline, _overrides(args.set))
    status = args.status
    launcher = Launcher(
        pipeline,
        duration=args.duration,
        status=status,
        keys=args.keys,
        insecure=args.insecure,
        hosts=tuple(args.host),
    )
    return launcher.run()


_NODE_USAGE = """\
usage: respike node KIND [--name NAME] [--output ENDPOINT] [--input PORT=NODE/TOPIC@ENDPOINT]
                         [--keys DIR | --insecure] [KIND PARAMETERS]

Run one node on its own, for other machines and other programs.
`respike node KIND --help` lists that kind's wiring flags and parameters."""


def _node(kind: str | None, rest: Sequence[str]) -> int:
    """``respike node``: its usage and the kinds without a kind, else run one node."""
    if kind is None:
        kinds = node_kinds()
        width = max(map(len, kinds))
        print(f"{_NODE_USAGE}\n\nkinds:")
        for name, node_cls in kinds.items():
            summary = (node_cls.__doc__ or "").strip().partition("\n")[0]
            print(f"  {name:<{width}}  {summary}")
        return 0
    node_cls = get_node_kind(kind)
    parser = argparse.ArgumentParser(
        prog=f"respike node {kind}", description=(node_cls.__doc__ or "").strip()
    )
    wiring = parser.add_argument_group("wiring")
    wiring.add_argument("--name", default=kind, help="node name; topics are NAME/PORT")
    wiring.add_argument(
        "--output",
        help=f"endpoint to publish on (outputs: {', '.join(node_cls.outputs) or 'none'})",
    )
    wiring.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PORT=NODE/TOPIC@ENDPOINT",
        help=f"wire an input (inputs: {', '.join(node_cls.inputs) or 'none'})",
    )
    wiring.add_argument("--delivery", action="append", default=[], metavar="PORT=live|lossless")
    wiring.add_argument(
        "--queue", action="append", default=[], metavar="PORT=N", help="live inputs: newest N kept"
    )
    wiring.add_argument(
        "--lossless-outputs", action="store_true", help="block (backpressure) instead of dropping"
    )
    wiring.add_argument(
        "--hwm", type=int, metavar="N", help="messages queued per subscriber (live: default 2)"
    )
    wiring.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="PORT=N",
        help="wait for N subscribers before the first message",
    )
    wiring.add_argument("--keys", type=Path, help="CURVE key folder")
    wiring.add_argument(
        "--insecure", action="store_true", help="allow unencrypted tcp off this host"
    )
    wiring.add_argument(
        "--ready",
        action="append",
        default=[],
        metavar="NODE@ENDPOINT",
        help="sources: wait until NODE (publishing at ENDPOINT) has started before the first output",
    )
    wiring.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    wiring.add_argument("--report-file", type=Path, help=argparse.SUPPRESS)
    _add_param_flags(parser, kind, node_cls)
    args = parser.parse_args(rest)
    node_params = _parsed_params(node_cls, args)
    delivery = _port_map(args.delivery, "--delivery")
    queue = _port_map(args.queue, "--queue")
    inputs = {}
    for item in args.input:
        port, _, source = item.partition("=")
        topic, _, endpoint = source.partition("@")
        if not (port and topic and endpoint):
            raise ValueError(f"--input {item!r}; expected PORT=NODE/TOPIC@ENDPOINT")
        inputs[port] = InputWire(
            endpoint, topic, Delivery(delivery.get(port, "live")), int(queue.get(port, 1))
        )
    wiring_spec = Wiring(
        output=args.output,
        inputs=inputs,
        lossless_outputs=args.lossless_outputs,
        hwm=args.hwm,
        expect_subscribers={port: int(n) for port, n in _port_map(args.expect, "--expect").items()},
        security=Security(keys_dir=args.keys, insecure=args.insecure),
        parent_pid=args.parent_pid,
        ready=dict(_split_at(item, "--ready") for item in args.ready),
        report_file=args.report_file,
    )
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    return NodeRunner(node_cls, args.name, node_params, wiring_spec).run()


def _add_param_flags(parser: argparse.ArgumentParser, kind: str, node_cls: type[Node]) -> None:
    """``--params JSON`` and one flag per parameter of ``node_cls``."""
    parser.add_argument(
        "--params",
        metavar="JSON",
        help="parameters as one JSON object with typed values (what `respike run` passes); "
        "flags below override its entries",
    )
    params = parser.add_argument_group(f"{kind} parameters")
    for info in param_infos(node_cls.Params):
        params.add_argument(
            f"--{info.name.replace('_', '-')}",
            dest=f"param_{info.name}",
            metavar=info.type.__name__.upper(),
            help=f"{info.help} (default: {info.default})",
        )


def _parsed_params(node_cls: type[Node], args: argparse.Namespace) -> Any:
    """The node's typed Params from ``--params`` and the per-parameter flags."""
    values = _json_params(args.params) if args.params else {}
    values.update(
        (key[len("param_") :], value)
        for key, value in vars(args).items()
        if key.startswith("param_") and value is not None
    )
    return build_params(node_cls, values)


def _dora_node(kind: str, rest: Sequence[str]) -> int:
    """``respike dora-node``: one node kind as a node of a dora-rs dataflow."""
    from respike.nodes.dora import run_dora_node

    node_cls = get_node_kind(kind)
    parser = argparse.ArgumentParser(
        prog=f"respike dora-node {kind}",
        description=f"{(node_cls.__doc__ or '').strip()}\n\nInside a dora-rs dataflow, "
        f"inputs {', '.join(node_cls.inputs) or '-'} and outputs "
        f"{', '.join(node_cls.outputs) or '-'} are dora inputs and outputs of those names.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--name", default=os.environ.get("DORA_NODE_ID", kind), help="node name (for its logs)"
    )
    _add_param_flags(parser, kind, node_cls)
    args = parser.parse_args(rest)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    return run_dora_node(node_cls, args.name, _parsed_params(node_cls, args))


def _export_dataflow(path: Path, overrides: Sequence[str], out: Path | None) -> int:
    """``respike export-dataflow``: the pipeline as a dora-rs dataflow.yml."""
    from respike.nodes.dora import export_dataflow

    text = export_dataflow(load_pipeline(path, _overrides(overrides)))
    if out is None:
        sys.stdout.write(text)
        return 0
    if out.exists():
        raise ValueError(f"{out} exists; not replacing it (remove it first)")
    out.write_text(text)
    print(f"wrote {out}: run it with `dora run {out}`", file=sys.stderr)
    return 0


def _ros2_interface(out: Path) -> int:
    """``respike ros2-interface``: the respike_msgs package for ROS nodes reading predictions."""
    from respike.nodes.ros2 import write_interface_package

    write_interface_package(out)
    print(f"wrote {out}: `colcon build` it in a ROS 2 workspace", file=sys.stderr)
    return 0


def _keys(folder: Path, *, force: bool) -> int:
    """``respike keys``: new CURVE keys, never silently replacing keys hosts may hold."""
    try:
        generate_keys(folder, force=force)
    except FileExistsError as exc:
        print(f"respike: error: {exc}", file=sys.stderr)
        return 2
    print(f"CURVE keys written to {folder}: keep server.key_secret on the publishing host")
    return 0


def _info(path: Path, as_json: bool, format_name: str | None) -> int:
    import json

    from respike.recorders import open_events
    from respike.recorders.recording import RecordingError, recording_summary

    summary = None
    if path.suffix.lower() == ".mcap" and format_name is None:
        try:
            summary = recording_summary(path)
        except RecordingError:
            summary = None  # not a respike recording: a ROS 2 bag in MCAP storage
    if summary is None:
        summary = open_events(path, format=format_name).summary().to_dict()
    if as_json:
        print(json.dumps(summary))
    else:
        width = max(len(key) for key in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from respike.recorders import open_events
    from respike.recorders.video import is_video
    from respike.recorders.writers import write_packets

    source, target = args.input, args.output
    frames = False  # a reader's stream() carries the recording's frames for AEDAT 4 output
    if args.format is None and is_video(source):
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        from respike.events.emulator import DvsEmulator
        from respike.events.inputs import parse_size
        from respike.recorders.video import VideoEvents

        emulator = DvsEmulator(on_threshold=args.threshold, off_threshold=args.threshold)
        resize = parse_size(args.size) if args.size else None
        video = VideoEvents(source, emulator, (resize.width, resize.height) if resize else None)
        packets: Iterator[EventArray | Frame] = video.packets()
        size: tuple[int, int] | None = video.sensor_size
        what = f"DVS-emulated video, {video.fps:.2f} fps"
    else:
        reader = open_events(source, format=args.format)
        size = reader.sensor_size
        packets, what, frames = reader.stream(), reader.format, reader.has_frames
    if size is None:
        raise ValueError(f"{source}: sensor size unknown; cannot write {target}")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=not sys.stderr.isatty(), console=None) as progress:
        task = progress.add_task(f"{source.name} -> {target.name}", total=None)
        count = write_packets(
            packets, target, size, lambda n: progress.advance(task, n), frames=frames
        )
    print(f"wrote {count:,} events ({what}, {size[0]}x{size[1]}) to {target}")
    return 0


def _export(checkpoint: str, nir: Path | None, onnx: Path | None) -> int:
    """``respike export``: the whole request is checked before any file is written."""
    if nir is None and onnx is None:
        raise ValueError("nothing to export: give --nir PATH and/or --onnx PATH")
    for flag, target in (("--nir", nir), ("--onnx", onnx)):
        if target is not None and target.is_dir():
            raise ValueError(f"{flag} {target} is a folder; expected a file path")
    if nir is not None and onnx is not None and nir.resolve() == onnx.resolve():
        raise ValueError(f"--nir and --onnx both name {nir}; expected two files")
    from respike.models.checkpoint import load_checkpoint, resolve_checkpoint
    from respike.models.export import check_export, export_nir, export_onnx, nir_coverage

    loaded = load_checkpoint(resolve_checkpoint(checkpoint))
    requested = [name for name, target in (("nir", nir), ("onnx", onnx)) if target is not None]
    check_export(loaded, requested, name=checkpoint)
    if nir is not None:
        print(f"SNN branch -> {export_nir(loaded, nir)}")
        for note in nir_coverage(loaded):
            print(f"  {note}")
    if onnx is not None:
        print(f"ANN branch -> {export_onnx(loaded, onnx)}")
    return 0


TRAINING_COMMANDS = ("train", "eval", "calibrate", "quantize", "teach")
"""Commands of :mod:`respike.models.cli`, parsed there (they import torch)."""


def _training(command: str, rest: Sequence[str]) -> int:
    """``respike train|eval``: parsed here so torch is imported only by these commands."""
    from respike.models import cli

    add, run = {
        "train": (cli.add_train_arguments, cli.run_train),
        "eval": (cli.add_eval_arguments, cli.run_eval),
        "calibrate": (cli.add_calibrate_arguments, cli.run_calibrate),
        "quantize": (cli.add_quantize_arguments, cli.run_quantize),
        "teach": (cli.add_teach_arguments, cli.run_teach),
    }[command]
    parser = argparse.ArgumentParser(prog=f"respike {command}")
    add(parser)
    args = parser.parse_args(rest)
    args.command_line = " ".join(["respike", command, *rest])
    return run(args)


def _json_params(text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"--params is {text!r}; expected a JSON object of parameter values")
    return values


def _split_at(item: str, flag: str) -> tuple[str, str]:
    name, sep, endpoint = item.partition("@")
    if not (name and sep and endpoint):
        raise ValueError(f"{flag} {item!r}; expected NODE@ENDPOINT")
    return name, endpoint


def _port_map(items: Sequence[str], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        port, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} {item!r}; expected PORT=VALUE")
        result[port] = value
    return result


def _list_nodes() -> int:
    """``respike nodes``: every kind with its package, ports and parameters; then the
    installed kinds that cannot be loaded, each with why."""
    for kind, node_cls in node_kinds().items():
        summary = (node_cls.__doc__ or "").strip().splitlines()[0] if node_cls.__doc__ else ""
        print(f"{kind}: {summary}  [{kind_package(node_cls)}]")
        print(
            f"  inputs: {', '.join(node_cls.inputs) or '-'}   outputs: {', '.join(node_cls.outputs) or '-'}"
        )
        for info in param_infos(node_cls.Params):
            print(
                f"  --{info.name.replace('_', '-')} {info.type.__name__} = {info.default!r}: {info.help}"
            )
    for line in broken_kinds().values():
        print(f"respike: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
