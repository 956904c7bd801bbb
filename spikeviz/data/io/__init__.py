"""Reading recordings: format detection and one reader module per file format."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SpikevizError, missing
from ..recording import Recording

FORMATS = ("asdf", "phy", "nwb", "maxwell", "table", "spikeinterface")


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_format(path: Path) -> str:
    """The format of `path`, from its content first and its extension second."""
    from .phy import is_phy_folder
    from .table import SUFFIXES

    if path.is_dir():
        if is_phy_folder(path):
            return "phy"
        if (path / "si_folder.json").exists():
            return "spikeinterface"
        raise SpikevizError("a folder, but not a Kilosort/phy output (no spike_times.npy)", path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise SpikevizError("the file is empty", path)
    if head.startswith(b"MATLAB") or path.suffix.lower() == ".mat":
        return "asdf"
    if head.startswith(_HDF5_MAGIC) or path.suffix.lower() in (".nwb", ".h5", ".hdf5"):
        if path.suffix.lower() == ".nwb":
            return "nwb"
        import h5py

        from .maxwell import is_maxwell

        try:
            with h5py.File(path, "r") as f:
                if is_maxwell(f):
                    return "maxwell"
                if "nwb_version" in f.attrs or "units" in f:
                    return "nwb"
        except (OSError, RuntimeError, ValueError, KeyError) as exc:   # h5py on corrupt files
            raise SpikevizError(f"looks like HDF5 but cannot be read ({exc})", path) from exc
        raise SpikevizError("an HDF5 file that is neither NWB nor a MaxWell recording", path)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return "table"
    raise SpikevizError(f"unknown format (extension {suffix or 'none'}): give --format, one of "
                        f"{', '.join(FORMATS)}", path)


def load_recording(path: str | Path, format: str | None = None, tick_ms: float | None = None,
                   sample_rate: float | None = None, include_noise: bool = False,
                   min_rate_hz: float | None = None) -> Recording:
    """Read a recording from `path` (a file or a Kilosort/phy folder).

    `format` overrides detection; `tick_ms` is needed for asdf files that do not state their tick,
    `sample_rate` for sample-based formats that do not state theirs; `include_noise` keeps
    clusters labelled noise in phy folders, `min_rate_hz` leaves out their clusters firing below
    it (default: phy.UNLABELLED_MIN_RATE_HZ in a folder without cluster labels, else none).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise missing(path)
    for name, value in (("tick_ms", tick_ms), ("sample_rate", sample_rate)):
        if value is not None and not value > 0:
            raise SpikevizError(f"{name} must be positive, got {value}", path)
    if min_rate_hz is not None and not min_rate_hz >= 0:
        raise SpikevizError(f"min_rate_hz must not be negative, got {min_rate_hz}", path)
    fmt = format or detect_format(path)
    if fmt == "asdf":
        from .asdf import read_asdf
        return read_asdf(path, tick_ms)
    if fmt == "phy":
        from .phy import read_phy
        return read_phy(path, sample_rate, include_noise, min_rate_hz)
    if fmt == "nwb":
        from .nwb import read_nwb
        return read_nwb(path)
    if fmt == "maxwell":
        from .maxwell import read_maxwell
        return read_maxwell(path, sample_rate)
    if fmt == "table":
        from .table import read_table
        return read_table(path, sample_rate)
    if fmt == "spikeinterface":
        from .spikeinterface import read_spikeinterface
        return read_spikeinterface(path)
    raise SpikevizError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}", path)


OUTPUT_SUFFIXES = (".nwb", ".csv", ".tsv", ".parquet", ".npz", ".si")


def write_recording(recording: Recording, path: str | Path, **nwb: Any) -> None:
    """Write `recording` where `load_recording` reads it back: an NWB file (.nwb), a spike-time
    table (.csv, .tsv, .parquet, .npz) or a SpikeInterface sorting folder (.si, needs the
    `interop` extra). Generated trains say how they were made (`source["generated_by"]`): in the
    NWB file's notes, a table's metadata, and as the sorting's annotation. `nwb` goes to
    `nwb.write_nwb` (subject, session_start)."""
    import json

    path = Path(path)
    suffix = path.suffix.lower()
    made = recording.source.get("generated_by")
    if nwb and suffix != ".nwb":
        raise SpikevizError(f"{', '.join(nwb)} only apply to NWB output", path)
    if suffix == ".nwb":
        from .nwb import write_nwb

        write_nwb(recording, path, **nwb)
    elif suffix == ".si":
        from .spikeinterface import write_sorting

        write_sorting(recording, path, annotations={"generated_by": json.dumps(made)} if made else {})
    elif suffix in (".csv", ".tsv", ".parquet", ".npz"):
        from .table import write_table

        write_table(recording, path)
    else:
        raise SpikevizError(f"unknown output type {suffix or '(none)'}: use one of "
                            f"{', '.join(OUTPUT_SUFFIXES)}", path)
