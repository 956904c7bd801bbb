"""Binning spike times into binary (time x unit) matrices, the chronological split, unit selection and bit-packing."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import SpikevizError
from .recording import Recording


# Chronological: the model is tuned on what comes after its training bins, scored on what comes last.
SPLIT_FRACTIONS = {"train": (0.0, 0.5), "valid": (0.5, 0.75), "test": (0.75, 1.0)}
SPLIT_NAME = "train 0-50 %, valid 50-75 %, test 75-100 % (chronological)"


def split_bounds(n_bins: int) -> dict[str, tuple[int, int]]:
    """Bin ranges of the chronological split: first 50 % train, next 25 % validation, last 25 % test."""
    return {name: (int(round(a * n_bins)), int(round(b * n_bins)))
            for name, (a, b) in SPLIT_FRACTIONS.items()} | {"all": (0, n_bins)}


def n_bins_of(length_s: float, bin_ms: float) -> int:
    # Rounding first keeps 400.079 s / 1 ms at 400079 bins despite float noise.
    return int(math.ceil(round(length_s * 1000.0 / bin_ms, 6)))


def bin_index(times_s: np.ndarray, start_s: float, bin_ms: float) -> np.ndarray:
    """Bin of each time: floor((t - start) / bin), robust to float noise at bin edges."""
    return np.floor(np.round((times_s - start_s) * (1000.0 / bin_ms), 6)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class BinnedSpikes:
    """A binary (T, n_units) uint8 matrix with the unit ids and time base it was made from.

    `collisions` counts spikes that fell into a bin already occupied by the same unit (lost to
    binarisation); `padded` counts all-zero columns added because the recording had too few units.
    """

    X: np.ndarray
    unit_ids: np.ndarray
    bin_ms: float
    start_s: float
    name: str = ""
    collisions: int = 0
    padded: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def n_bins(self) -> int:
        return self.X.shape[0]

    @property
    def n_units(self) -> int:
        return self.X.shape[1]

    @property
    def density(self) -> float:
        return float(self.X.mean()) if self.X.size else 0.0

    def times_s(self) -> np.ndarray:
        """Start time of each bin (s)."""
        return self.start_s + np.arange(self.n_bins) * (self.bin_ms / 1000.0)

    def window(self, start: int, stop: int) -> "BinnedSpikes":
        """Bins [start, stop) as a new BinnedSpikes (a view, no copy)."""
        return BinnedSpikes(self.X[start:stop], self.unit_ids, self.bin_ms,
                            self.start_s + start * self.bin_ms / 1000.0, self.name, 0, self.padded,
                            self.source)

    def packbits(self) -> "PackedSpikes":
        return PackedSpikes(np.packbits(self.X, axis=1), self.n_units, self.unit_ids, self.bin_ms,
                            self.start_s, self.name)


@dataclass(frozen=True, eq=False)
class PackedSpikes:
    """Bit-packed form of a BinnedSpikes: 8 units a byte (1 h x 128 units at 1 ms is 57 MB)."""

    bits: np.ndarray
    n_units: int
    unit_ids: np.ndarray
    bin_ms: float
    start_s: float
    name: str = ""

    @property
    def n_bins(self) -> int:
        return self.bits.shape[0]

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes

    def unpack(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The uint8 (stop - start, n_units) matrix of bins [start, stop)."""
        return np.unpackbits(self.bits[start:stop], axis=1, count=self.n_units)


def select_units(recording: Recording, n_units: int, select: str | Sequence = "rate",
                 counts: np.ndarray | None = None, pad: bool = False) -> list:
    """Unit ids to use: "recorded" (first n), "rate" (n most active, in recorded order), or a list.

    `counts` are the spike counts that rank units for "rate" (default: the whole recording).
    With fewer units than asked, all are returned when `pad` is true, else an error is raised.
    """
    where = recording.source.get("path")
    if n_units is None or n_units <= 0:
        raise SpikevizError(f"n_units must be a positive number, got {n_units}", where)
    ids = recording.unit_ids
    if not isinstance(select, str):
        chosen = list(select)
        known = set(ids.tolist())
        missing = [u for u in chosen if u not in known]
        if missing:
            raise SpikevizError(f"unit ids {missing[:5]} are not in the recording", where)
        if len(chosen) != n_units:
            raise SpikevizError(f"{len(chosen)} unit ids given for n_units={n_units}", where)
        return chosen
    if len(ids) < n_units and not pad:
        raise SpikevizError(
            f"the recording has {len(ids)} units but {n_units} were asked: ask for fewer units "
            f"(--units) or pad with silent units (pad=True, --pad)", where)
    if select == "recorded":
        return ids[:n_units].tolist()
    if select == "rate":
        counts = recording.spike_counts if counts is None else counts
        # Stable sort: among equally active units the earlier recorded one wins.
        top = np.sort(np.argsort(-counts, kind="stable")[:n_units])
        return ids[top].tolist()
    raise SpikevizError(f"unknown unit selection {select!r}: use 'rate', 'recorded' or a list of ids",
                        where)


def train_units(recording: Recording, n_units: int, pad: bool = False) -> list:
    """The `n_units` most active units of the training split (the first 50 %, see
    SPLIT_FRACTIONS), in recorded order: what a model sees is never chosen by activity in
    the bins it is validated or scored on."""
    end = SPLIT_FRACTIONS["train"][1] * recording.duration_s
    counts = np.array([np.count_nonzero(t < end) for t in recording.spike_times], np.int64)
    return select_units(recording, n_units, "rate", counts=counts, pad=pad)


def bin_spikes(recording: Recording, bin_ms: float = 1.0, n_units: int = 128,
               select: str | Sequence = "rate", start_s: float | None = None,
               stop_s: float | None = None, pad: bool = False) -> BinnedSpikes:
    """Bin `recording` into a binary (T, n_units) uint8 matrix over [start_s, stop_s).

    The chosen unit ids travel with the matrix; "rate" ranks units by their spike count inside
    the window. Missing units become zero columns only with `pad=True`.
    """
    where = recording.source.get("path")
    if not bin_ms or bin_ms <= 0 or not np.isfinite(bin_ms):
        raise SpikevizError(f"bin size must be a positive number of ms, got {bin_ms}", where)
    start_s = 0.0 if start_s is None else float(start_s)
    stop_s = recording.duration_s if stop_s is None else min(float(stop_s), recording.duration_s)
    if not 0 <= start_s < stop_s:
        raise SpikevizError(f"empty time window [{start_s:g}, {stop_s:g}) s for a recording of "
                            f"{recording.duration_s:g} s", where)
    T = n_bins_of(stop_s - start_s, bin_ms)
    in_window = [(t >= start_s) & (t < stop_s) for t in recording.spike_times]
    counts = np.array([m.sum() for m in in_window], dtype=np.int64)
    chosen = select_units(recording, n_units, select, counts=counts, pad=pad)
    row = {u: i for i, u in enumerate(recording.unit_ids.tolist())}
    X = np.zeros((T, n_units), dtype=np.uint8)
    n_in = 0
    for col, uid in enumerate(chosen):
        i = row[uid]
        idx = bin_index(recording.spike_times[i][in_window[i]], start_s, bin_ms)
        idx = idx[(idx >= 0) & (idx < T)]
        n_in += idx.size
        X[idx, col] = 1
    padded = n_units - len(chosen)
    unit_ids = np.array(list(chosen) + [f"pad{k}" for k in range(padded)] if padded else chosen)
    return BinnedSpikes(X, unit_ids, float(bin_ms), start_s, recording.name,
                        int(n_in - X.sum(dtype=np.int64)), padded, dict(recording.source))


def bin_range(recording: Recording, unit_ids: Sequence, bin_ms: float, lo: int, hi: int) -> np.ndarray:
    """Bins [lo, hi) (of the whole-recording time base) of `unit_ids` as a (hi - lo, N) uint8 matrix."""
    b = bin_spikes(recording, bin_ms, len(unit_ids), list(unit_ids), lo * bin_ms / 1000.0,
                   hi * bin_ms / 1000.0)
    X = b.X[:hi - lo]
    if len(X) < hi - lo:   # float rounding of the window end can drop the last bin
        X = np.concatenate([X, np.zeros((hi - lo - len(X), X.shape[1]), np.uint8)])
    return X


def bin_rates(recording: Recording, unit_ids: Sequence, bin_ms: float, lo: int, hi: int) -> np.ndarray:
    """Fraction of bins [lo, hi) in which each unit spiked (the binned matrix's mean), from spike times."""
    row = {u: i for i, u in enumerate(recording.unit_ids.tolist())}
    out = np.empty(len(unit_ids), np.float32)
    for j, u in enumerate(unit_ids):
        idx = bin_index(recording.spike_times[row[u]], 0.0, bin_ms)
        out[j] = np.unique(idx[(idx >= lo) & (idx < hi)]).size / max(hi - lo, 1)
    return out
