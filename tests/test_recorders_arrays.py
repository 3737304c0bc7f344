"""NumPy and HDF5 event files: layouts, time units, chunking, unsorted and damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.recorders import EventFileError, open_events


def _columns(rng: np.random.Generator, n: int = 1000) -> dict[str, np.ndarray]:
    return {
        "t": np.sort(rng.integers(0, 5_000_000, n)),
        "x": rng.integers(0, 640, n),
        "y": rng.integers(0, 480, n),
        "p": rng.integers(0, 2, n),
    }


def _check(path: Path, cols: dict[str, np.ndarray], **options: object) -> None:
    events = open_events(path, **options).read_all()  # type: ignore[arg-type]
    for name in ("t", "x", "y", "p"):
        assert np.array_equal(events[name], cols[name]), f"{path.name}: {name} differs"


def test_npy_reference_file_and_chunks(shared_data: Path) -> None:
    path = shared_data / "prophesee" / "evt3_sample.npy"
    ref = np.load(path)
    reader = open_events(path, packet_events=5000)
    assert reader.format == "npy"
    assert max(p.shape[0] for p in reader.packets()) == 5000
    _check(path, {k: ref[k] for k in "txyp"}, packet_events=5000)


def test_npy_float_seconds_and_units(tmp_path: Path, rng: np.random.Generator) -> None:
    cols = _columns(rng)
    arr = np.zeros(1000, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<f8"), ("p", "?")])
    arr["t"] = cols["t"] / 1e6
    for k in "xyp":
        arr[k] = cols[k]
    np.save(tmp_path / "s.npy", arr)
    _check(tmp_path / "s.npy", cols)
    arr_ms = arr.copy()
    arr_ms["t"] = cols["t"] / 1e3
    np.save(tmp_path / "ms.npy", arr_ms)
    _check(tmp_path / "ms.npy", cols, time_unit="ms")


def test_npz_structured_and_columns(tmp_path: Path, rng: np.random.Generator) -> None:
    cols = _columns(rng)
    arr = np.zeros(1000, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])
    for k in "txyp":
        arr[k] = cols[k]
    arr["p"][arr["p"] == 0] = -1  # -1/1 polarity becomes 0/1
    np.savez(tmp_path / "events.npz", events=arr, other=np.arange(3))
    _check(tmp_path / "events.npz", cols)
    np.savez_compressed(
        tmp_path / "cols.npz",
        xs=cols["x"],
        ys=cols["y"],
        ts=cols["t"] / 1e6,
        ps=cols["p"].astype(bool),
    )
    _check(tmp_path / "cols.npz", cols)
    np.savez(tmp_path / "none.npz", a=np.arange(4))
    with pytest.raises(EventFileError, match="hold no events"):
        open_events(tmp_path / "none.npz").read_all()


def test_hdf5_layouts(tmp_path: Path, rng: np.random.Generator) -> None:
    import h5py

    cols = _columns(rng)
    with h5py.File(tmp_path / "dsec.h5", "w") as f:
        g = f.create_group("events")
        for k in "txyp":
            g.create_dataset(k, data=cols[k] - (1000 if k == "t" else 0), chunks=True)
        f.create_dataset("t_offset", data=1000)
        f.attrs["width"] = 640
        f.attrs["height"] = 480
    reader = open_events(tmp_path / "dsec.h5", packet_events=300)
    assert reader.format == "hdf5" and reader.sensor_size == (640, 480)
    _check(tmp_path / "dsec.h5", cols, packet_events=300)
    with h5py.File(tmp_path / "utils.h5", "w") as f:
        f.create_dataset("events/xs", data=cols["x"])
        f.create_dataset("events/ys", data=cols["y"])
        f.create_dataset("events/ts", data=cols["t"] / 1e6)
        f.create_dataset("events/ps", data=cols["p"].astype(bool))
    _check(tmp_path / "utils.h5", cols)
    compound = np.zeros(1000, dtype=[("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])
    for k in "txyp":
        compound[k] = cols[k]
    with h5py.File(tmp_path / "cd.h5", "w") as f:
        f.create_dataset("CD/events", data=compound)
    _check(tmp_path / "cd.h5", cols)
    assert open_events(tmp_path / "cd.h5").summary().sensor_size_from == "events"


def test_unsorted_npy_names_row_and_byte(tmp_path: Path, rng: np.random.Generator) -> None:
    cols = _columns(rng)
    cols["t"][600] = 0
    arr = np.zeros(1000, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    for k in "txyp":
        arr[k] = cols[k]
    path = tmp_path / "unsorted.npy"
    np.save(path, arr)
    with pytest.raises(EventFileError, match="not sorted") as info:
        open_events(path, packet_events=256).read_all()
    header = path.stat().st_size - arr.nbytes
    assert info.value.offset == header + 600 * arr.dtype.itemsize and info.value.where == "row 600"
    reader = open_events(path, strict=False)
    assert reader.read_all().shape[0] == 600


def test_truncated_npy_and_hdf5(tmp_path: Path, rng: np.random.Generator) -> None:
    import h5py

    cols = _columns(rng)
    arr = np.zeros(1000, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    np.save(tmp_path / "a.npy", arr)
    cut = tmp_path / "cut.npy"
    cut.write_bytes((tmp_path / "a.npy").read_bytes()[:5000])
    with pytest.raises(EventFileError, match="cannot be mapped"):
        open_events(cut)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        for k in "txyp":
            f.create_dataset(f"events/{k}", data=cols[k])
    data = (tmp_path / "b.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFileError, match="hdf5"):
        open_events(tmp_path / "cut.h5").read_all()
