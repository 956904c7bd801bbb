"""MaxWell HD-MEA `.raw.h5` spike tables (legacy /proc0/spikeTimes and the newer well layouts).

Layouts as MaxWell writes them (and neo / SpikeInterface read them): legacy files hold /sig
(1028 rows, one column a frame; rows 1026-1027 the first frame number) and /proc0/spikeTimes; newer
files (version 20190530 on) hold data_store/data0000/{spikes, settings/sampling,
groups/routed/frame_nos}, hard-linked as recordings/rec0000/well000. Spike tables are records
(frameno int64, channel int32, amplitude float32); newer files also keep spikes detected before
or after the routed recording, and legacy files after it, which are left out, as MaxWell's own
scripts do (counted in the source's `spikes_outside_recording`)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ...errors import DataWarning, SpikevizError
from ..recording import Recording, from_unit_times
from ... import _atomic

LEGACY_RATE_HZ = 20000.0
LEGACY = "proc0/spikeTimes"
NEWER = ("recordings/rec0000/well000", "data_store/data0000")


def is_maxwell(f) -> bool:
    return LEGACY in f or any(f"{base}/spikes" in f for base in NEWER)


def _first_frame_legacy(f) -> int | None:
    # Legacy files keep the first frame number in the last two rows of /sig (high and low 16 bits).
    sig = f.get("sig")
    if sig is None or sig.ndim != 2 or sig.shape[0] < 1028 or sig.shape[1] == 0:
        return None
    return (int(sig[1027, 0]) << 16) | int(sig[1026, 0])


def _scalar(value, what: str, path: Path) -> float:
    """The one finite number a setting holds."""
    try:
        number = float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError) as exc:
        raise SpikevizError(f"{what} is not a number ({str(value)[:40]})", path) from exc
    if not np.isfinite(number):
        raise SpikevizError(f"{what} is not finite ({number})", path)
    return number


def _read_tables(f, path: Path) -> tuple[np.ndarray, float | None, int | None, str, float | None,
                                         bool]:
    """The spike table, stated rate, first frame, layout, recorded frame count, and whether spikes
    outside the recorded frames are to be left out."""
    n_frames = f.attrs.get("n_frames")
    n_frames = None if n_frames is None else _scalar(n_frames, "n_frames", path)
    if LEGACY in f:
        spikes, rate, first, layout = f[LEGACY][()], LEGACY_RATE_HZ, _first_frame_legacy(f), "legacy"
        if first is not None and n_frames is None:
            n_frames = float(f["sig"].shape[1])    # one column of /sig a frame
        clip = False
    else:
        layout = next((b for b in NEWER if f"{b}/spikes" in f), None)
        if layout is None:
            raise SpikevizError(f"no MaxWell spike table: looked for /{LEGACY} and "
                                f"{', '.join('/' + b + '/spikes' for b in NEWER)}", path)
        spikes = f[f"{layout}/spikes"][()]
        sampling = f.get(f"{layout}/settings/sampling")
        rate = None if sampling is None else _scalar(sampling[()], "settings/sampling", path)
        frames = f.get(f"{layout}/groups/routed/frame_nos")
        frames = None if frames is None else np.asarray(frames[()]).ravel()
        clip = frames is not None and frames.size > 0
        first = None
        if clip:
            first = int(_scalar(frames[:1], "groups/routed/frame_nos", path))
            last = int(_scalar(frames[-1:], "groups/routed/frame_nos", path))
            if n_frames is None:
                n_frames = float(last - first + 1)
    return np.asarray(spikes), rate, first, layout, n_frames, clip


def read_maxwell(path: Path, sample_rate: float | None = None) -> Recording:
    """Read spikes of a MaxWell file; each recording channel becomes a unit.

    Frames are counted from the first frame of the recording (stored in the file; else the
    first spike's frame). The legacy layout is 20 kHz; newer files store their rate.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            spikes, rate, first, layout, n_frames, clip = _read_tables(f, path)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, SpikevizError):
            raise
        # h5py raises all of these on corrupt files (bad symbol tables, addresses past the end).
        raise SpikevizError(f"not a readable MaxWell HDF5 file ({exc})", path) from exc
    if sample_rate is not None:
        if rate is not None and not np.isclose(rate, sample_rate):
            raise SpikevizError(f"the file says {rate} Hz but --sample-rate {sample_rate} was given",
                                path)
        rate = sample_rate
    if rate is None:
        raise SpikevizError("the file does not state its sampling rate: give --sample-rate HZ", path)
    if not rate > 0:
        raise SpikevizError(f"the sampling rate must be positive, got {rate}", path)
    names = spikes.dtype.names or ()
    if not {"frameno", "channel"} <= set(names) or spikes.ndim != 1:
        raise SpikevizError(f"the spike table needs to be a list of records with fields frameno "
                            f"and channel, has fields {list(names)} and shape {spikes.shape}", path)
    for field in ("frameno", "channel"):
        if spikes.dtype[field].kind not in "iu":
            raise SpikevizError(f"{field} must hold integers, holds {spikes.dtype[field]}", path)
    frames = spikes["frameno"].astype(np.int64)
    outside = 0
    if clip or first is not None and n_frames:
        # Legacy files too hold spikes the chip detected after the saved frames: left out as the
        # newer layout's are (a spike before the first frame stays an error there).
        inside = (frames < first + n_frames) & ((frames >= first) if clip else True)
        outside = int((~inside).sum())
        if outside:
            warnings.warn(f"{path.name}: {outside:,} of {frames.size:,} spikes lie outside the recorded "
                          f"frames: left out", DataWarning, stacklevel=2)
        spikes, frames = spikes[inside], frames[inside]
    if frames.size == 0:
        raise SpikevizError("the spike table is empty" + (
            f" inside the recorded frames ({outside} spikes outside)" if outside else ""), path)
    first = int(frames.min()) if first is None else first
    if frames.min() < first:
        raise SpikevizError(f"spike frame {frames.min()} is before the first frame {first}", path)
    times = (frames - first) / rate
    duration = n_frames / rate if n_frames else float(times.max()) + 1.0 / rate
    info = {}
    if "amplitude" in names and spikes.dtype["amplitude"].kind in "iuf":
        channels = spikes["channel"]
        ids = np.unique(channels)
        sums = np.bincount(np.searchsorted(ids, channels),
                           weights=np.abs(spikes["amplitude"].astype(np.float64)),
                           minlength=ids.size)
        info["mean_abs_amplitude"] = sums / np.bincount(np.searchsorted(ids, channels),
                                                        minlength=ids.size)
    return from_unit_times(path.name.split(".")[0], spikes["channel"], times, duration,
                           {"format": "maxwell", "path": str(path), "sample_rate": rate,
                            "layout": layout, "first_frame": first,
                            "spikes_outside_recording": outside}, info)


def write_maxwell(recording: Recording, path: Path, layout: str = "legacy",
                  first_frame: int = 123456, rate: float = LEGACY_RATE_HZ) -> None:
    """Write `recording` as a MaxWell-style spike file (a fixture writer: no raw traces).

    `layout` is "legacy" (/proc0/spikeTimes) or one of NEWER; unit ids must be channel numbers.
    """
    import h5py

    dtype = np.dtype([("frameno", "<i8"), ("channel", "<i4"), ("amplitude", "<f4")])
    rows = []
    for uid, train in zip(recording.unit_ids, recording.spike_times):
        table = np.zeros(train.size, dtype=dtype)
        table["frameno"] = first_frame + np.round(train * rate).astype(np.int64)
        table["channel"] = int(uid)
        table["amplitude"] = -50.0 - (int(uid) % 7)
        rows.append(table)
    spikes = np.concatenate(rows)
    spikes = spikes[np.argsort(spikes["frameno"], kind="stable")]
    with _atomic.target(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["n_frames"] = int(round(recording.duration_s * rate))
            if layout == "legacy":
                if rate != LEGACY_RATE_HZ:
                    raise SpikevizError("the legacy layout is always 20 kHz", path)
                f[LEGACY] = spikes
                sig = np.zeros((1028, 4), dtype=np.uint16)
                sig[1027, 0], sig[1026, 0] = first_frame >> 16, first_frame & 0xFFFF
                f["sig"] = sig
            elif layout in NEWER:
                f[f"{layout}/spikes"] = spikes
                f[f"{layout}/settings/sampling"] = np.array([rate])
                f[f"{layout}/groups/routed/frame_nos"] = first_frame + np.arange(4, dtype=np.int64)
            else:
                raise SpikevizError(f"unknown MaxWell layout {layout!r}", path)
