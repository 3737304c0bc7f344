"""Export: the SNN branch to NIR (neuromorphic hardware and simulators), the ANN branch to ONNX.

NIR: Norse's ``norse.torch.to_nir`` traces a plain ``tensor -> tensor`` module and maps Conv2d
(only with a bias), LIF-box cells and Linear; it has no mapping for batch norm or residual sums
and fails on bias-free convolutions. So the spiking ResNet is written to NIR here by hand:
each conv with its batch norm folded in (eval statistics) becomes a ``nir.Conv2d`` with bias,
each LIF-box cell a ``nir.LIF`` (``tau = dt / (1 - decay)``, ``r = 1``, hard reset), and a
residual sum is several edges into one node (NIR sums a node's inputs). The graph's output is
the last stage's spikes. :func:`nir_to_torch` reads it back with ``nirtorch`` and Norse cells.

ONNX: the ANN (the key-frame CNN) through ``torch.onnx.export`` (the TorchScript exporter,
``dynamo=False``, which needs only the ``onnx`` package), input ``keyframe`` and outputs
``stage1``-``stage4``, batch size dynamic, checked with ``onnx.checker``.

What a checkpoint can export follows from its structure alone (:func:`export_problems`), so a
request for several files is checked whole (:func:`check_export`) before any is written; each
file is written under a temporary name and renamed into place, so a failure leaves no partial file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from torch import nn

from respike.models.checkpoint import Checkpoint, load_checkpoint
from respike.models.snn import ConvBN, SpikingResNet

if TYPE_CHECKING:
    import nir

CheckpointLike: TypeAlias = str | PathLike[str] | Checkpoint

FORMATS: tuple[str, ...] = ("nir", "onnx")
"""Export formats: ``nir`` (the SNN branch) and ``onnx`` (the key-frame ANN branch)."""


def _as_checkpoint(checkpoint: CheckpointLike) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def export_problems(checkpoint: CheckpointLike, *, name: str | None = None) -> dict[str, str]:
    """Why ``checkpoint`` cannot be exported to each impossible format, keyed by format.

    A format missing from the result can be exported. ``name`` is how the messages call the
    checkpoint (default: its file), e.g. ``{"onnx": "nmnist is snn-only: no ANN branch to
    export to ONNX"}``.
    """
    ckpt = _as_checkpoint(checkpoint)
    label = name or str(ckpt.path)
    snn, ann = ckpt.model.snn, ckpt.model.ann
    problems = {}
    if snn is None:
        problems["nir"] = f"{label} is ann-only: no SNN branch to export to NIR"
    elif snn.motion is not None:
        problems["nir"] = (
            f"{label} has motion detectors: NIR has no one-step delay or product node for them"
        )
    if ann is None:
        problems["onnx"] = f"{label} is snn-only: no ANN branch to export to ONNX"
    return problems


def check_export(
    checkpoint: CheckpointLike, formats: Collection[str], *, name: str | None = None
) -> None:
    """Raise one-line :class:`ValueError` unless ``checkpoint`` can go to every one of ``formats``.

    The message says what the checkpoint can export and why not the rest, so a caller checks
    a whole request before writing anything.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(
            f"export format {', '.join(unknown)}; expected one of {', '.join(FORMATS)}"
        )
    problems = export_problems(checkpoint, name=name)
    if any(f in problems for f in formats):
        possible = [f.upper() for f in FORMATS if f not in problems]
        can = f"it exports to {' and '.join(possible)} only" if possible else "it exports nothing"
        raise ValueError(f"{'; '.join(problems.values())} ({can})")


def _write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an exported model is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to ``bn(conv(x))`` with ``bn``'s running stats."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return weight.detach(), ((bias - bn.running_mean) * scale + bn.bias).detach()


def _conv_out(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    k, s, p, d = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    assert isinstance(p, tuple)
    return (
        (size[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1,
        (size[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1,
    )


def snn_to_nir(
    snn: SpikingResNet,
    input_size: tuple[int, int],
    *,
    dt: float = 1.0,
    stages: int | None = None,
) -> nir.NIRGraph:
    """NIR graph of ``snn`` for ``(H, W)`` inputs, one step lasting ``dt`` seconds.

    Node names follow the modules (``stage2_block0_conv1``); the input is ``input``
    (``(C, H, W)``), the output the last stage's spikes. With ``stages``, the graph stops after
    that stage and its output is the stage's output current, before the next neurons (what an
    in-line fusion block reads).
    """
    import nir

    if snn.motion is not None:
        raise ValueError(
            "NIR export of an SNN with motion detectors is not supported: NIR has no one-step "
            "delay or product node for them"
        )
    lif = snn.config.lif
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []

    def numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    def add_conv(
        name: str, seq: ConvBN, size: tuple[int, int], sources: list[str]
    ) -> tuple[int, int]:
        conv, bn = seq.conv, seq.bn
        weight, bias = fold_batchnorm(conv, bn)
        nodes[name] = nir.Conv2d(
            input_shape=size,
            weight=numpy(weight),
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=numpy(bias),
        )
        edges.extend((src, name) for src in sources)
        return _conv_out(size, conv)

    def add_lif(name: str, shape: tuple[int, int, int], sources: list[str]) -> None:
        dtype = next(snn.parameters()).detach().cpu().numpy().dtype
        nodes[name] = nir.LIF(
            tau=np.full(shape, dt / lif.leak, dtype=dtype),
            r=np.ones(shape, dtype=dtype),
            v_leak=np.zeros(shape, dtype=dtype),
            v_threshold=np.full(shape, lif.v_th, dtype=dtype),
            v_reset=np.full(shape, lif.v_reset, dtype=dtype),
        )
        edges.extend((src, name) for src in sources)

    nodes["input"] = nir.Input(input_type={"input": np.array([snn.in_channels, *input_size])})
    size = add_conv("stem", snn.stem, tuple(input_size), ["input"])  # type: ignore[arg-type]
    residual = ["stem"]
    channels = snn.widths[0]
    for i, stage in enumerate(snn.blocks(), start=1):
        if stages is not None and i > stages:
            break
        for j, block in enumerate(stage):
            prefix = f"stage{i}_block{j}"
            add_lif(f"{prefix}_lif1", (channels, *size), residual)
            out_size = add_conv(f"{prefix}_conv1", block.conv1, size, [f"{prefix}_lif1"])
            channels = block.conv1.conv.out_channels
            add_lif(f"{prefix}_lif2", (channels, *out_size), [f"{prefix}_conv1"])
            add_conv(f"{prefix}_conv2", block.conv2, out_size, [f"{prefix}_lif2"])
            if block.shortcut is not None:
                add_conv(f"{prefix}_shortcut", block.shortcut, size, [f"{prefix}_lif1"])
                residual = [f"{prefix}_conv2", f"{prefix}_shortcut"]
            else:
                residual = [f"{prefix}_conv2", *residual]
            size = out_size
    if stages is None:
        add_lif("lif_out", (channels, *size), residual)
        last = "lif_out"
    else:  # a 1x1 sum pool: the node where the block and its shortcut add up
        last = f"stage{stages}_output"
        nodes[last] = nir.SumPool2d(
            kernel_size=np.array([1, 1]), stride=np.array([1, 1]), padding=np.array([0, 0])
        )
        edges.extend((src, last) for src in residual)
    nodes["output"] = nir.Output(output_type={"output": np.array([channels, *size])})
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"source": "respike", "dt": dt})


def nir_to_torch(
    graph: nir.NIRGraph | str | PathLike[str],
    *,
    dt: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Executable module of a NIR graph from :func:`snn_to_nir`: ``out, state = m(x, state)``.

    LIF nodes become Norse ``LIFBoxCell``s stepping ``dt`` (the ``dt`` the graph was written
    with), convolutions ``torch.nn.Conv2d``; ``nirtorch`` wires them and sums multiple inputs.
    """
    import nir
    import nirtorch
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.module.lif_box import LIFBoxCell

    if not isinstance(graph, nir.NIRNode):
        graph = nir.read(str(graph))

    def lif(node: nir.LIF) -> nn.Module:
        def t(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=dtype)

        params = LIFBoxParameters(
            tau_mem_inv=1.0 / t(node.tau),
            v_leak=t(node.v_leak),
            v_th=t(node.v_threshold),
            v_reset=t(node.v_reset),
        )
        return LIFBoxCell(params, dt=dt)

    module: nn.Module = nirtorch.nir_to_torch(graph, {nir.LIF: lif}, dtype=dtype)
    return module


def export_nir(checkpoint: CheckpointLike, path: str | PathLike[str]) -> Path:
    """Write the SNN branch of ``checkpoint`` (a file or a loaded one) to the NIR file ``path``.

    One step lasts the checkpoint's time bin, so LIF time constants are in seconds.
    """
    import nir

    ckpt = _as_checkpoint(checkpoint)
    check_export(ckpt, ["nir"])
    model = ckpt.model.eval()
    assert model.snn is not None
    spec = ckpt.input_spec
    stages = min(ckpt.config.fusion.stages) if model.inline else None
    graph = snn_to_nir(model.snn, spec.snn_size, dt=spec.time_bin_us * 1e-6, stages=stages)
    return _write_atomically(Path(path), lambda tmp: nir.write(str(tmp), graph))


def nir_coverage(checkpoint: CheckpointLike) -> list[str]:
    """What a NIR export of ``checkpoint`` covers and leaves out or changes, one line each (none
    for a float SNN alone): where fusion meets the SNN; NIR has no integer types, so integer
    weights go as the float values they stand for, and integer membranes go as float LIF nodes."""
    ckpt = _as_checkpoint(checkpoint)
    config = ckpt.config.snn
    notes = []
    if ckpt.model.inline:
        first = min(ckpt.config.fusion.stages)
        notes.append(
            f"in-line fusion: the graph is the stem and stages 1-{first}, ending at stage "
            f"{first}'s output current, which the host fuses with the key frame (attention is "
            "not a NIR primitive); the stages after it read that fusion and are not in the graph"
        )
    elif ckpt.model.fusion:
        notes.append(
            "late fusion: the graph is the whole SNN, input to the last stage's spikes; the "
            "fusion blocks and the head read its spikes on the host"
        )
    if config.weight_bits is not None:
        notes.append(
            f"weights: the {config.weight_bits}-bit weights' float values (integer times the "
            "channel's scale); NIR has no integer type"
        )
    if config.lif.membrane_bits is not None:
        notes.append(
            f"membranes: float LIF nodes; the {config.lif.membrane_bits}-bit membrane levels "
            "and their calibrated floors are not expressible in NIR"
        )
    return notes


def export_onnx(checkpoint: CheckpointLike, path: str | PathLike[str], *, opset: int = 17) -> Path:
    """Write the ANN branch of ``checkpoint`` to the ONNX file ``path`` and check it.

    Input ``keyframe`` ``(batch, 3, Hk, Wk)``; outputs ``stage1``-``stage4``.
    """
    import onnx

    ckpt = _as_checkpoint(checkpoint)
    check_export(ckpt, ["onnx"])
    model = ckpt.model.eval()
    ann = model.ann
    assert ann is not None
    outputs = [f"stage{i}" for i in range(1, 5)]
    sample = torch.zeros(1, 3, *ckpt.input_spec.keyframe_size)

    def write(tmp: Path) -> None:
        torch.onnx.export(
            ann,
            (sample,),
            str(tmp),
            dynamo=False,
            input_names=["keyframe"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["keyframe", *outputs]},
            opset_version=opset,
        )
        onnx.checker.check_model(str(tmp))

    return _write_atomically(Path(path), write)


__all__ = [
    "FORMATS",
    "check_export",
    "export_nir",
    "export_onnx",
    "export_problems",
    "fold_batchnorm",
    "nir_to_torch",
    "snn_to_nir",
]
