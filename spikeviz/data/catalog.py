"""The catalog of bundled sessions (data/catalog.json): names, files, domains and tick lengths."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import SpikevizError, missing
from .recording import Recording
from .io import load_recording

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Where bundled sessions live: $SPIKEVIZ_DATA, else the repository's data/."""
    return Path(os.environ.get("SPIKEVIZ_DATA", REPO_ROOT / "data"))


def models_dir() -> Path:
    """Where shipped checkpoints live: $SPIKEVIZ_MODELS, else the repository's models/."""
    return Path(os.environ.get("SPIKEVIZ_MODELS", REPO_ROOT / "models"))


@dataclass(frozen=True)
class Session:
    name: str
    file: str
    domain: str
    tick_ms: float
    units: int
    description: str = ""

    @property
    def path(self) -> Path:
        return data_dir() / self.file

    @property
    def short_domain(self) -> str:
        return "vitro" if self.domain == "in vitro" else "vivo"

    def load(self) -> Recording:
        return _load_cached(str(self.path), self.tick_ms)


@lru_cache(maxsize=8)
def _load_cached(path: str, tick_ms: float) -> Recording:
    return load_recording(path, format="asdf", tick_ms=tick_ms)


def sessions() -> list[Session]:
    path = data_dir() / "catalog.json"
    try:
        entries = json.loads(path.read_text())["sessions"]
    except (OSError, ValueError, KeyError) as exc:
        raise SpikevizError(f"cannot read the session catalog ({exc})", path) from exc
    return [Session(**e) for e in entries]


def session(name: str) -> Session:
    """The bundled session called `name` (a unique prefix is enough)."""
    known = sessions()
    exact = [s for s in known if s.name == name]
    matches = exact or [s for s in known if s.name.startswith(name)]
    if len(matches) != 1:
        names = ", ".join(s.name for s in known)
        what = "ambiguous" if matches else "unknown"
        raise SpikevizError(f"{what} session {name!r}: bundled sessions are {names}")
    return matches[0]


def bundled_session(path: str | Path) -> Session | None:
    """The catalogued session stored at `path`, if it is one (so its tick never has to be typed)."""
    try:
        resolved = Path(path).resolve()
        return next((s for s in sessions() if s.path.resolve() == resolved), None)
    except SpikevizError:
        return None


def load_path(path: str | Path, format: str | None = None, tick_ms: float | None = None,
              sample_rate: float | None = None, include_noise: bool = False,
              min_rate_hz: float | None = None) -> Recording:
    """`load_recording`, except that a bundled session's file gets its catalogued tick length
    when none is given (so a user never types a tick for the bundled data)."""
    bundled = bundled_session(path)
    if bundled is not None and format in (None, "asdf") and tick_ms is None:
        return bundled.load()
    return load_recording(path, format=format, tick_ms=tick_ms, sample_rate=sample_rate,
                          include_noise=include_noise, min_rate_hz=min_rate_hz)


def find_session(source: str | Path) -> Session | None:
    """The bundled session that `source` names: an existing path to its file, else its name (a
    unique prefix is enough); None for anything else."""
    if Path(source).expanduser().exists():
        return bundled_session(Path(source).expanduser())
    try:
        return session(str(source))
    except SpikevizError:
        return None


def open_recording(source: str | Path, format: str | None = None, tick_ms: float | None = None,
                   sample_rate: float | None = None, include_noise: bool = False,
                   min_rate_hz: float | None = None) -> Recording:
    """The one way from a name or a path to a Recording, from any working directory.

    An existing file or folder is read (a bundled session's file with its catalogued tick); else
    `source` is a bundled session name. A missing path whose file name is a bundled session's
    file says to use `--session NAME`.
    """
    path = Path(source).expanduser()
    if path.exists():
        return load_path(path, format=format, tick_ms=tick_ms, sample_rate=sample_rate,
                         include_noise=include_noise, min_rate_hz=min_rate_hz)
    try:
        found = sessions()
    except SpikevizError:
        found = []
    named = [s for s in found if s.file == path.name]
    if named:
        raise SpikevizError(f"{source}: no such file or folder in {Path.cwd()}; it is the bundled "
                            f"session {named[0].name}: use --session {named[0].name}")
    if len(path.parts) == 1 and not path.suffix:   # a name
        try:
            return load_session(str(source))
        except SpikevizError as exc:
            raise SpikevizError(f"no such file or folder in {Path.cwd()}, and {exc}") from None
    # A relative path is shown as typed, with where it was looked for; an absolute one by its name.
    if path.is_absolute():
        raise missing(path)
    raise SpikevizError(f"{source}: no such file or folder in {Path.cwd()}")


def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint path from any working directory: an existing file, else a shipped checkpoint
    named by its file name or stem (as `spikeviz sessions` lists them)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    shipped = models_dir() / path.name
    for candidate in (shipped, shipped.with_name(path.name + ".safetensors")):
        if candidate.is_file() and (len(path.parts) == 1 or path.parent.name == models_dir().name):
            return candidate
    raise SpikevizError(f"{source}: no such checkpoint in {Path.cwd()}, and no shipped one of "
                        f"that name (spikeviz sessions lists them)")


def load_session(name: str) -> Recording:
    """Load a bundled session by name with its catalogued tick length (cached: recordings are immutable)."""
    return session(name).load()


def short_domain(domain: str | None) -> str | None:
    return {"in vitro": "vitro", "in vivo": "vivo"}.get(domain or "", domain)


def direction(source_domain: str | None, target_domain: str | None) -> str | None:
    """"vitro->vivo" and the like; None when a domain is unknown."""
    a, b = short_domain(source_domain), short_domain(target_domain)
    return f"{a}->{b}" if a and b else None


def recording_domain(recording: Recording) -> str | None:
    """The catalogued domain of a bundled recording, else None."""
    path = recording.source.get("path")
    s = bundled_session(path) if path else None
    return s.domain if s else None


def shipped_checkpoints(directory: str | Path | None = None) -> list[Path]:
    """The checkpoints in models/ (resume states excluded): generalists first, then by name.

    Subfolders (models/seeds, loso, ablations) hold the runs behind the table, not offered here.
    """
    d = Path(directory) if directory else models_dir()
    found = (p for p in d.glob("*.safetensors") if not p.name.endswith(".state.safetensors"))
    return sorted(found, key=lambda p: (not p.name.startswith("generalist"), p.name))
