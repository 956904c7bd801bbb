"""Property-based fuzzing of every loader: whatever the bytes, a recording or a SpikevizError naming
the file, and from `spikeviz inspect` exit status 0 or one error line with status 2.

The default profile tries a few examples per loader; `benchmarks/bench_fuzz.py` runs the same
tests under the "large" profile (tests/conftest.py registers both)."""
from __future__ import annotations

import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spikeviz import SpikevizError, load_recording
from spikeviz.cli import main
from spikeviz.data.io.maxwell import LEGACY, NEWER

from .corpus import _cells, _good_cells, _nwb_file, write_good_maxwell

COLUMNS = ["unit", "time_s", "sample", "sample_rate", "duration_s", "unit_ids", "cluster_id", "id",
           "group", "KSLabel", "depth", ""]
DTYPES = [np.int8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_,
          np.complex128, "U3", "S3"]
ENCODINGS = ["utf-8", "utf-16", "latin-1", "utf-8-sig", "cp1252"]

# One cell of a table or a literal in a file: mixed types, huge values, NaN and infinity.
cells = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(0, 10**6), st.floats(),
                  st.floats(0, 1e4), st.text(max_size=6), st.booleans(), st.none())
arrays = hnp.arrays(st.sampled_from(DTYPES),
                    hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))
options = st.fixed_dictionaries({}, optional={
    "sample_rate": st.sampled_from([30000.0, 20000.0, 1.0, 1e-300, 1e300]),
    "tick_ms": st.sampled_from([1.0, 0.1, 1e-300])})


def loads_or_refuses(path: Path, opts: dict | None = None) -> None:
    """The property: the library loads `path` or raises SpikevizError naming it, and the CLI agrees
    (status 0, or one `spikeviz: error: NAME: ...` line and status 2)."""
    opts = opts or {}
    try:
        load_recording(path, **opts)
        loaded = True
    except SpikevizError as exc:
        assert str(exc).startswith(f"{path.name}: "), str(exc)
        loaded = False
    argv = ["inspect", str(path)] + [a for k, v in opts.items()
                                     for a in (f"--{k.replace('_', '-')}", repr(v))]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == (0 if loaded else 2), (status, err.getvalue())
    if not loaded:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"spikeviz: error: {path.name}: "), lines


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@st.composite
def corrupted(draw, base: bytes) -> bytes:
    """`base` truncated, with bytes flipped, overwritten or inserted."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert"]))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def text_table(draw, names: list[str], sep: str) -> bytes:
    """A delimited table with mixed-type cells, in a drawn text encoding."""
    rows = draw(st.lists(st.lists(cells, min_size=len(names), max_size=len(names)), max_size=8))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep)
    writer.writerow(names)
    writer.writerows(rows)
    return buf.getvalue().encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


@st.composite
def delimited(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".csv", ".tsv"]))
    names = draw(st.lists(st.sampled_from(COLUMNS), max_size=5, unique=True))
    return suffix, text_table(draw, names, "\t" if suffix == ".tsv" else ",")


# --- spike-time tables -----------------------------------------------------------------------

@given(delimited(), options)
def test_delimited_tables(table, opts):
    suffix, data = table
    with scratch() as d:
        (d / f"t{suffix}").write_bytes(data)
        loads_or_refuses(d / f"t{suffix}", opts)


@given(st.dictionaries(st.sampled_from(COLUMNS), arrays, max_size=5), options)
def test_npz_tables(columns, opts):
    with scratch() as d:
        np.savez(d / "t.npz", **{k or "_": v for k, v in columns.items()})
        loads_or_refuses(d / "t.npz", opts)


@given(st.dictionaries(st.sampled_from(COLUMNS[:6]), st.sampled_from(DTYPES[:-3] + ["U3"]),
                       min_size=1, max_size=4), st.integers(0, 6), st.data())
def test_parquet_tables(dtypes, n, data):
    columns = {k: data.draw(hnp.arrays(dt, n)) for k, dt in dtypes.items()}
    with scratch() as d:
        pd.DataFrame(columns).to_parquet(d / "t.parquet")
        loads_or_refuses(d / "t.parquet")


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".csv"])
@given(data=st.data())
def test_corrupted_tables(suffix, data):
    with scratch() as d:
        good = d / f"good{suffix}"
        frame = pd.DataFrame({"unit": np.arange(40) % 4, "time_s": np.arange(40) / 10.0})
        if suffix == ".npz":
            np.savez(good, unit=frame.unit.to_numpy(), time_s=frame.time_s.to_numpy())
        elif suffix == ".parquet":
            frame.to_parquet(good)
        else:
            frame.to_csv(good, index=False)
        (d / f"t{suffix}").write_bytes(data.draw(corrupted(good.read_bytes())))
        loads_or_refuses(d / f"t{suffix}")


# --- Kilosort / phy folders -----------------------------------------------------------------

@st.composite
def phy_folders(draw) -> dict[str, bytes | np.ndarray]:
    files: dict[str, bytes | np.ndarray] = {
        "spike_times.npy": draw(st.one_of(arrays, hnp.arrays(np.uint64, st.integers(0, 8)))),
        draw(st.sampled_from(["spike_clusters.npy", "spike_templates.npy"])):
            draw(st.one_of(arrays, hnp.arrays(np.int32, st.integers(0, 8), elements=st.integers(0, 4)))),
    }
    params = draw(st.one_of(st.none(), st.text(max_size=30),
                            cells.map(lambda v: f"sample_rate = {v!r}\n")))
    if params is not None:
        files["params.py"] = params.encode("utf-8", errors="replace")
    for name in ("cluster_group.tsv", "cluster_info.tsv", "cluster_KSLabel.tsv"):
        if draw(st.booleans()):
            names = draw(st.lists(st.sampled_from(COLUMNS[6:]), min_size=1, max_size=4, unique=True))
            files[name] = text_table(draw, names, "\t")
    return files


@given(phy_folders(), st.sampled_from([{}, {"sample_rate": 30000.0}]))
def test_phy_folders(files, opts):
    with scratch() as d:
        folder = d / "phy"
        folder.mkdir()
        for name, content in files.items():
            if isinstance(content, np.ndarray):
                np.save(folder / name, content)
            else:
                (folder / name).write_bytes(content)
        loads_or_refuses(folder, opts)


@given(st.sampled_from(["spike_times.npy", "spike_clusters.npy", "cluster_group.tsv", "params.py"]),
       st.data())
def test_corrupted_phy_files(name, data):
    with scratch() as d:
        folder = d / "phy"
        folder.mkdir()
        np.save(folder / "spike_times.npy", np.arange(0, 3000, 100, dtype=np.uint64))
        np.save(folder / "spike_clusters.npy", np.arange(30, dtype=np.int32) % 3)
        (folder / "params.py").write_text("sample_rate = 30000.0\n")
        (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n0\tgood\n1\tnoise\n2\tmua\n")
        target = folder / name
        target.write_bytes(data.draw(corrupted(target.read_bytes())))
        loads_or_refuses(folder)


# --- asdf .mat ----------------------------------------------------------------------------------

@given(st.lists(st.one_of(arrays, st.text(max_size=4)), min_size=0, max_size=4),
       st.one_of(arrays, st.sampled_from([np.array([[1.0]]), np.zeros((1, 0))])),
       st.one_of(arrays, st.lists(cells, max_size=3).map(lambda v: np.array(v, dtype=object))),
       options)
def test_asdf_cells(units, tick, footer, opts):
    with scratch() as d:
        try:
            scipy.io.savemat(d / "a.mat", {"asdf": _cells([*units, tick, footer])})
        except (TypeError, ValueError, OverflowError):
            assume(False)   # scipy cannot write it: nothing to load
        loads_or_refuses(d / "a.mat", opts)


@given(st.data())
def test_corrupted_asdf(data):
    with scratch() as d:
        scipy.io.savemat(d / "good.mat", {"asdf": _cells(_good_cells())})
        (d / "a.mat").write_bytes(data.draw(corrupted((d / "good.mat").read_bytes())))
        loads_or_refuses(d / "a.mat", {"tick_ms": 1.0})


# --- MaxWell ------------------------------------------------------------------------------------

@st.composite
def spike_tables(draw) -> np.ndarray:
    fields = draw(st.lists(st.sampled_from(["frameno", "channel", "amplitude", "junk"]),
                           max_size=4, unique=True))
    if not fields:
        return draw(arrays)
    dtype = np.dtype([(f, draw(st.sampled_from(["<i8", "<i4", "<u8", "<f4", "<f8", "S3"])))
                      for f in fields])
    return draw(hnp.arrays(dtype, st.integers(0, 8)))


@given(st.sampled_from([LEGACY, *(f"{b}/spikes" for b in NEWER)]), spike_tables(),
       st.fixed_dictionaries({}, optional={"settings/sampling": arrays,
                                           "groups/routed/frame_nos": arrays,
                                           "sig": hnp.arrays(np.uint16, st.sampled_from([(1028, 1), (1028, 0), (3, 3)]))}),
       st.one_of(st.none(), cells), st.sampled_from([{}, {"sample_rate": 20000.0}]))
def test_maxwell_files(table, spikes, extra, n_frames, opts):
    with scratch() as d:
        path = d / "m.raw.h5"
        base = table.rsplit("/", 1)[0] if table != LEGACY else ""
        try:
            with h5py.File(path, "w") as f:
                f[table] = spikes
                for key, value in extra.items():
                    f[key if key == "sig" else f"{base}/{key}"] = value
                if n_frames is not None:
                    f.attrs["n_frames"] = n_frames
        except (TypeError, ValueError):
            assume(False)   # h5py cannot store it (e.g. unicode arrays)
        loads_or_refuses(path, opts)


@given(st.data())
def test_corrupted_maxwell(data):
    with scratch() as d:
        write_good_maxwell(d / "good.raw.h5")
        (d / "m.raw.h5").write_bytes(data.draw(corrupted((d / "good.raw.h5").read_bytes())))
        loads_or_refuses(d / "m.raw.h5")


# --- NWB ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_nwb(tmp_path_factory) -> bytes:
    return _nwb_file(tmp_path_factory.mktemp("nwb") / "good.nwb").read_bytes()


@given(data=st.data())
def test_corrupted_nwb(good_nwb, data):
    with scratch() as d:
        (d / "n.nwb").write_bytes(data.draw(corrupted(good_nwb)))
        loads_or_refuses(d / "n.nwb")


@given(data=st.data(), replaced=st.dictionaries(
    st.sampled_from(["units/spike_times", "units/spike_times_index", "units/id",
                     "units/obs_intervals"]), arrays, min_size=1, max_size=3))
def test_nwb_with_replaced_unit_columns(good_nwb, data, replaced):
    with scratch() as d:
        path = d / "n.nwb"
        path.write_bytes(good_nwb)
        try:
            with h5py.File(path, "a") as f:
                for key, value in replaced.items():
                    if key in f:
                        del f[key]
                    f[key] = value
        except (TypeError, ValueError):
            assume(False)
        loads_or_refuses(path)


# --- SpikeInterface folders ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_sorting(tmp_path_factory) -> Path:
    pytest.importorskip("spikeinterface")
    from spikeviz.data.io.spikeinterface import write_sorting
    from spikeviz.data.recording import Recording

    folder = tmp_path_factory.mktemp("si") / "good.si"
    rec = Recording("r", np.arange(3), tuple(np.arange(1.0, 4.0) + u for u in range(3)), 10.0,
                    {"sample_rate": 1000.0})
    write_sorting(rec, folder, annotations={"generated_by": "{}"})
    return folder


@given(data=st.data())
def test_corrupted_spikeinterface_folders(good_sorting, data):
    files = sorted(p.relative_to(good_sorting) for p in good_sorting.rglob("*") if p.is_file())
    name = data.draw(st.sampled_from(files))
    with scratch() as d:
        folder = d / "s.si"
        shutil.copytree(good_sorting, folder)
        target = folder / name
        target.write_bytes(data.draw(corrupted(target.read_bytes())))
        loads_or_refuses(folder)
