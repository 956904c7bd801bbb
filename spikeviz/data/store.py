"""On-disk arrays and results: checksummed, content-addressed cache entries; memory-mapped spikes and predictions."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import _atomic
from .binning import BinnedSpikes, PackedSpikes
from ..errors import SpikevizError


def cache_root() -> Path:
    """$SPIKEVIZ_CACHE, else ~/.cache/spikeviz (an empty $SPIKEVIZ_CACHE is unset, not the current folder)."""
    return Path(os.environ.get("SPIKEVIZ_CACHE") or Path.home() / ".cache" / "spikeviz")


PACKAGE = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A SHA-256 of the library's source files (their paths and bytes): a cache entry computed by
    other code (a changed model, decoder or scoring) is never read as this code's."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def content_key(*parts: Any) -> str:
    """A stable SHA-256 key of JSON-serialisable parts (inputs' hashes and the config) and of
    the library's source (source_digest)."""
    blob = json.dumps([source_digest(), *parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _write_with_checksum(path: Path, write: Callable[[Path], None]) -> None:
    with _atomic.target(path) as tmp:
        write(tmp)
        digest = _atomic.file_sha256(tmp)
    with _atomic.target(path.with_name(path.name + ".sha256")) as tmp:
        tmp.write_text(digest)


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    # Through an open file: given a path without ".npy", np.save would write `<path>.npy` instead
    # and leave the entry itself empty.
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _verified(path: Path) -> bool:
    """True if `path` and its checksum exist and agree; a corrupt entry is deleted."""
    side = path.with_name(path.name + ".sha256")
    if not path.exists() or not side.exists():
        return False
    if _atomic.file_sha256(path) == side.read_text().strip():
        return True
    path.unlink(missing_ok=True)
    side.unlink(missing_ok=True)
    return False


class Cache:
    """A folder of results keyed by a content hash of their inputs and config.

    Every entry carries a SHA-256 checksum; an entry that fails it is removed and recomputed,
    never used. A `memo` keeps what can be computed again: a write that fails (a read-only or
    full disk, a root that is not a folder) is skipped, never an error, and the value is computed
    again next time. A store (the grid's results) raises instead.
    """

    def __init__(self, root: str | Path | None = None, memo: bool = False):
        self.root = Path(root) if root is not None else cache_root()
        self.memo = memo

    def _write(self, key: str, name: str, write: Callable[[Path], None]) -> Path:
        path = self.path(key, name)
        try:
            _write_with_checksum(path, write)
        except OSError:
            if not self.memo:
                raise
        return path

    def path(self, key: str, name: str) -> Path:
        return self.root / key[:2] / key / name

    def get_json(self, key: str, name: str = "result.json") -> Any | None:
        path = self.path(key, name)
        return json.loads(path.read_text()) if _verified(path) else None

    def put_json(self, key: str, value: Any, name: str = "result.json") -> None:
        self._write(key, name, lambda tmp: tmp.write_text(json.dumps(value, indent=1, default=float)))

    def get_array(self, key: str, name: str, mmap: bool = True) -> np.ndarray | None:
        path = self.path(key, name)
        if not _verified(path):
            return None
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    def put_array(self, key: str, name: str, array: np.ndarray) -> None:
        self._write(key, name, lambda tmp: _save_npy(tmp, array))

    def get_arrays(self, key: str, name: str) -> dict[str, np.ndarray] | None:
        """Named arrays stored by `put_arrays` (an .npz, read whole), or None."""
        path = self.path(key, name)
        if not _verified(path):
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def put_arrays(self, key: str, name: str, arrays: dict[str, np.ndarray]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:     # (np.savez would append ".npz" to a bare path)
                np.savez(fh, **arrays)
        self._write(key, name, write)

    def get_file(self, key: str, name: str) -> Path | None:
        path = self.path(key, name)
        return path if _verified(path) else None

    def put_file(self, key: str, name: str, source: Path) -> Path:
        return self._write(key, name, lambda tmp: shutil.copyfile(source, tmp))

    def array(self, key: str, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, computed and stored first if missing or corrupt."""
        found = self.get_array(key, name)
        if found is None:
            value = compute()
            self.put_array(key, name, value)
            found = self.get_array(key, name)
            if found is None:     # a memo that could not write it
                return value
        return found


def quantize_probabilities(P: np.ndarray) -> np.ndarray:
    """float16 probabilities: half the bytes, ~1e-3 relative precision, exact 0 and 1."""
    P = np.asarray(P)
    if P.size and (np.nanmin(P) < 0 or np.nanmax(P) > 1 or np.isnan(P).any()):
        raise SpikevizError("probabilities must lie in [0, 1] and not be NaN")
    return P.astype(np.float16)


def save_packed(binned: BinnedSpikes, path: str | Path) -> None:
    """Write the bit-packed matrix as .npy with a JSON sidecar (units, bin size, start)."""
    path = Path(path)
    packed = binned.packbits()
    _write_with_checksum(path, lambda tmp: _save_npy(tmp, packed.bits))
    meta = {"n_units": packed.n_units, "unit_ids": [str(u) for u in packed.unit_ids],
            "bin_ms": packed.bin_ms, "start_s": packed.start_s, "name": packed.name}
    with _atomic.target(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta))


def load_packed(path: str | Path) -> PackedSpikes:
    """Memory-map a matrix written by `save_packed`: rows are read from disk only when unpacked."""
    path = Path(path)
    if not _verified(path):
        raise SpikevizError("missing, or its checksum does not match (corrupt): write it again",
                            path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        bits = np.load(path, mmap_mode="r", allow_pickle=False)
        return PackedSpikes(bits, meta["n_units"], np.array(meta["unit_ids"]), meta["bin_ms"],
                            meta["start_s"], meta["name"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, SpikevizError):
            raise
        raise SpikevizError(f"unreadable packed spikes or sidecar ({exc})", path) from exc
