"""Atomic writes: write to a temporary file beside the target, then rename over it."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import SpikevizError


@contextlib.contextmanager
def target(path: str | Path, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path (same suffix); on success it replaces `path`, on failure it is removed.

    With `force=False` an existing `path` is refused instead of replaced.
    """
    path = Path(path)
    if not force and path.exists():
        raise SpikevizError("exists already: pass --force (force=True) to replace it", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files: give the result the mode a plain open() would have.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks (checksums beside atomically written files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
