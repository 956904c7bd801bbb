"""Spike-time tables (CSV, Parquet, NPZ): one row per spike, columns `unit` and `time_s` (or `sample`)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataWarning, SpikevizError
from ..recording import Recording, from_unit_times
from ..._atomic import file_sha256
from ... import _atomic

SUFFIXES = (".csv", ".tsv", ".parquet", ".npz")
# What one row a spike cannot hold (every unit, silent ones too, the duration, the provenance) is
# kept as JSON: schema metadata in Parquet, an array in NPZ, and beside a CSV/TSV a sidecar
# `<name>.json` (so the table itself reads with a plain pandas.read_csv) holding the table's
# SHA-256, so a sidecar left beside another table is not believed.
META = "spikeviz"
_CSV_META = f"# {META}: "   # the first line of CSV/TSV tables written before the sidecar


def sidecar_path(path: str | Path) -> Path:
    """Where the metadata of CSV/TSV table `path` lives: `<name>.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _read_meta(path: Path, suffix: str) -> dict:
    """The spikeviz metadata a table written by `write_table` carries ({} for other tables)."""
    where = path
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(META.encode())
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = str(z[META]) if META in z.files else None
        elif sidecar_path(path).is_file():
            where = sidecar_path(path)
            meta = json.loads(where.read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get("sha256") != file_sha256(path):
                import warnings

                warnings.warn(f"{where.name} does not describe this {path.name} (another table's, "
                              f"or the table changed since): ignored", DataWarning, stacklevel=2)
                return {}
            return meta
        else:
            with open(path, encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
            raw = first[len(_CSV_META):] if first.startswith(_CSV_META) else None
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpikevizError(f"unreadable {META} metadata ({exc})", where) from exc

def _separator(path: Path) -> str:
    """The separator of a .csv's header line: a comma, else a semicolon or tab where the header
    has those and no comma."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = next((line for line in fh if line.strip() and not line.startswith("#")), "")
    return max((",", ";", "\t"), key=header.count) if "," not in header else ","


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            sep = "\t" if suffix == ".tsv" else _separator(path)
            # Semicolons are a decimal-comma locale's CSV (Excel in most of Europe): 0,25 is 0.25.
            frame = pd.read_csv(path, sep=sep, comment="#", decimal="," if sep == ";" else ".")
    except ValueError as exc:
        if "pickle" in str(exc):
            raise SpikevizError("the .npz holds object arrays, which would need pickle to load: "
                                "store numbers and strings only", path) from exc
        raise SpikevizError(f"cannot read the table ({exc})", path) from exc
    except (OSError, zipfile.BadZipFile, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SpikevizError(f"cannot read the table ({exc})", path) from exc
    except Exception as exc:  # pyarrow raises its own error types for corrupt Parquet
        raise SpikevizError(f"cannot read the table ({type(exc).__name__}: {exc})", path) from exc
    # Names as typed in a spreadsheet ("unit, time_s") lose their spaces.
    return {str(c).strip(): frame[c].to_numpy() for c in frame.columns}


def _numbers(values: np.ndarray, column: str, path: Path) -> np.ndarray:
    values = np.asarray(values)
    if not values.size:   # a header alone: pandas reads its empty columns as objects
        return np.zeros(0)
    if values.dtype.kind not in "biuf":
        raise SpikevizError(f"column {column!r} must hold numbers, holds {values.dtype}", path)
    return values.astype(np.float64).ravel()


def _first_number(values: np.ndarray, column: str, path: Path) -> float:
    numbers = _numbers(values, column, path)
    if not numbers.size:
        raise SpikevizError(f"column {column!r} is empty", path)
    return float(numbers[0])


def read_table(path: Path, sample_rate: float | None = None) -> Recording:
    """Read a spike-time table; times in `time_s`, or in `sample` with `sample_rate` (column or option).

    Optional columns: `duration_s` (a scalar in NPZ, else the last spike time) and `unit_ids`
    (NPZ only: the full list of units, silent ones included).
    """
    cols = _read_columns(path)
    meta = _read_meta(path, path.suffix.lower())
    if "unit" not in cols:
        raise SpikevizError(f"no 'unit' column (columns: {sorted(cols)})", path)
    if "time_s" in cols:
        times = _numbers(cols["time_s"], "time_s", path)
    elif "sample" in cols:
        rate = sample_rate
        if "sample_rate" in cols:
            file_rate = _first_number(cols["sample_rate"], "sample_rate", path)
            if rate is not None and not np.isclose(rate, file_rate):
                raise SpikevizError(f"the file says {file_rate} Hz but --sample-rate {rate} was given",
                                    path)
            rate = file_rate
        if rate is None:
            raise SpikevizError("times are in samples but no sample rate is known: give "
                                "--sample-rate HZ or a 'sample_rate' column", path)
        if not np.isfinite(rate) or rate <= 0:
            raise SpikevizError(f"the sample rate must be positive, got {rate}", path)
        times = _numbers(cols["sample"], "sample", path) / rate
        sample_rate = rate
    else:
        raise SpikevizError(f"no 'time_s' or 'sample' column (columns: {sorted(cols)})", path)
    units = cols["unit"]
    duration = meta.get("duration_s")
    if "duration_s" in cols:
        duration = _first_number(cols["duration_s"], "duration_s", path)
    order = np.asarray(meta["unit_ids"]) if "unit_ids" in meta else (
        np.asarray(cols["unit_ids"]) if "unit_ids" in cols else None)
    if units.dtype == object or (order is not None and order.dtype.kind == "U"):
        units = units.astype(str)   # ids read as numbers from text files, named ones as strings
    source = {"format": "table", "path": str(path)}
    if sample_rate is not None:
        source["sample_rate"] = float(sample_rate)
    if meta.get("generated_by"):
        source["generated_by"] = meta["generated_by"]
    return from_unit_times(path.name.split(".")[0], units, times, duration, source,
                           unit_order=order)


def write_table(recording: Recording, path: Path) -> None:
    """Write `recording` as a spike-time table (format from the suffix), atomically, with every
    unit in order (silent ones too), the duration and any `generated_by` as metadata."""
    units = np.concatenate([np.full(t.size, u) for u, t in
                            zip(recording.unit_ids, recording.spike_times)])
    times = np.concatenate(recording.spike_times)
    meta = json.dumps({"unit_ids": np.asarray(recording.unit_ids).tolist(),
                       "duration_s": recording.duration_s,
                       "generated_by": recording.source.get("generated_by")})
    suffix = path.suffix.lower()
    with _atomic.target(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, unit=units, time_s=times, duration_s=recording.duration_s,
                                    unit_ids=recording.unit_ids, **{META: np.str_(meta)})
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(pd.DataFrame({"unit": units, "time_s": times}),
                                         preserve_index=False)
            pq.write_table(table.replace_schema_metadata(
                {**(table.schema.metadata or {}), META.encode(): meta.encode()}), tmp)
        elif suffix in (".csv", ".tsv"):
            pd.DataFrame({"unit": units, "time_s": times}).to_csv(
                tmp, sep="\t" if suffix == ".tsv" else ",", index=False, float_format="%.9f")
            # The sidecar lands first: a table that then fails to land leaves a sidecar whose
            # SHA-256 matches nothing, which readers ignore.
            with _atomic.target(sidecar_path(path)) as side:
                side.write_text(json.dumps(json.loads(meta) | {"table": path.name,
                                                               "sha256": file_sha256(tmp)}),
                                encoding="utf-8")
        else:
            raise SpikevizError(f"unknown table suffix {suffix!r}: use one of {SUFFIXES}", path)
