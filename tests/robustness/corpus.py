"""A generated corpus of malformed inputs, one writer per case, for every supported format."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd
import scipy.io

REAL_MAT = Path(__file__).resolve().parents[2] / "data" / "invitro_210511001_bh.asdf.mat"


def _cells(cells: list) -> np.ndarray:
    arr = np.empty((len(cells), 1), dtype=object)
    for i, c in enumerate(cells):
        arr[i, 0] = c
    return arr


def _asdf(path: Path, cells: list) -> None:
    scipy.io.savemat(path, {"asdf": _cells(cells)})


def _good_cells(n=3, tick=1.0):
    tick_cell = np.zeros((1, 0)) if tick is None else np.array([[tick]])
    return [np.array([[1.0, 5.0, 9.0]]) for _ in range(n)] + [tick_cell, np.array([[n, 100]])]


def _phy(folder: Path, times, clusters, params: str | None = "sample_rate = 30000.0\n") -> None:
    folder.mkdir()
    np.save(folder / "spike_times.npy", times, allow_pickle=True)
    np.save(folder / "spike_clusters.npy", clusters, allow_pickle=True)
    if params is not None:
        (folder / "params.py").write_text(params)


def _maxwell(path: Path, spikes) -> None:
    with h5py.File(path, "w") as f:
        f["proc0/spikeTimes"] = spikes


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


class _Payload:
    """Unpickling this would create a file: loaders must never unpickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _maxwell_dtype(fields=("frameno", "channel", "amplitude")):
    return np.dtype([(f, "<i8" if f == "frameno" else "<i4" if f == "channel" else "<f4") for f in fields])


MARKER = "PAYLOAD_RAN"


def build(case: tuple, folder: Path) -> Path:
    """Write one case's file (or folder) under `folder`; returns its path."""
    fmt, name, writer, suffix, _ = case
    path = folder / f"{fmt}-{name}{suffix}"
    writer(path)
    return path


def cases() -> dict[str, tuple[str, str, Callable[[Path], object], str, dict]]:
    """name -> (format, name, writer, suffix, load options). A pickle payload, if ever
    unpickled, creates MARKER beside the file."""
    out: dict[str, tuple] = {}

    def add(fmt: str, name: str, writer: Callable[[Path], object], suffix: str, **opts) -> None:
        out[f"{fmt}/{name}"] = (fmt, name, writer, suffix, opts)

    def payload(p: Path) -> "_Payload":
        return _Payload(str(p.parent / MARKER))

    one_ms = {"tick_ms": 1.0}
    # asdf .mat
    add("asdf", "empty", lambda p: _write(p, b""), ".mat", **one_ms)
    add("asdf", "garbage", lambda p: _write(p, b"\x00\x01not a mat file" * 50), ".mat", **one_ms)
    add("asdf", "truncated", lambda p: _write(p, REAL_MAT.read_bytes()[:40000]), ".mat", **one_ms)
    add("asdf", "no-cell-array", lambda p: scipy.io.savemat(p, {"x": np.arange(5.0)}), ".mat", **one_ms)
    add("asdf", "too-few-cells", lambda p: _asdf(p, [np.array([[1.0]])]), ".mat", **one_ms)
    add("asdf", "bad-footer", lambda p: _asdf(p, _good_cells()[:-1] + [np.array([[7, 100]])]), ".mat", **one_ms)
    add("asdf", "nan-times", lambda p: _asdf(p, [np.array([[1.0, np.nan]])] + _good_cells()[1:]), ".mat", **one_ms)
    add("asdf", "negative-times", lambda p: _asdf(p, [np.array([[-4.0, 2.0]])] + _good_cells()[1:]), ".mat", **one_ms)
    add("asdf", "unsorted", lambda p: _asdf(p, [np.array([[9.0, 2.0]])] + _good_cells()[1:]), ".mat", **one_ms)
    add("asdf", "after-end", lambda p: _asdf(p, [np.array([[1.0, 500.0]])] + _good_cells()[1:]), ".mat", **one_ms)
    add("asdf", "string-cell", lambda p: _asdf(p, ["abc"] + _good_cells()[1:]), ".mat", **one_ms)
    add("asdf", "zero-duration", lambda p: _asdf(p, _good_cells()[:-1] + [np.array([[3, 0]])]), ".mat", **one_ms)
    add("asdf", "no-tick", lambda p: _asdf(p, _good_cells(tick=None)), ".mat")
    add("asdf", "zero-tick-option", lambda p: _asdf(p, _good_cells(tick=None)), ".mat", tick_ms=0.0)
    add("asdf", "negative-tick-option", lambda p: _asdf(p, _good_cells(tick=None)), ".mat", tick_ms=-1.0)
    add("asdf", "negative-tick-in-file",
        lambda p: _asdf(p, _good_cells()[:-2] + [np.array([[-0.1]]), np.array([[3, 100]])]), ".mat")
    add("asdf", "two-variables", lambda p: scipy.io.savemat(p, {"a": _cells(_good_cells()), "b": _cells(_good_cells())}), ".mat", **one_ms)
    add("asdf", "missing", lambda p: None, ".mat", **one_ms)
    # Kilosort / phy folders
    t = np.array([10, 20, 30], dtype=np.uint64)
    c = np.array([0, 1, 0], dtype=np.int32)
    add("phy", "no-spike-times", lambda p: (p.mkdir(), np.save(p / "spike_clusters.npy", c), np.save(p / "x.npy", c)) and None, "")
    add("phy", "no-clusters", lambda p: (p.mkdir(), np.save(p / "spike_times.npy", t),
                                         (p / "params.py").write_text("sample_rate = 30000.0\n")) and None, "")
    add("phy", "length-mismatch", lambda p: _phy(p, t, c[:2]), "")
    add("phy", "object-array-pickle", lambda p: _phy(p, np.array([payload(p), 1], dtype=object), c[:2]), "")
    add("phy", "float-nan-times", lambda p: _phy(p, np.array([1.0, np.nan, 3.0]), c), "")
    add("phy", "negative-times", lambda p: _phy(p, np.array([-5, 20, 30]), c), "")
    add("phy", "float-clusters", lambda p: _phy(p, t, c.astype(float)), "")
    add("phy", "truncated-npy", lambda p: (_phy(p, np.arange(1000, dtype=np.uint64), np.zeros(1000, np.int32)),
                                           _truncate(p / "spike_times.npy")) and None, "")
    add("phy", "not-npy", lambda p: (_phy(p, t, c), _write(p / "spike_times.npy", b"hello")) and None, "")
    add("phy", "no-params-no-rate", lambda p: _phy(p, t, c, params=None), "")
    add("phy", "zero-rate", lambda p: _phy(p, t, c, params="sample_rate = 0\n"), "")
    add("phy", "params-syntax-error", lambda p: _phy(p, t, c, params="sample_rate = = 3\n"), "")
    add("phy", "params-not-python-literal", lambda p: _phy(p, t, c, params="sample_rate = 'fast'\n"), "")
    add("phy", "empty", lambda p: _phy(p, np.array([], np.uint64), np.array([], np.int32)), "")
    add("phy", "bad-tsv", lambda p: (_phy(p, t, c), _write(p / "cluster_group.tsv", b"nothing\there\n1\t2\t3\t4\n")) and None, "")
    add("phy", "non-numeric-cluster-id", lambda p: (_phy(p, t, c), _write(p / "cluster_group.tsv", b"cluster_id\tgroup\n0\tgood\nabc\tnoise\n")) and None, "")
    add("phy", "zero-rate-option", lambda p: _phy(p, t, c, params=None), "", sample_rate=0.0)
    # NWB
    add("nwb", "empty", lambda p: _write(p, b""), ".nwb")
    add("nwb", "garbage", lambda p: _write(p, b"\x89HDF\r\n\x1a\n" + b"\x00" * 100), ".nwb")
    add("nwb", "plain-hdf5", lambda p: h5py.File(p, "w").close(), ".nwb")
    add("nwb", "truncated", lambda p: _truncate(_nwb_file(p)), ".nwb")
    add("nwb", "no-units", lambda p: _nwb_file(p, units=False), ".nwb")
    add("nwb", "no-spikes", lambda p: _nwb_file(p, trains=[np.array([])]), ".nwb")
    add("nwb", "negative-times", lambda p: _nwb_file(p, trains=[np.array([-1.0, 2.0])]), ".nwb")
    add("nwb", "nan-times", lambda p: _nwb_file(p, trains=[np.array([1.0, np.nan])]), ".nwb")
    # MaxWell
    add("maxwell", "truncated", lambda p: (write_good_maxwell(p), _truncate(p)) and None, ".raw.h5")
    add("maxwell", "missing-fields", lambda p: _maxwell(p, np.zeros(3, _maxwell_dtype(("frameno", "amplitude")))), ".raw.h5")
    add("maxwell", "empty-table", lambda p: _maxwell(p, np.zeros(0, _maxwell_dtype())), ".raw.h5")
    add("maxwell", "not-a-table", lambda p: _maxwell(p, np.arange(10.0)), ".raw.h5")
    add("maxwell", "string-table", lambda p: _maxwell(p, np.array([b"a", b"b"])), ".raw.h5")
    add("maxwell", "frame-before-first", lambda p: _maxwell_with_first(p), ".raw.h5")
    add("maxwell", "other-hdf5", lambda p: h5py.File(p, "w").create_group("foo") and None, ".raw.h5")
    # spike-time tables
    add("table", "empty-csv", lambda p: _write(p, b""), ".csv")
    add("table", "header-only", lambda p: _write(p, b"unit,time_s\n"), ".csv")
    add("table", "missing-unit", lambda p: _write(p, b"neuron,time_s\n1,0.5\n"), ".csv")
    add("table", "missing-time", lambda p: _write(p, b"unit,when\n1,0.5\n"), ".csv")
    add("table", "nan-time", lambda p: _write(p, b"unit,time_s\n1,0.5\n1,\n"), ".csv")
    add("table", "negative-time", lambda p: _write(p, b"unit,time_s\n1,-0.5\n1,2\n"), ".csv")
    add("table", "text-time", lambda p: _write(p, b"unit,time_s\n1,soon\n"), ".csv")
    add("table", "binary-garbage", lambda p: _write(p, bytes(range(256)) * 4), ".csv")
    add("table", "npz-object-pickle", lambda p: np.savez(p, unit=np.array([1]), time_s=np.array([payload(p)], dtype=object)), ".npz")
    add("table", "npz-length-mismatch", lambda p: np.savez(p, unit=np.array([1, 2]), time_s=np.array([0.5])), ".npz")
    add("table", "npz-truncated", lambda p: (np.savez(p, unit=np.arange(1000), time_s=np.arange(1000.0)), _truncate(p)) and None, ".npz")
    add("table", "parquet-truncated", lambda p: (pd.DataFrame({"unit": np.arange(1000), "time_s": np.arange(1000.0)}).to_parquet(p), _truncate(p)) and None, ".parquet")
    add("table", "samples-no-rate", lambda p: _write(p, b"unit,sample\n1,30\n"), ".csv")
    add("table", "samples-zero-rate", lambda p: _write(p, b"unit,sample,sample_rate\n1,30,0\n"), ".csv")
    add("table", "pickle-renamed", lambda p: _write(p, pickle.dumps(payload(p))), ".npz")
    add("table", "unknown-extension", lambda p: _write(p, b"unit,time_s\n1,0.5\n"), ".xyz")
    return out


def _nwb_file(path: Path, units: bool = True, trains=None) -> Path:
    from datetime import datetime, timezone

    import pynwb

    nwb = pynwb.NWBFile(session_description="s", identifier="x",
                        session_start_time=datetime(2021, 1, 1, tzinfo=timezone.utc))
    if units:
        for train in trains if trains is not None else [np.arange(1.0, 50.0)] * 3:
            nwb.add_unit(spike_times=train)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def write_good_maxwell(path: Path) -> None:
    spikes = np.zeros(500, _maxwell_dtype())
    spikes["frameno"] = np.arange(500) * 20
    spikes["channel"] = np.arange(500) % 7
    _maxwell(path, spikes)


def _maxwell_with_first(path: Path) -> None:
    spikes = np.zeros(2, _maxwell_dtype())
    spikes["frameno"] = [5, 50]
    with h5py.File(path, "w") as f:
        f["proc0/spikeTimes"] = spikes
        sig = np.zeros((1028, 1), np.uint16)
        sig[1026, 0] = 100
        f["sig"] = sig
