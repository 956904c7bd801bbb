"""Recordings dropped into the page: checked, stored in a private folder, zipped phy folders unpacked safely."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import SpikevizError

MAX_UPLOAD_MB = 200           # a dropped file, and a zip's unpacked content at most 4x that
ACCEPTED = (".nwb", ".mat", ".csv", ".tsv", ".parquet", ".npz", ".h5", ".zip")


def _clean_name(name: str) -> str:
    """The file's own name: no folders, no NUL, not empty, one of the accepted types."""
    base = PurePosixPath(name.replace("\\", "/")).name
    if not base or base in (".", "..") or "\0" in base or len(base) > 255:
        raise SpikevizError(f"not a valid file name: {name[:80]!r}")
    if not base.lower().endswith(ACCEPTED):
        raise SpikevizError(f"not a recording type the dashboard reads: use one of {', '.join(ACCEPTED)}",
                            base)
    return base


def _unzip(archive: Path, into: Path) -> Path:
    """Unpack a zipped Kilosort/phy folder; members may not leave `into`, links are refused, and
    the unpacked size is capped. Returns the folder holding the data (a single top folder)."""
    limit = 4 * MAX_UPLOAD_MB * 1e6
    into.mkdir()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if sum(m.file_size for m in members) > limit or len(members) > 10_000:
                raise SpikevizError(f"unpacks to more than {4 * MAX_UPLOAD_MB} MB or 10,000 files",
                                    archive)
            for m in members:
                parts = PurePosixPath(m.filename.replace("\\", "/")).parts
                is_link = (m.external_attr >> 16) & 0o170000 == 0o120000
                if not parts or m.filename.startswith("/") or ".." in parts or ":" in m.filename or is_link:
                    raise SpikevizError(f"refused: the archive member {m.filename[:80]!r} would land "
                                        f"outside its folder or is a link", archive)
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise SpikevizError(f"not a readable zip archive ({exc})", archive) from exc
    entries = [p for p in into.iterdir() if p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def store_upload(name: str, data: bytes, folder: Path) -> Path:
    """Write a dropped file into `folder` and return what to load: the file, or the unpacked
    folder of a zip. The file is stored and unpacked beside `folder` first, so a refused drop
    leaves the page's previous recording (and its file) as it was; one recording per page."""
    base = _clean_name(name)
    if len(data) > MAX_UPLOAD_MB * 1e6:
        raise SpikevizError(f"{len(data) / 1e6:.0f} MB is over the {MAX_UPLOAD_MB} MB upload limit: "
                            f"give its path instead (under the allowed roots)", base)
    if not data:
        raise SpikevizError("the file is empty", base)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        target = staging / base
        target.write_bytes(data)
        stored = _unzip(target, staging / "unpacked") if base.lower().endswith(".zip") else target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder / stored.relative_to(staging)


@functools.cache
def _uploads() -> Path:
    """This process's folder of pages' upload folders, removed when the server stops (a page's
    own goes with the page, but a stopped server ends no page)."""
    parent = Path(tempfile.mkdtemp(prefix="spikeviz-uploads-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    return parent


def upload_folder() -> Path:
    """A private folder for one page's dropped files and fitted checkpoints (removed with the
    page, or with the server)."""
    return Path(tempfile.mkdtemp(prefix="page-", dir=_uploads()))
