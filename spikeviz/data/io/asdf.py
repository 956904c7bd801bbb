"""asdf ("another spike data format") MATLAB .mat files: a cell array of N+2 cells of integer ticks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from ...errors import SpikevizError
from ..recording import Recording


def _cell_array(path: Path) -> np.ndarray:
    try:
        contents = scipy.io.loadmat(path, squeeze_me=False)
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise SpikevizError(f"MATLAB v7.3 (HDF5) .mat files are not supported ({exc}); save with "
                            "-v7 in MATLAB", path) from exc
    except Exception as exc:
        raise SpikevizError(f"not a readable MATLAB .mat file ({exc})", path) from exc
    cells = [(k, v) for k, v in contents.items()
             if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype == object]
    if len(cells) != 1:
        raise SpikevizError(f"expected exactly one cell-array variable (the asdf), found "
                            f"{len(cells)}", path)
    return cells[0][1].ravel()


def _numbers(cell, what: str, path: Path) -> np.ndarray:
    raw = np.asarray(cell)
    if raw.dtype.kind not in "biuf":
        raise SpikevizError(f"{what} must hold numbers, holds {raw.dtype}", path)
    return raw.astype(np.float64).ravel()


def read_asdf(path: Path, tick_ms: float | None = None) -> Recording:
    """Read an asdf .mat file; ticks are 1-based, so tick k spans [(k-1), k) x tick_ms.

    The tick length comes from cell N+1 when it is present and non-zero, else from `tick_ms`;
    it is never guessed.
    """
    cells = _cell_array(path)
    if cells.size < 3:
        raise SpikevizError(f"an asdf cell array needs N+2 cells (N units, tick, [N, duration]); "
                            f"this one has {cells.size}", path)
    footer = _numbers(cells[-1], "the last cell ([N, duration])", path)
    n = cells.size - 2
    if footer.size != 2 or footer[0] != n:
        raise SpikevizError(f"the last cell must be [N, duration_in_ticks] with N = {n}, got "
                            f"{footer.tolist()}", path)
    file_tick = _numbers(cells[-2], "the tick cell", path)
    file_tick = float(file_tick[0]) if file_tick.size and file_tick[0] != 0 else None
    if file_tick is not None and tick_ms is not None and not np.isclose(file_tick, tick_ms):
        raise SpikevizError(f"the file says its tick is {file_tick} ms but {tick_ms} ms was given",
                            path)
    tick = file_tick if file_tick is not None else tick_ms
    if tick is None:
        raise SpikevizError("the file does not state its tick length: give it with --tick-ms "
                            "(tick_ms=...), e.g. 1 for 1-ms ticks or 0.1 for 0.1-ms ticks", path)
    if not np.isfinite(tick) or tick <= 0:
        raise SpikevizError(f"the tick length must be positive, got {tick} ms", path)
    duration_ticks = footer[1]
    if not np.isfinite(duration_ticks) or duration_ticks <= 0:
        raise SpikevizError(f"the duration must be positive, got {duration_ticks} ticks", path)
    trains = []
    for i, cell in enumerate(cells[:-2]):
        raw = np.asarray(cell).ravel()
        if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number) or raw.size == 0):
            raise SpikevizError(f"unit {i + 1}: spike times must be numbers, got {raw.dtype}", path)
        ticks = raw.astype(np.float64)
        if ticks.size and not np.isfinite(ticks).all():
            raise SpikevizError(f"unit {i + 1}: spike times contain NaN or infinity", path)
        if ticks.size and ticks.min() < 1:
            raise SpikevizError(f"unit {i + 1}: tick {ticks.min():g} < 1 (asdf ticks are 1-based)",
                                path)
        if ticks.size and ticks.max() > duration_ticks:
            raise SpikevizError(f"unit {i + 1}: tick {ticks.max():g} is after the stated duration "
                                f"({duration_ticks:g} ticks)", path)
        if np.any(np.diff(ticks) < 0):
            raise SpikevizError(f"unit {i + 1}: spike times are not sorted", path)
        trains.append((ticks - 1.0) * (tick / 1000.0))
    return Recording(
        name=path.name.split(".")[0], unit_ids=np.arange(1, n + 1), spike_times=tuple(trains),
        duration_s=float(duration_ticks) * tick / 1000.0,
        source={"format": "asdf", "path": str(path), "tick_ms": tick})
