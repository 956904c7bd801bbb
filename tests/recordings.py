"""Small real recordings written to files, for tests that go through the command line."""
from pathlib import Path

from spikeviz.data.catalog import load_session
from spikeviz.data.io import write_recording


def session_slice(folder: Path, session: str, seconds: float, n_units: int, name: str) -> Path:
    """The first `seconds` and first `n_units` units of a bundled session, as folder/name.npz."""
    rec = load_session(session).slice(0.0, seconds)
    rec = rec.select_units(list(rec.unit_ids[:n_units]))
    path = folder / f"{name}.npz"
    write_recording(rec, path)
    return path
