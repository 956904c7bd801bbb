"""NWB 2.x files through pynwb: the Units table, with electrode locations where present."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..._version import __version__
from ...errors import SpikevizError
from ..recording import Recording
from ... import _atomic

_GENERATED = "generated_by: "
SUBJECT_FIELDS = ("subject_id", "species", "sex", "age", "date_of_birth", "description",
                  "strain", "genotype", "weight")
# When neither the options nor the source say: an unknown subject (NWB's sex "U"), of any age
# ("P0D/": 0 days or older), of an unknown animal species: NCBI's Metazoa, the least a spike
# recording claims. The command line names the options that set them.
SUBJECT_DEFAULTS = {"subject_id": "unknown", "species": "http://purl.obolibrary.org/obo/NCBITaxon_33208",
                    "sex": "U", "age": "P0D/"}


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
        if not np.isfinite(flat).all():   # before the duration is taken from them
            raise SpikevizError(f"{int((~np.isfinite(flat)).sum())} spike times are NaN or infinite", path)
        trains = tuple(np.sort(t) for t in np.split(flat, index[:-1])) if len(index) else ()
        stop = float(flat.max()) if flat.size else 0.0
        if "obs_intervals" in units.colnames:
            ends = [np.asarray(units["obs_intervals"][i]) for i in range(len(units))]
            stop = max([stop] + [float(e[:, 1].max()) for e in ends if e.size])
        info = _scalar_columns(units)
        description = units.description
        carried = _carried(nwbfile, units)
    except SpikevizError:
        raise
    except Exception as exc:
        raise SpikevizError(f"cannot read the Units table ({type(exc).__name__}: {exc})", path) from exc
    finally:
        io.close()
    if stop <= 0:
        raise SpikevizError("the Units table holds no spikes", path)
    source = {"format": "nwb", "path": str(path), "description": description} | carried
    # Trains spikeviz generated: the provenance is in the file's notes (in the Units description
    # in files that earlier versions wrote).
    for text in (carried.pop("notes", ""), description):
        if text.startswith(_GENERATED):
            try:
                source["generated_by"] = json.loads(text[len(_GENERATED):])
                break
            except ValueError:
                pass  # a text that only looks like ours
    if "unit_name" in info:   # named ids that write_nwb kept beside NWB's integer ones
        ids = info.pop("unit_name").astype(str)
    return Recording(path.name.split(".")[0], ids, trains, stop, source, info)


def _carried(nwbfile, units) -> dict[str, Any]:
    """What a written copy should keep of a file's own metadata: session start, subject, units
    resolution, session and lab fields, notes."""
    out: dict[str, Any] = {"session_start_time": nwbfile.session_start_time.isoformat()}
    subject = nwbfile.subject
    if subject is not None:
        fields = {k: getattr(subject, k, None) for k in SUBJECT_FIELDS}
        out["subject"] = {k: v.isoformat() if isinstance(v, datetime) else str(v)
                          for k, v in fields.items() if v is not None}
    resolution = getattr(units, "resolution", None)
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        out["resolution"] = float(resolution)
    for key in ("session_id", "institution", "lab", "experimenter", "notes"):
        value = getattr(nwbfile, key, None)
        if value is not None:
            out[key] = list(value) if key == "experimenter" else str(value)
    return out


def session_metadata(recording: Recording, subject: dict[str, str] | None = None,
                     session_start: datetime | None = None
                     ) -> tuple[dict[str, str], datetime, list[str]]:
    """The Subject fields and session start an NWB copy of `recording` gets: those given, else
    those its source carried (an NWB file's, or a generated train's data's), else defaults (an
    unknown subject of an unknown animal species, the time of writing); and the options
    (--subject-id, --species, --sex, --age, --session-start) whose defaults were used."""
    given = {k: v for k, v in (subject or {}).items() if v is not None}
    carried = recording.source.get("subject") or {}
    fields = {k: v for k, v in carried.items() if k in SUBJECT_FIELDS} | given
    defaulted = []
    for key, default in SUBJECT_DEFAULTS.items():
        if key == "age" and "date_of_birth" in fields:
            continue   # NWB needs an age or a date of birth, not both
        if key not in fields:
            fields[key] = default
            defaulted.append("--" + key.replace("_", "-"))
    start = session_start or (datetime.fromisoformat(recording.source["session_start_time"])
                              if recording.source.get("session_start_time") else None)
    if start is None:
        start = datetime.now(timezone.utc).replace(microsecond=0)
        defaulted.append("--session-start")
    return fields, start if start.tzinfo else start.astimezone(), defaulted


def resolution_of(recording: Recording) -> float | None:
    """The smallest step between two spike times (s): the bin of generated trains, else the
    source's tick or sample period; None when unknown."""
    made, src = recording.source.get("generated_by") or {}, recording.source
    for value, scale in ((made.get("bin_ms"), 1e-3), (src.get("resolution"), 1.0),
                         (src.get("tick_ms"), 1e-3)):
        if isinstance(value, (int, float)) and value > 0:
            return float(value) * scale
    rate = src.get("sample_rate")
    return 1.0 / float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def generation_text(made: dict[str, Any]) -> str:
    """How generated trains were made, in words (an NWB file's Units and data_collection)."""
    how = {"teacher": "teacher-forced: each bin drawn given the real past",
           "free": "free-running: the model's own draws fed back"}.get(made.get("mode"),
                                                                      str(made.get("mode")))
    draw = (f"threshold {made['threshold']:g}" if isinstance(made.get("threshold"), (int, float))
            else f"{made.get('draw') or 'bernoulli'} draws, seed {made.get('seed')}")
    return (f"Spike trains generated by spikeviz {made.get('spikeviz_version', __version__)} with "
            f"the model {made.get('generator') or made.get('checkpoint')}"
            + (f" blended with {made['blended_with']}" if made.get("blended_with") else "")
            + f", {how}; {draw}; "
            f"{made.get('bin_ms') or 1.0:g}-ms bins; continuing {made.get('data')} at "
            f"{made.get('start_s', 0.0):g} s (times count from there). Not recorded spikes.")


def write_nwb(recording: Recording, path: Path, description: str | None = None,
              session_description: str | None = None, subject: dict[str, str] | None = None,
              session_start: datetime | None = None) -> None:
    """Write `recording` as an NWB file with a Units table (obs_intervals hold the duration), a
    Subject and session start (`session_metadata`), units `resolution` (`resolution_of`), and for
    generated trains how they were made: in words in the Units description and data_collection,
    as JSON in the notes, spikeviz and its version in was_generated_by."""
    import pynwb
    from pynwb.file import Subject

    made = recording.source.get("generated_by")
    fields, start, _ = session_metadata(recording, subject, session_start)
    keep = {k: recording.source[k] for k in ("session_id", "institution", "lab", "experimenter")
            if recording.source.get(k)}
    if fields.get("date_of_birth"):
        fields["date_of_birth"] = datetime.fromisoformat(fields["date_of_birth"])
    nwbfile = pynwb.NWBFile(
        session_description=session_description or (
            f"spike trains generated by spikeviz from {made.get('data')}" if made
            else f"spikeviz export of {recording.name}"),
        identifier=f"spikeviz-{recording.content_hash()[:16]}",
        session_start_time=start, subject=Subject(**fields),
        was_generated_by=[["spikeviz", __version__]],
        keywords=["spike trains"] + ["generated"] * bool(made),
        data_collection=generation_text(made) if made else None,
        notes=_GENERATED + json.dumps(made) if made else recording.source.get("notes"), **keep)
    nwbfile.units = pynwb.misc.Units(
        name="units", resolution=resolution_of(recording),
        description=description or (generation_text(made) if made else
                                    f"spike trains of {recording.name}"))
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
