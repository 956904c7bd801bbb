"""Where a model meets a recording: its units, their order, the warm-up and the scored stretch (no torch: the opening page draws it)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.binning import bin_range, bin_rates, n_bins_of, split_bounds, train_units
from ..data.catalog import open_recording, recording_domain
from ..data.recording import Recording
from ..data.units import (ids_named, parse_unit_order, rates_for, target_units, unit_permutation,
                          with_silent_units)
from ..errors import SpikevizError

N_UNITS = 128   # units a window shows by default: the paper's 128, the most active of the train split
SECONDS = 200.0   # default cap on the evaluated stretch (s)
# Real past before the evaluated stretch, the same for `evaluate`, `table`, `grid` and the
# dashboard: its first PRIME_S only prime the predictors' history (traces, the GLM's 10-s rate),
# the rest tunes threshold presets and fits a generalist's guard; never a scored bin.
WARMUP_S = 30.0
PRIME_S = 10.0
GLM_FIT_BINS = 300_000   # the GLM fits on the last 5 min (at 1 ms) of the source's train split


@dataclass(frozen=True, eq=False)
class Source:
    """The training split of a model's recording: unit rates (model column order), the GLM's fit data.

    `fit` says where the baselines were fitted: "source train stretch", or "target train stretch"
    when the checkpoint's training data could not be found.
    """

    name: str
    domain: str | None
    rates: np.ndarray
    train: np.ndarray         # the last GLM_FIT_BINS of the train stretch, (T, N) uint8
    fit: str = "source train stretch"
    key: tuple = ()           # names the data and units, for caches



def source_from_recording(recording: Recording, unit_ids: Sequence, bin_ms: float = 1.0,
                          fit: str = "source train stretch") -> Source:
    """Rates over the whole train split (first 50 %) and its last GLM_FIT_BINS bins binned."""
    a, b = split_bounds(n_bins_of(recording.duration_s, bin_ms))["train"]
    return Source(recording.name, recording_domain(recording),
                  bin_rates(recording, unit_ids, bin_ms, a, b),
                  bin_range(recording, unit_ids, bin_ms, max(a, b - GLM_FIT_BINS), b), fit,
                  (recording.content_hash(), recording.duration_s, tuple(map(str, unit_ids)), bin_ms))


@lru_cache(maxsize=4)
def _source_cached(session: str | None, data_path: str | None, seconds: float | None, bin_ms: float,
                   unit_names: tuple, content_hash: str | None) -> Source | None:
    where = session or (data_path if data_path and Path(data_path).exists() else None)
    if where is None:
        return None
    try:
        rec = open_recording(where)
    except SpikevizError:
        return None
    if content_hash and rec.content_hash() != content_hash:
        return None
    if seconds:
        rec = rec.slice(0.0, float(seconds))
    return source_from_recording(rec, ids_named(rec, unit_names), bin_ms)


def checkpoint_source(meta: dict[str, Any]) -> Source | None:
    """The training data named in checkpoint metadata (bundled session or data_path), if it is
    still there with the same content; None otherwise."""
    names = tuple(str(u) for u in meta.get("unit_ids") or ())
    if not names:
        return None
    return _source_cached(meta.get("session"), meta.get("data_path"), meta.get("seconds"),
                          float(meta.get("bin_ms", 1.0)), names, meta.get("content_hash"))


def is_training_data(meta: dict[str, Any], recording: Recording) -> bool:
    """Whether the checkpoint was trained on `recording` (or on its first `seconds`): for a
    one-recording model its own units then exist in it, in their trained order."""
    trained = {meta.get("content_hash"), *(meta.get("content_hashes") or [])} - {None}
    if meta.get("silent_units"):   # trained with `train --pad`: on the recording with them added
        recording = with_silent_units(recording, recording.n_units + meta["silent_units"])
    return recording.content_hash() in trained


@dataclass(frozen=True, eq=False)
class Stretch:
    """The binned warm-up and evaluated stretch of a target.

    Predictions P over all of X score strictly one bin ahead: P[t] against X[t+1] for t >= warm
    (scoring.score_stretch); `targets` and `window_of(P)` hold exactly those pairs.
    """

    X: np.ndarray            # (warm + T, N) uint8
    warm: int
    prime: int               # warm-up bins that only prime history; the rest tune presets and guards
    unit_ids: np.ndarray     # target unit of each column
    bins: tuple[int, int]    # evaluated bins [a, b) of the whole target recording
    bin_ms: float
    unit_order: str = "recorded"   # how the columns are ordered

    @property
    def seconds(self) -> tuple[float, float]:
        return tuple(round(x * self.bin_ms / 1000.0, 6) for x in self.bins)

    @property
    def targets(self) -> np.ndarray:
        return self.X[self.warm + 1:]

    @property
    def start_s(self) -> float:
        """Time of the first target bin."""
        return (self.bins[0] + 1) * self.bin_ms / 1000.0

    @property
    def duration_s(self) -> float:
        return len(self.targets) * self.bin_ms / 1000.0

    def window_of(self, P: np.ndarray) -> np.ndarray:
        """The rows of P scored against `targets`."""
        return P[self.warm:-1]

    def ordered(self, perm: np.ndarray, unit_order: str) -> "Stretch":
        """The same stretch with model input column j = this stretch's column perm[j]."""
        return replace(self, X=np.ascontiguousarray(self.X[:, perm]), unit_ids=self.unit_ids[perm],
                       unit_order=unit_order)


def stretch_bins(recording: Recording, bin_ms: float, split: str = "test",
                 seconds: float | None = SECONDS, window_s: tuple[float, float] | None = None,
                 warmup_s: float = WARMUP_S) -> tuple[int, int, int]:
    """(a, b, warm): the evaluated bins [a, b) and the warm-up length, from a split capped to
    `seconds` (None: all of it) or an explicit window (s). The warm-up always precedes what is
    scored: a stretch that starts too early for it starts after it instead (a window keeps its
    length, within the recording)."""
    n_bins = n_bins_of(recording.duration_s, bin_ms)
    warm = int(round(warmup_s * 1000.0 / bin_ms))
    if window_s is not None:
        # Bin a's prediction scores bin a + 1: the window's first bin is the first target.
        a, b = (int(round(x * 1000.0 / bin_ms)) for x in window_s)
        what = f"the window [{window_s[0]:g}, {window_s[1]:g}) s"
        if a >= n_bins:
            raise SpikevizError(f"{what} is not inside the recording ({recording.duration_s:g} s)",
                                recording.source.get("path"))
        a -= 1
        b += max(warm - a, 0)
    else:
        bounds = split_bounds(n_bins)
        if split not in bounds:
            raise SpikevizError(f"unknown split {split!r}: use test, valid or all")
        a, b = bounds[split]
        what = f"the {split} split"
    a, b = max(a, warm), min(b, n_bins)
    if seconds and window_s is None:
        b = min(b, a + int(round(seconds * 1000.0 / bin_ms)))
    if b - a < 2:
        raise SpikevizError(f"{what} leaves {max(b - a, 0)} bins to evaluate after a "
                            f"{warmup_s:g}-s warm-up: the recording is too short",
                            recording.source.get("path"))
    return a, b, warm


def make_stretch(recording: Recording, unit_ids: Sequence, bin_ms: float, split: str = "test",
                 seconds: float | None = SECONDS, warmup_s: float = WARMUP_S,
                 window_s: tuple[float, float] | None = None) -> Stretch:
    """The bins of `stretch_bins` with the warm-up of real past before them."""
    a, b, warm = stretch_bins(recording, bin_ms, split, seconds, window_s, warmup_s)
    X = bin_range(recording, unit_ids, bin_ms, a - warm, b)
    return Stretch(X, warm, min(int(round(PRIME_S * 1000.0 / bin_ms)), warm // 2),
                   np.asarray(unit_ids), (a, b), bin_ms)


@dataclass(frozen=True, eq=False)
class Setup:
    """How a model (or the baselines alone) meets a target: its units, their order, the stretch
    and the target's train split, which the baselines fit on."""

    stretch: Stretch         # recorded column order: what the baselines score
    model_stretch: Stretch   # model column order: what the model scores
    target: Source           # the target's train split
    source: Source           # the model's training data when it is found, else the target's
    same: bool               # the target is the model's training data

    @property
    def nbytes(self) -> int:
        arrays = {id(a): a for a in (self.stretch.X, self.model_stretch.X, self.target.train,
                                     self.source.train)}
        return sum(a.nbytes for a in arrays.values())


def setup(model, recording: Recording, *, split: str = "test", unit_order: str = "auto",
          seconds: float | None = SECONDS, warmup_s: float = WARMUP_S,
          window_s: tuple[float, float] | None = None, n_units: int = N_UNITS,
          find_source: Callable[[dict], Source | None] | None = None) -> Setup:
    """Units, unit order and stretch as `evaluate`, `table`, `grid` and the dashboard choose them.

    Units: a model's own columns on its training data, else the most active ones of the training
    split (the model's unit count; `n_units` for a unit-agnostic model or without a model).
    unit_order "auto" is recorded on the training data and unit-agnostic models, rate-rank
    elsewhere (the source's rates against the target's warm-up). `find_source` reads a model's
    training data from its metadata (default `checkpoint_source`).
    """
    requested, _ = parse_unit_order(unit_order)
    if model is None:
        bin_ms, same, shared = 1.0, True, True
        ids = train_units(recording, min(n_units, recording.n_units))
    else:
        meta, cfg = model.meta, model.config
        bin_ms, same, shared = float(meta.get("bin_ms", 1.0)), is_training_data(meta, recording), \
            cfg.shared_units
        ids = target_units(model, recording, same, n_units)
    target = source_from_recording(recording, ids, bin_ms, fit="target train stretch")
    source = (None if model is None else (find_source or checkpoint_source)(model.meta)) or target
    policy = unit_order if requested != "auto" else (
        "rate-rank" if not same and source is not target and not shared else "recorded")
    st = make_stretch(recording, ids, bin_ms, split, seconds, warmup_s, window_s)
    perm = unit_permutation(policy, len(ids), st.X[:st.warm], rates_for(len(ids), source.rates))
    return Setup(st, st.ordered(perm, policy), target, source, same)
