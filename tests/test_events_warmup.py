"""Tests of respike.events.warmup and of the package's import weight."""

from __future__ import annotations

import subprocess
import sys

import numba

from respike.events import binning, dvs_step, emulator, residual
from respike.events.warmup import warm_up


def test_warm_up_compiles_every_kernel() -> None:
    seconds = warm_up()
    assert seconds > 0.0
    kernels = {
        "residual full": residual._residual_full_kernel,
        "residual area": residual._residual_area_kernel,
        "dvs": dvs_step._dvs_kernel,
        "dvs on threads": dvs_step._dvs_kernel_threaded,
        "levels 3 channels": emulator._levels3,
        "levels 1 channel": emulator._levels1,
        "binning": binning._bin_kernel,
    }
    for name, kernel in kernels.items():
        assert isinstance(kernel, numba.core.registry.CPUDispatcher), f"{name} is not jitted"
        assert kernel.signatures, f"warm_up() left the {name} kernel uncompiled"
    read_only = [s for s in binning._bin_kernel.signatures if not s[0].mutable]
    assert read_only, "warm_up() must compile binning for read-only packets (wire buffers)"


def test_importing_the_event_dtype_does_not_import_numba() -> None:
    code = "import sys, respike.events.types, respike.events; print('numba' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False", "the transport must get the dtype without numba"


def test_kernels_are_reachable_from_the_package() -> None:
    import respike.events as events

    assert events.DvsEmulator is emulator.DvsEmulator
    assert events.ResidualFrames is residual.ResidualFrames
    assert events.EventFrames is binning.EventFrames
    assert events.warm_up is warm_up
