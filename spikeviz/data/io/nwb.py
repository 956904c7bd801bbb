"""NWB 2.x files through pynwb: the Units table, with electrode locations where present."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ...errors import SpikevizError
from ..recording import Recording
from ... import _atomic


def _scalar_columns(units) -> dict[str, np.ndarray]:
    info = {}
    for name in units.colnames:
        if name in ("spike_times", "obs_intervals", "electrodes", "waveform_mean", "waveform_sd",
                    "waveforms", "electrode_group"):
            continue
        column = units[name]
        if hasattr(column, "target"):  # ragged column: not one value per unit
            continue
        values = np.asarray(column.data[:])
        if values.ndim == 1:
            info[name] = values
    if "electrodes" in units.colnames:
        try:
            locations = [str(units["electrodes"][i]["location"].iloc[0]) for i in range(len(units))]
            info.setdefault("location", np.array(locations))
        except (KeyError, IndexError):
            pass  # electrode table without a location column
    return info


def read_nwb(path: Path) -> Recording:
    """Read the Units table of an NWB file; duration from obs_intervals, else the last spike."""
    import pynwb

    try:
        io = pynwb.NWBHDF5IO(str(path), mode="r", load_namespaces=True)
        nwbfile = io.read()
    except Exception as exc:
        raise SpikevizError(f"not a readable NWB file ({type(exc).__name__}: {exc})", path) from exc
    try:
        units = nwbfile.units
        if units is None or len(units) == 0:
            raise SpikevizError("the NWB file has no Units table (spike-sorted units)", path)
        ids = np.asarray(units.id.data[:])
        index = np.asarray(units.spike_times_index.data[:])
        flat = np.asarray(units.spike_times.data[:], dtype=np.float64)
        trains = tuple(np.sort(t) for t in np.split(flat, index[:-1])) if len(index) else ()
        stop = float(flat.max()) if flat.size else 0.0
        if "obs_intervals" in units.colnames:
            ends = [np.asarray(units["obs_intervals"][i]) for i in range(len(units))]
            stop = max([stop] + [float(e[:, 1].max()) for e in ends if e.size])
        info = _scalar_columns(units)
        description = units.description
    except SpikevizError:
        raise
    except Exception as exc:
        raise SpikevizError(f"cannot read the Units table ({type(exc).__name__}: {exc})", path) from exc
    finally:
        io.close()
    if stop <= 0:
        raise SpikevizError("the Units table holds no spikes", path)
    source = {"format": "nwb", "path": str(path), "description": description}
    if description.startswith("generated_by: "):   # trains spikeviz generated (io.write_recording)
        try:
            source["generated_by"] = json.loads(description[len("generated_by: "):])
        except ValueError:
            pass  # a description that only looks like ours
    if "unit_name" in info:   # named ids that write_nwb kept beside NWB's integer ones
        ids = info.pop("unit_name").astype(str)
    return Recording(path.name.split(".")[0], ids, trains, stop, source, info)


def write_nwb(recording: Recording, path: Path, description: str = "spike trains",
              session_description: str | None = None) -> None:
    """Write `recording` as an NWB file with a Units table (obs_intervals hold the duration)."""
    import pynwb

    nwbfile = pynwb.NWBFile(
        session_description=session_description or f"spikeviz export of {recording.name}",
        identifier=f"spikeviz-{recording.content_hash()[:16]}",
        session_start_time=datetime(1970, 1, 1, tzinfo=timezone.utc))
    nwbfile.units = pynwb.misc.Units(name="units", description=description)
    extra = {k: v for k, v in recording.unit_info.items()
             if np.asarray(v).dtype.kind in "biufUS"}
    for key in extra:
        nwbfile.add_unit_column(name=key, description=f"{key} from {recording.source.get('format')}")
    integer_ids = np.asarray(recording.unit_ids).dtype.kind in "iu"
    if not integer_ids:  # NWB ids are integers: keep the names in a column
        nwbfile.add_unit_column(name="unit_name", description="unit id in the source")
    for i, (uid, train) in enumerate(zip(recording.unit_ids, recording.spike_times)):
        names = {} if integer_ids else {"unit_name": str(uid)}
        nwbfile.add_unit(id=int(uid) if integer_ids else i, spike_times=train, **names,
                         obs_intervals=[[0.0, recording.duration_s]],
                         **{k: np.asarray(v)[i].item() for k, v in extra.items()})
    with _atomic.target(path) as tmp:
        with pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
