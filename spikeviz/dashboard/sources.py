"""What the dashboard may open: bundled sessions, files under allowed roots, shipped checkpoints."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..data.catalog import data_dir, load_path, models_dir, session, sessions
from ..errors import SpikevizError, missing
from ..data.recording import Recording
from .cache import LRUCache
from ..data.catalog import shipped_checkpoints as paths, short_domain
from ..models.header import read_meta, trained_on

DOMAINS = ("vitro", "vivo")
DIRECTIONS = tuple(f"{a}->{b}" for a in DOMAINS for b in DOMAINS)


ROOTS_ENV = "SPIKEVIZ_ROOTS"


def allowed_roots() -> tuple[Path, ...]:
    """Folders a path typed into the page may point into: $SPIKEVIZ_ROOTS (os.pathsep-separated),
    else the data folder and the working directory."""
    configured = os.environ.get(ROOTS_ENV, "")
    if configured.strip():
        return tuple(Path(r).expanduser().resolve() for r in configured.split(os.pathsep) if r.strip())
    return data_dir().resolve(), Path.cwd().resolve()


def within_roots(meta: dict) -> dict:
    """Checkpoint metadata without a data_path outside the allowed roots: a checkpoint must not
    make the server read files the page itself may not open."""
    path = meta.get("data_path")
    if not path:
        return meta
    try:
        resolved = Path(path).resolve()
        inside = any(resolved.is_relative_to(r) for r in allowed_roots())
    except (OSError, RuntimeError, ValueError):
        inside = False
    return meta if inside else meta | {"data_path": None}


def checkpoint_roots() -> tuple[Path, ...]:
    """Folders a checkpoint path may point into: the shipped models and the allowed roots."""
    return models_dir().resolve(), *allowed_roots()


def checked_path(path: str, roots: tuple[Path, ...] | None = None) -> Path:
    """`path` resolved, refused unless it lies under one of `roots` (symlinks followed first)."""
    roots = allowed_roots() if roots is None else roots
    if not path.strip():
        raise SpikevizError("no path given")
    if "\0" in path or len(path) > 4096:
        raise SpikevizError("not a valid path (NUL byte or too long)")
    try:
        resolved = Path(path.strip()).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SpikevizError(f"not a valid path ({exc})") from exc
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SpikevizError(f"only files under {', '.join(map(str, roots))} may be opened here",
                            resolved)
    if not resolved.exists():
        raise missing(resolved)
    return resolved


def session_domain(name: str) -> str | None:
    """'vitro' or 'vivo' for a bundled session name, None for anything else."""
    try:
        return session(name).short_domain
    except SpikevizError:
        return None


def open_test_recording(name: str | None, path: str = "", file_format: str | None = None,
                        tick_ms: float | None = None, sample_rate: float | None = None,
                        roots: tuple[Path, ...] | None = None) -> Recording:
    """The recording a page evaluates on: a bundled session by `name`, or the file at `path`
    (checked against the allowed roots)."""
    if name:
        return session(name).load()
    return load_path(checked_path(path, roots), format=file_format, tick_ms=tick_ms,
                     sample_rate=sample_rate)


def opened_recording(args: dict, cache: LRUCache) -> tuple[Recording, tuple]:
    """The recording `open_test_recording(**args)` opens and the key its results are cached
    under: a bundled session's name (kept in `cache` once loaded), else the file and its reading."""
    if args["name"]:
        return cache.get(("recording", args["name"]), lambda: open_test_recording(**args)), (args["name"],)
    recording, path = open_test_recording(**args), Path(args["path"])
    return recording, (str(path.resolve()), path.stat().st_mtime_ns, args["file_format"], args["tick_ms"],
                       args["sample_rate"])


def recording_cached(args: dict, cache: LRUCache) -> bool:
    """Whether `opened_recording` returns at once, from the cache."""
    return bool(args["name"]) and ("recording", args["name"]) in cache


@dataclass(frozen=True)
class Checkpoint:
    """A model file and what its header says: the session(s) it was trained on, loss and preset."""

    path: Path
    session: str
    loss: str
    preset: str = ""
    domain: str | None = None     # "vitro" or "vivo"; None: any (a generalist) or unknown

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def any_domain(self) -> bool:
        """A generalist applies to recordings of either domain."""
        return self.preset == "generalist"


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint's details from its safetensors header (nothing else is read or trusted)."""
    path = Path(path)
    info = read_meta(path)
    # Bundled sessions by name; other recordings (a file's, the corpus's) too, or their count
    # when there are several, so the line stays short.
    names, bundled = trained_on(info), set(bundled_names())
    others = [n for n in names if n not in bundled]
    name = " + ".join([n for n in names if n in bundled]
                      + (others if len(others) < 2 else [f"{len(others)} other recordings"]))
    return Checkpoint(path, str(name), str(info.get("loss") or ""), str(info.get("preset") or ""),
                      short_domain(info.get("domain")) if info.get("domain") else None)


def checkpoint_choices() -> list[Checkpoint]:
    """The checkpoints in models/ (resume states left out), generalists first."""
    found = []
    for p in paths() if models_dir().is_dir() else ():
        try:
            found.append(read_checkpoint(p))
        except SpikevizError:
            continue   # a broken file in models/ must not take the page down
    return found


def bundled_names() -> list[str]:
    return [s.name for s in sessions()]


def offered(checkpoints: Iterable[Checkpoint], source_domain: str | None,
            target_domain: str | None) -> list[Checkpoint]:
    """Checkpoints for a direction, the generalists first, focal before Dice. Across domains only
    unit-agnostic ones: a per-session model maps its own units by rate rank and neither scores nor
    generates like the target (see the README's results)."""
    matches = [c for c in checkpoints if c.any_domain or (
        c.domain == source_domain and source_domain == target_domain)]
    return sorted(matches, key=lambda c: (not c.any_domain, c.loss != "focal", c.name))


def default_checkpoint(checkpoints: Iterable[Checkpoint], source_domain: str | None,
                       target_domain: str | None = None) -> Checkpoint | None:
    """The first checkpoint offered for the direction (None: the page falls back to the baseline)."""
    matches = offered(checkpoints, source_domain, target_domain or source_domain)
    return matches[0] if matches else None
