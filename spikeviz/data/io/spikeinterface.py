"""Bridges to SpikeInterface: any BaseSorting in, NumpySorting out, and folders SpikeInterface reads."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from ...errors import SpikevizError
from ..recording import Recording

EXTRA = "interop"


def require(module: str):
    """Import an optional bridge dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SpikevizError(f"{module.split('.')[0]} is not installed: pip install "
                            f"'spikeviz[{EXTRA}]'") from exc


def _segment_samples(sorting, segment: int) -> int:
    if sorting.has_recording() or getattr(sorting, "_recording", None) is not None:
        return int(sorting.get_num_samples(segment))
    last = [sorting.get_unit_spike_train(u, segment_index=segment) for u in sorting.unit_ids]
    return int(max((t.max() for t in last if t.size), default=0)) + 1


def from_sorting(sorting, name: str | None = None, segment: int | None = None) -> Recording:
    """A Recording from any `spikeinterface.core.BaseSorting`.

    Segments are concatenated in order (each starting where the previous ended) unless `segment`
    picks one. Unit properties (quality, depth, brain area...) become per-unit extras.
    """
    require("spikeinterface.core")
    rate = float(sorting.get_sampling_frequency())
    n_segments = sorting.get_num_segments()
    segments = range(n_segments) if segment is None else [segment]
    if segment is not None and not 0 <= segment < n_segments:
        raise SpikevizError(f"segment {segment} does not exist: the sorting has {n_segments}")
    ids = np.asarray(sorting.unit_ids)
    if ids.size == 0:
        raise SpikevizError("the sorting has no units")
    trains = [[] for _ in ids]
    offset = 0
    for seg in segments:
        for i, uid in enumerate(ids):
            trains[i].append(sorting.get_unit_spike_train(uid, segment_index=seg).astype(np.int64) + offset)
        offset += _segment_samples(sorting, seg)
    spike_times = tuple(np.sort(np.concatenate(t)).astype(np.float64) / rate for t in trains)
    info = {}
    for key in sorting.get_property_keys():
        values = np.asarray(sorting.get_property(key))
        if values.ndim == 1 and len(values) == len(ids):
            info[key] = values
    source = {"format": "spikeinterface", "sample_rate": rate, "extractor": type(sorting).__name__,
              "segments": list(segments)}
    made = sorting.get_annotation("generated_by") if "generated_by" in sorting.get_annotation_keys() else None
    if made:
        try:
            source["generated_by"] = json.loads(made)
        except (TypeError, ValueError):
            source["generated_by"] = {"unreadable": str(made)[:200]}
    duration = offset / rate
    if segment is None and "duration_s" in sorting.get_annotation_keys():   # from write_sorting
        duration = max(duration, float(sorting.get_annotation("duration_s")))
    path = getattr(sorting, "_kwargs", {}).get("folder_path") or getattr(sorting, "_kwargs", {}).get("file_path")
    if path:
        source["path"] = str(path)
    return Recording(name or type(sorting).__name__, ids, spike_times, duration, source, info)


def _sampling_rate(recording: Recording) -> float:
    """The recording's own time base: its sample rate, 1 / tick, 1 / bin for generated trains,
    else 30 kHz."""
    src = recording.source
    if src.get("sample_rate"):
        return float(src["sample_rate"])
    step_ms = src.get("tick_ms") or (src.get("generated_by") or {}).get("bin_ms")
    return 1000.0 / step_ms if step_ms else 30000.0


def to_sorting(recording: Recording, sampling_frequency: float | None = None):
    """`recording` as a SpikeInterface NumpySorting (times rounded to samples), extras as properties."""
    sc = require("spikeinterface.core")
    rate = sampling_frequency or _sampling_rate(recording)
    units = {uid: np.round(t * rate).astype(np.int64)
             for uid, t in zip(recording.unit_ids.tolist(), recording.spike_times)}
    sorting = sc.NumpySorting.from_unit_dict([units], sampling_frequency=float(rate))
    for key, values in recording.unit_info.items():
        values = np.asarray(values)
        if values.dtype.kind in "biufUS":
            sorting.set_property(key, values)
    return sorting


def write_sorting(recording: Recording, folder: Path, annotations: dict | None = None) -> None:
    """Save `recording` as a SpikeInterface sorting folder, atomically (a temporary folder beside
    it, then a rename); an existing folder is replaced."""
    import os
    import shutil
    import tempfile
    import warnings

    sorting = to_sorting(recording, sampling_frequency=_sampling_rate(recording))
    # A sorting without a recording ends at its last spike: keep the real end.
    sorting.annotate(duration_s=float(recording.duration_s))
    for key, value in (annotations or {}).items():
        sorting.annotate(**{key: value})
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with warnings.catch_warnings():   # "not serializable: provenance not saved" is expected
            warnings.simplefilter("ignore", UserWarning)
            sorting.save(folder=tmp / "sorting")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp / "sorting", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PICKLES = (".pkl", ".pickle")


def unsafe_for_spikeinterface(path: Path) -> str | None:
    """Why SpikeInterface's loader must not open `path`, or None. It runs what a file tells it to:
    it unpickles `.pkl`/`.pickle` files and zarr arrays with the pickle codec, and calls whatever
    class a JSON description names (any importable callable, with the file's arguments). So a
    file or folder may hold no pickle, and every class its JSON files name must be one of
    SpikeInterface's extractors."""
    base = require("spikeinterface.core.base")
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for f in files:
        shown = f.name if f == path else str(f.relative_to(path))
        if f.suffix.lower() in PICKLES:
            return f"{shown} is a Python pickle, which SpikeInterface would unpickle (running any code in it)"
        if f.suffix == ".json" or f.name in (".zarray", ".zattrs", ".zgroup", "zarr.json"):
            try:
                described = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                continue   # not a description SpikeInterface could act on either
            for node in _dicts(described):
                if node.get("id") == "pickle":
                    return f"{shown} stores arrays with the pickle codec, which SpikeInterface would unpickle"
                named = node.get("class")
                if isinstance(named, str) and not _is_extractor(named, base.BaseExtractor):
                    return (f"{shown} names the class {named[:80]!r}, which is not a SpikeInterface "
                            "extractor, and SpikeInterface would call it")
    return None


def _dicts(value):
    """Every dict inside a JSON value, itself included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


def _is_extractor(name: str, extractor: type) -> bool:
    """`name` ("module.Class") is a SpikeInterface extractor class; only SpikeInterface's own
    modules are imported to tell."""
    module, _, attribute = name.rpartition(".")
    if module.split(".")[0] != "spikeinterface":
        return False
    try:
        found = getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return False
    return isinstance(found, type) and issubclass(found, extractor)


def read_spikeinterface(path: Path) -> Recording:
    """Open a folder or file with SpikeInterface: a saved sorting (`spikeinterface.load`, unless
    it holds something that loader would run: unsafe_for_spikeinterface), else the matching
    extractor (phy/Kilosort folder, NWB file, MaxWell file)."""
    si = require("spikeinterface")
    se = require("spikeinterface.extractors")
    refused = unsafe_for_spikeinterface(path)
    attempts, errors = ([] if refused else [lambda: si.load(path)]), []
    if path.is_dir() and (path / "spike_times.npy").exists():
        attempts.append(lambda: se.read_phy(path))
    if path.suffix == ".nwb":
        attempts.append(lambda: se.read_nwb_sorting(path))
    for attempt in attempts:
        try:
            sorting = attempt()
            if not hasattr(sorting, "get_unit_spike_train"):
                errors.append(f"{type(sorting).__name__} is not a sorting")
                continue
            # A damaged folder may load and only fail when its spikes are read.
            rec = from_sorting(sorting, name=path.name.split(".")[0])
        except Exception as exc:  # each reader raises its own types; keep them for the message
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        return Recording(rec.name, rec.unit_ids, rec.spike_times, rec.duration_s,
                         dict(rec.source, path=str(path)), rec.unit_info)
    if refused:
        raise SpikevizError(f"not opened: {refused}. Save the sorting again with SpikeInterface's "
                            "`sorting.save(folder=...)` (JSON and NumPy files) in a process you trust"
                            + (f" ({'; '.join(errors)[:200]})" if errors else ""), path)
    raise SpikevizError(f"SpikeInterface cannot read it as a sorting ({'; '.join(errors)[:300]})", path)
