"""The `Recording`: a population of units, each with its sorted spike times in seconds."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpikevizError


@dataclass(frozen=True, eq=False)
class Recording:
    """Spike trains of one session.

    `spike_times[i]` holds the times (s, float64, sorted, within [0, duration_s]) of unit `unit_ids[i]`.
    `source` says where they came from (format, path, tick_ms or sample_rate); `unit_info` holds
    per-unit extras from the file (depth, region, quality...) as arrays aligned with `unit_ids`.
    """

    name: str
    unit_ids: np.ndarray
    spike_times: tuple[np.ndarray, ...]
    duration_s: float
    source: dict[str, Any] = field(default_factory=dict)
    unit_info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source.get("path")
        if len(self.unit_ids) != len(self.spike_times):
            raise SpikevizError(
                f"{len(self.unit_ids)} unit ids but {len(self.spike_times)} spike trains", where)
        if len(self.unit_ids) == 0:
            raise SpikevizError("the recording has no units", where)
        if len(np.unique(self.unit_ids)) != len(self.unit_ids):
            raise SpikevizError("unit ids are not unique", where)
        if not np.isfinite(self.duration_s) or self.duration_s <= 0:
            raise SpikevizError(f"duration must be positive, got {self.duration_s}", where)
        for uid, t in zip(self.unit_ids, self.spike_times):
            if t.dtype != np.float64 or t.ndim != 1:
                raise SpikevizError(f"unit {uid}: spike times must be a 1-D float64 array", where)
            if t.size and not np.isfinite(t).all():
                raise SpikevizError(f"unit {uid}: spike times contain NaN or infinity", where)
            if t.size and t[0] < 0:
                raise SpikevizError(f"unit {uid}: negative spike time {t[0]:g} s", where)
            if t.size and t[-1] > self.duration_s:
                raise SpikevizError(
                    f"unit {uid}: spike at {t[-1]:g} s is after the end of the recording "
                    f"({self.duration_s:g} s)", where)
            if t.size > 1 and np.any(np.diff(t) < 0):
                raise SpikevizError(f"unit {uid}: spike times are not sorted", where)
        for key, values in self.unit_info.items():
            if len(values) != len(self.unit_ids):
                raise SpikevizError(f"unit column {key!r} has {len(values)} rows for "
                                    f"{len(self.unit_ids)} units", where)

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def spike_counts(self) -> np.ndarray:
        return np.array([t.size for t in self.spike_times], dtype=np.int64)

    @property
    def n_spikes(self) -> int:
        return int(self.spike_counts.sum())

    @property
    def rates_hz(self) -> np.ndarray:
        return self.spike_counts / self.duration_s

    def content_hash(self) -> str:
        """SHA-256 of unit ids and spike times: names the data a model was trained on."""
        h = hashlib.sha256()
        h.update(np.asarray(self.unit_ids).astype(str).astype("U").tobytes())
        for t in self.spike_times:
            h.update(np.int64(t.size).tobytes())
            h.update(t.tobytes())
        h.update(np.float64(self.duration_s).tobytes())
        return h.hexdigest()

    def slice(self, start_s: float, stop_s: float) -> "Recording":
        """The stretch [start_s, stop_s), with times shifted to start at 0."""
        if not 0 <= start_s < stop_s:
            raise SpikevizError(f"empty or negative time window [{start_s}, {stop_s})",
                                self.source.get("path"))
        stop_s = min(stop_s, self.duration_s)
        trains = tuple(t[(t >= start_s) & (t < stop_s)] - start_s for t in self.spike_times)
        return Recording(self.name, self.unit_ids, trains, stop_s - start_s,
                         dict(self.source, window_s=(start_s, stop_s)), self.unit_info)

    def select_units(self, unit_ids) -> "Recording":
        """The recording restricted to `unit_ids`, in that order."""
        index = {u: i for i, u in enumerate(self.unit_ids.tolist())}
        missing = [u for u in unit_ids if u not in index]
        if missing:
            raise SpikevizError(f"unknown unit ids {missing[:5]}", self.source.get("path"))
        rows = [index[u] for u in unit_ids]
        return Recording(self.name, self.unit_ids[rows], tuple(self.spike_times[i] for i in rows),
                         self.duration_s, self.source,
                         {k: np.asarray(v)[rows] for k, v in self.unit_info.items()})

    def __repr__(self) -> str:
        return (f"Recording({self.name!r}, {self.n_units} units, {self.n_spikes} spikes, "
                f"{self.duration_s:.1f} s, format={self.source.get('format')!r})")


def from_unit_times(name: str, units: np.ndarray, times_s: np.ndarray, duration_s: float | None,
                    source: dict[str, Any], unit_info: dict[str, np.ndarray] | None = None,
                    unit_order: np.ndarray | None = None) -> Recording:
    """Build a Recording from a flat (unit, time) table, the shape most formats store.

    `unit_order` fixes the units and their order (units with no spikes included); by default the
    units that spiked, in ascending id order.
    """
    where = source.get("path")
    units = np.asarray(units).ravel()
    times_s = np.asarray(times_s, dtype=np.float64).ravel()
    if units.shape != times_s.shape:
        raise SpikevizError(f"{units.size} unit labels but {times_s.size} spike times", where)
    if times_s.size and not np.isfinite(times_s).all():
        raise SpikevizError(f"{int((~np.isfinite(times_s)).sum())} spike times are NaN or infinite",
                            where)
    if times_s.size and times_s.min() < 0:
        raise SpikevizError(f"negative spike time {times_s.min():g} s", where)
    ids = np.unique(units) if unit_order is None else np.asarray(unit_order)
    if ids.size == 0:
        raise SpikevizError("the file holds no units (no spikes and no unit table)", where)
    order = np.lexsort((times_s, units))
    units, times_s = units[order], times_s[order]
    starts = np.searchsorted(units, ids, side="left")
    stops = np.searchsorted(units, ids, side="right")
    trains = tuple(times_s[a:b].copy() for a, b in zip(starts, stops))
    last = float(times_s.max()) if times_s.size else 0.0
    if duration_s is None:
        duration_s = last if last > 0 else 1.0
    if last > duration_s:
        raise SpikevizError(f"spike at {last:g} s is after the stated duration {duration_s:g} s",
                            where)
    return Recording(name, ids, trains, float(duration_s), source, unit_info or {})
