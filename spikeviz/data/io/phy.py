"""Kilosort / phy output folders: spike_times.npy, spike_clusters.npy and the cluster label tables."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataWarning, SpikevizError
from ..recording import Recording, from_unit_times

# Manual curation (phy's cluster_group.tsv) wins over the automatic Kilosort label.
LABEL_FILES = (("cluster_group.tsv", "group"), ("cluster_info.tsv", "group"),
               ("cluster_KSLabel.tsv", "KSLabel"))
# A folder without any cluster label keeps Kilosort's every template, down to clusters of one
# spike: by default only those firing at this rate or more are kept (min_rate_hz overrides it).
UNLABELLED_MIN_RATE_HZ = 0.1


def is_phy_folder(path: Path) -> bool:
    return path.is_dir() and (path / "spike_times.npy").exists()


def read_params(path: Path) -> dict:
    """The literal assignments of params.py, read without executing it."""
    try:
        tree = ast.parse(path.read_text())
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        raise SpikevizError(f"params.py cannot be parsed ({exc})", path.parent) from exc
    params = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                params[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # not a literal (e.g. a path expression): not needed here
    return params


def _load_npy(path: Path) -> np.ndarray:
    if not path.exists():
        raise SpikevizError(f"{path.name} is missing: a Kilosort/phy folder needs spike_times.npy "
                            "and spike_clusters.npy (or spike_templates.npy)", path.parent)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise SpikevizError(f"{path.name} holds object arrays, which would need pickle to load: "
                                "refused", path.parent) from exc
        raise SpikevizError(f"{path.name} is not a valid .npy file ({exc})", path.parent) from exc
    except (OSError, EOFError) as exc:
        raise SpikevizError(f"{path.name} is truncated or not a .npy file ({exc})", path.parent) from exc
    except Exception as exc:   # numpy's header parser raises SyntaxError, tokenize errors...
        raise SpikevizError(f"{path.name} has a corrupt .npy header ({type(exc).__name__}: {exc})",
                            path.parent) from exc


def _cluster_table(folder: Path) -> pd.DataFrame:
    """One row per cluster id with every column the tsv files give (label in 'label')."""
    table = None
    for name in ("cluster_info.tsv", "cluster_group.tsv", "cluster_KSLabel.tsv"):
        path = folder / name
        if not path.exists():
            continue
        try:
            frame = pd.read_csv(path, sep="\t")
        except Exception as exc:
            raise SpikevizError(f"{name} cannot be read ({exc})", folder) from exc
        key = "cluster_id" if "cluster_id" in frame.columns else "id" if "id" in frame.columns else None
        if key is None:
            raise SpikevizError(f"{name} has no cluster_id column (columns: {list(frame.columns)})",
                                folder)
        ids = pd.to_numeric(frame[key], errors="coerce")
        if ids.isna().any() or (ids % 1 != 0).any() or ids.abs().gt(2**62).any():
            bad = frame[key][ids.isna() | (ids % 1 != 0) | ids.abs().gt(2**62)].iloc[0]
            raise SpikevizError(f"{name}: cluster id {str(bad)[:40]!r} is not an integer", folder)
        frame = frame.assign(**{key: ids.astype(np.int64)})
        frame = frame.rename(columns={key: "cluster_id"}).set_index("cluster_id")
        if not frame.index.is_unique:
            raise SpikevizError(f"{name}: cluster ids are repeated", folder)
        table = frame if table is None else table.combine_first(frame)
        if name == "cluster_group.tsv" and "group" in frame.columns:
            table["group"] = frame["group"].reindex(table.index).fillna(table.get("group"))
    if table is None:
        return pd.DataFrame()
    label = None
    for _, column in reversed(LABEL_FILES):
        if column in table.columns:
            values = table[column].astype("string")
            label = values if label is None else values.fillna(label)
    if label is not None:
        table["label"] = label
    return table


def read_phy(folder: Path, sample_rate: float | None = None, include_noise: bool = False,
             min_rate_hz: float | None = None) -> Recording:
    """Read a Kilosort/phy folder; noise-labelled clusters are left out unless `include_noise`.

    Clusters firing below `min_rate_hz` (over the folder's duration) are left out; by default
    none in a labelled folder, and in a folder without labels those below
    UNLABELLED_MIN_RATE_HZ, with a DataWarning saying so."""
    params_path = folder / "params.py"
    params = read_params(params_path) if params_path.exists() else {}
    rate = params.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise SpikevizError(f"params.py: sample_rate must be a number, got {rate!r}", folder)
    if rate is not None and sample_rate is not None and not np.isclose(rate, sample_rate):
        raise SpikevizError(f"params.py says {rate} Hz but --sample-rate {sample_rate} was given",
                            folder)
    rate = sample_rate if rate is None else float(rate)
    if rate is None:
        raise SpikevizError("no params.py with sample_rate in this folder: give --sample-rate HZ "
                            "(sample_rate=...)", folder)
    if not np.isfinite(rate) or rate <= 0:
        raise SpikevizError(f"the sample rate must be positive, got {rate}", folder)
    samples = _load_npy(folder / "spike_times.npy").ravel()
    cluster_path = folder / "spike_clusters.npy"
    if not cluster_path.exists():
        cluster_path = folder / "spike_templates.npy"
    clusters = _load_npy(cluster_path).ravel()
    if samples.size != clusters.size:
        raise SpikevizError(f"spike_times.npy has {samples.size} spikes but {cluster_path.name} "
                            f"has {clusters.size}", folder)
    if not np.issubdtype(samples.dtype, np.number):
        raise SpikevizError(f"spike_times.npy: spike times must be numbers, got {samples.dtype}",
                            folder)
    if not np.issubdtype(clusters.dtype, np.integer):
        raise SpikevizError(f"{cluster_path.name}: cluster ids must be integers, got "
                            f"{clusters.dtype}", folder)
    table = _cluster_table(folder)
    # Clusters listed in the tables but without spikes in this file are still units (silent ones).
    ids = np.union1d(np.unique(clusters), table.index.to_numpy(dtype=clusters.dtype)
                     if len(table) else np.array([], clusters.dtype))
    if "label" in table.columns and not include_noise:
        noise = set(table.index[table["label"].str.lower() == "noise"].tolist())
        ids = np.array([c for c in ids if int(c) not in noise], dtype=ids.dtype)
        keep = np.isin(clusters, ids)
        samples, clusters = samples[keep], clusters[keep]
    duration = float(samples.max() + 1) / rate if samples.size else None
    unlabelled = min_rate_hz is None and "label" not in table.columns
    floor = UNLABELLED_MIN_RATE_HZ if unlabelled else min_rate_hz
    if floor and duration:
        kept = _active(ids, clusters, duration, floor)
        if not kept.size:
            raise SpikevizError(f"no cluster fires at {floor:g} Hz or more"
                                + (" (the default without cluster labels)" if unlabelled else "")
                                + ": lower --min-rate", folder)
        found, ids = ids.size, kept
        keep = np.isin(clusters, ids)
        samples, clusters = samples[keep], clusters[keep]
    info = {}
    for column in table.columns:
        values = table[column].reindex(ids)
        info[column] = values.to_numpy(dtype=object if values.dtype == object else None)
    source = {"format": "phy", "path": str(folder), "sample_rate": rate,
              "include_noise": include_noise, "min_rate_hz": floor or 0.0}
    times = samples.astype(np.float64) / rate
    recording = from_unit_times(folder.name, clusters, times, duration, source, info,
                                unit_order=ids)
    if unlabelled and floor and duration:   # said once the folder has loaded, not before a refusal
        import warnings

        warnings.warn(f"{folder.name}: no cluster labels (cluster_group.tsv, cluster_KSLabel.tsv, "
                      f"cluster_info.tsv): kept the {ids.size} of {found} clusters firing at "
                      f"{floor:g} Hz or more (--min-rate HZ changes it; 0 keeps all)",
                      DataWarning, stacklevel=2)
    return recording


def _active(ids: np.ndarray, clusters: np.ndarray, duration: float,
            min_rate_hz: float) -> np.ndarray:
    """The cluster ids among `ids` with at least `min_rate_hz` x `duration` spikes."""
    found, counts = np.unique(clusters, return_counts=True)
    count = dict(zip(found.tolist(), counts.tolist()))
    return ids[[count.get(int(c), 0) >= min_rate_hz * duration for c in ids]]
