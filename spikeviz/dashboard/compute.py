"""Dashboard data without Panel: the evaluated stretch, cached predictions, threshold-dependent frames."""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Hashable

import numpy as np
import pandas as pd

from ..baselines import EWMAPredictor, GLMPredictor, RatePredictor
from ..binning import bin_range, select_units
from ..errors import SpikevizError
from ..evaluation import (PRIME_S, WARMUP_S, Source, checkpoint_source, for_target,
                          is_training_data, rates_for, source_from_recording, target_units,
                          unit_permutation)
from ..scoring import FPR_CAP, Scored, score_stretch
from ..metrics import OperatingPoint, ScoreHistogram, UnitHistograms
from ..predictor import SPLIT_FRACTIONS, SPLIT_NAME
from ..recording import Recording
from ..stats import FiringStats, compare_stats, firing_stats

N_UNITS = 128
BIN_MS = 1.0
UNIT_ORDERS = ("auto", "recorded", "random", "rate-rank")
PRESETS = {"youden": "Youden", "max-f1": "max F1", "density": "density"}


def test_split_s(recording: Recording) -> tuple[float, float]:
    """Start and end (s) of the chronological test split (predictor.SPLIT_FRACTIONS)."""
    a, b = SPLIT_FRACTIONS["test"]
    return a * recording.duration_s, b * recording.duration_s


def default_window(recording: Recording, length_s: float = 60.0) -> tuple[float, float]:
    """The first `length_s` seconds of the test split (after WARMUP_S, like `spikeviz table`)."""
    start, stop = test_split_s(recording)
    start = max(start, WARMUP_S)
    if not stop - start >= 1.0:
        shortest = (WARMUP_S + 1.0) / SPLIT_FRACTIONS["test"][1]
        raise SpikevizError(f"{recording.duration_s:g} s is too short for the dashboard: it scores "
                            f"the test split ({SPLIT_NAME}) after {WARMUP_S:g} s of real past, so it "
                            f"needs more than {shortest:g} s", recording.source.get("path"))
    start = math.ceil(round(start * 1000.0, 6)) / 1000.0   # whole ms, inside the split
    return start, round(min(stop, start + length_s), 3)


def raster_points(recording: Recording) -> pd.DataFrame:
    """Every spike as a (time s, unit row) point: the whole-session overview raster."""
    counts = recording.spike_counts
    times = np.concatenate(recording.spike_times) if counts.sum() else np.empty(0)
    units = np.repeat(np.arange(recording.n_units, dtype=np.float64), counts)
    return pd.DataFrame({"time": times, "unit": units})


def spike_points(t: np.ndarray, u: np.ndarray, start_s: float, bin_ms: float) -> pd.DataFrame:
    """Spikes at bins `t` of columns `u` as (time s, column) points at bin starts."""
    return pd.DataFrame({"time": start_s + t * (bin_ms / 1000.0), "unit": u.astype(np.float64)})


@dataclass(frozen=True, eq=False)
class Stretch:
    """The evaluated window binned with WARMUP_S of real past before it, columns in model order.

    Predictions P over all of X score strictly one bin ahead: P[t] against X[t+1] for t >= warm
    (evaluation.score_stretch). `targets` and the window views of P hold exactly those pairs.
    """

    X: np.ndarray             # (warm + T, N) uint8
    warm: int
    prime: int                # bins of the warm-up that only prime history; the rest calibrate presets
    unit_ids: np.ndarray      # target unit of each column
    policy: str               # unit order actually used
    bin_ms: float
    start_bin: int            # bin of X[0] in the recording
    key: tuple                # names the data for the prediction cache

    @property
    def targets(self) -> np.ndarray:
        return self.X[self.warm + 1:]

    @property
    def start_s(self) -> float:
        """Time of the first target bin."""
        return (self.start_bin + self.warm + 1) * self.bin_ms / 1000.0

    @property
    def duration_s(self) -> float:
        return len(self.targets) * self.bin_ms / 1000.0

    def window_of(self, P: np.ndarray) -> np.ndarray:
        """The rows of P scored against `targets`."""
        return P[self.warm:-1]


def make_stretch(recording: Recording, window: tuple[float, float], ids: list, policy: str,
                 source_rates: np.ndarray, data_key: Hashable = None) -> Stretch:
    """Bin `window` (s) of units `ids` with WARMUP_S of past, then order columns by `policy`."""
    n_bins = int(round(recording.duration_s * 1000.0 / BIN_MS))
    warm = int(round(WARMUP_S * 1000.0 / BIN_MS))
    a = max(int(round(window[0] * 1000.0 / BIN_MS)), warm)
    b = min(int(round(window[1] * 1000.0 / BIN_MS)), n_bins)
    if b - a < 2:
        raise SpikevizError(f"the window [{window[0]:g}, {window[1]:g}) s leaves no bins to score "
                            f"after the {WARMUP_S:g}-s warm-up")
    X = bin_range(recording, ids, BIN_MS, a - warm, b)
    perm = unit_permutation(policy, len(ids), X[:warm], rates_for(len(ids), source_rates))
    prime = min(int(round(PRIME_S * 1000.0 / BIN_MS)), warm // 2)
    return Stretch(np.ascontiguousarray(X[:, perm]), warm, prime, np.asarray(ids)[perm], policy,
                   BIN_MS, a - warm, (data_key, a, b, policy, tuple(map(str, ids))))


@dataclass(frozen=True, eq=False)
class Prediction:
    """One predictor's window probabilities and scores (what the cache keeps)."""

    P: np.ndarray             # (T, N) rows scored against Stretch.targets; (0, N) if not kept
    scored: Scored

    @property
    def nbytes(self) -> int:
        return self.P.nbytes


def predict(predictor, stretch: Stretch, keep_P: bool = True) -> Prediction:
    """Scores of `predictor` on the stretch; its probabilities only with `keep_P` (the generator's:
    the baselines' curves need only their histograms, and an hour-long session's P is large)."""
    P = predictor.predict(stretch.X)
    scored = score_stretch(P, stretch.X, stretch.warm, "strict", stretch.prime)
    if keep_P:   # a copy, so the full predictions (warm-up included) are freed
        return Prediction(stretch.window_of(P).copy(), scored)
    # The baselines' views need their pooled histograms only.
    return Prediction(np.empty((0, P.shape[1]), np.float32), replace(scored, units=None))


class LRUCache:
    """A least-recently-used cache bounded in bytes (numpy arrays count their nbytes, others 0).

    `misses` counts the values that had to be computed.
    """

    def __init__(self, max_bytes: float = 300e6, max_items: int = 16):
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(value) -> int:
        return int(getattr(value, "nbytes", 0))

    def get(self, key: Hashable, compute: Callable[[], object]):
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = compute()
        self._items[key] = value
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            self._items.popitem(last=False)
        return value

    @property
    def nbytes(self) -> int:
        return sum(self._size(v) for v in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Generator:
    """What makes the generated trains: a checkpoint (path) or, without one, a baseline by name."""

    name: str
    path: Path | None = None

    @property
    def is_model(self) -> bool:
        return self.path is not None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything the threshold does not change: stretch, predictions, presets, real statistics."""

    stretch: Stretch
    predictions: dict[str, Prediction]    # generator first, then the baselines
    generator: Generator
    mode: str                             # "teacher" or "free"
    free: np.ndarray | None               # free-running samples aligned with the targets
    source: str                           # where the baselines were fitted
    real: tuple[np.ndarray, np.ndarray]   # bins and columns of the real target spikes
    real_stats: FiringStats
    presets: dict[str, float] = field(default_factory=dict)

    @property
    def P(self) -> np.ndarray:
        return self.predictions[self.generator.name].P

    @property
    def hists(self) -> dict[str, ScoreHistogram]:
        return {name: p.scored.hists["strict"] for name, p in self.predictions.items()}

    @property
    def hist(self) -> ScoreHistogram:
        return self.predictions[self.generator.name].scored.hists["strict"]

    @property
    def unit_hists(self) -> UnitHistograms:
        return self.predictions[self.generator.name].scored.units


def _baseline_source(recording: Recording, source: Recording, same: bool) -> tuple[list, Source]:
    """Units and baseline source without a checkpoint: the most active units of each recording."""
    ids = select_units(recording, min(N_UNITS, recording.n_units), "rate")
    if same:
        return ids, source_from_recording(recording, ids, BIN_MS, fit="target train stretch")
    src_ids = select_units(source, min(N_UNITS, source.n_units), "rate")
    return ids, source_from_recording(source, src_ids, BIN_MS)


def _within_roots(meta: dict) -> dict:
    """Checkpoint metadata without a data_path outside the allowed roots: a checkpoint must not
    make the server read files the page itself may not open."""
    from .sources import allowed_roots

    path = meta.get("data_path")
    if not path:
        return meta
    try:
        resolved = Path(path).resolve()
        inside = any(resolved.is_relative_to(r) for r in allowed_roots())
    except (OSError, RuntimeError, ValueError):
        inside = False
    return meta if inside else meta | {"data_path": None}


def evaluate(recording: Recording, window: tuple[float, float], generator: Generator,
             source: Recording | None = None, *, unit_order: str = "auto", seed: int = 0,
             mode: str = "teacher", free_s: float = 5.0, data_key: Hashable = None,
             cache: LRUCache | None = None,
             progress: Callable[[float, str], None] = lambda f, m: None) -> Evaluation:
    """Predict `window` of `recording` with the generator and the baselines, as `spikeviz table` does.

    Units, unit order and baseline fits follow spikeviz.evaluation: a checkpoint's own units on its
    training data, else the most active ones; "auto" order is recorded on the training data and
    rate-rank elsewhere; baselines fit on the source's train split (a checkpoint's training data,
    else `source`, else the target). Presets are tuned on the warm-up, never on scored bins.
    Predictions come from `cache` when the same data, predictor, unit order and mode were seen.
    """
    from ..predict import ModelPredictor, generate

    cache = LRUCache() if cache is None else cache
    if mode == "free" and not generator.is_model:
        raise SpikevizError("free-running generation needs a model checkpoint; the baselines "
                            "only predict teacher-forced")
    model, model_key = None, None
    if generator.is_model:
        progress(0.05, f"loading {generator.name}")
        model_key = ("model", str(generator.path), generator.path.stat().st_mtime_ns)
        model = cache.get(model_key, lambda: ModelPredictor(generator.path, generator.name))
        meta = model.model.meta
        if abs(float(meta.get("bin_ms", BIN_MS)) - BIN_MS) > 1e-9:
            raise SpikevizError(f"the dashboard works on {BIN_MS:g}-ms bins, but this checkpoint "
                                f"was trained on {float(meta['bin_ms']):g}-ms bins: score it "
                                f"with `spikeviz evaluate`", generator.path)
        same = is_training_data(meta, recording)
        ids = target_units(model.model, recording, same, N_UNITS)
        progress(0.1, "reading the source session")
        src = checkpoint_source(_within_roots(meta)) or source_from_recording(
            recording, ids, BIN_MS, fit="target train stretch")
    else:
        same = source is None or source is recording
        ids, src = cache.get(("source", data_key, id(source)),
                             lambda: _baseline_source(recording, source or recording, same))
    requested = "random:%d" % seed if unit_order == "random" else unit_order
    policy = requested if requested != "auto" else (
        "rate-rank" if not same and src.fit == "source train stretch" else "recorded")
    progress(0.15, "binning the window")
    stretch = make_stretch(recording, window, ids, policy, src.rates, data_key)
    progress(0.2, "fitting the baselines on the source's train split")
    glm = cache.get(("glm-fit", src.key), lambda: GLMPredictor(bin_ms=BIN_MS).fit(src.train))
    predictors = {"rate": RatePredictor(rates_for(len(ids), src.rates)),
                  "ewma": EWMAPredictor(bin_ms=BIN_MS), "glm": glm}
    keys = {"rate": ("rate", src.key), "ewma": ("ewma",), "glm": ("glm", src.key)}
    if model is not None:
        # A generalist's guard is fitted on this stretch's warm-up, as `spikeviz evaluate` does.
        adapted = for_target(model.model, stretch.X, stretch)
        model = model if adapted is model.model else ModelPredictor(adapted, generator.name)
        predictors = {generator.name: model} | predictors
        keys[generator.name] = model_key
    else:
        predictors = {generator.name: predictors.pop(generator.name)} | predictors
    predictions = {}
    for i, (name, predictor) in enumerate(predictors.items()):
        progress(0.25 + 0.6 * i / len(predictors), f"predicting {stretch.duration_s:.0f} s with {name}")
        keep = name == generator.name
        predictions[name] = cache.get((stretch.key, keys[name], "teacher", keep),
                                      lambda p=predictor, k=keep: predict(p, stretch, k))
    free = None
    if mode == "free":
        n = int(min(free_s, stretch.duration_s) * 1000.0 / BIN_MS)
        progress(0.85, f"free-running {n * BIN_MS / 1000:g} s with {generator.name}")
        # The real past up to the first target bin, then the model's own samples.
        free = cache.get((stretch.key, model_key, "free", seed, n),
                         lambda: generate(model.model, stretch.X[:stretch.warm + 1], mode="free",
                                          seed=seed, n_bins=n))
    progress(0.95, "firing statistics")
    calibration = predictions[generator.name].scored.calibration
    Y = stretch.targets
    return Evaluation(stretch, predictions, generator, mode, free,
                      f"{src.name} ({src.fit})", np.nonzero(Y), firing_stats(Y, BIN_MS),
                      {name: calibration.threshold(name, FPR_CAP) for name in PRESETS})


@dataclass(frozen=True, eq=False)
class Frame:
    """What one threshold gives: the operating point, the generated trains and their statistics."""

    evaluation: Evaluation                 # the one it was made from
    threshold: float
    op: OperatingPoint                     # of the generator
    spikes: tuple[np.ndarray, np.ndarray]  # bins and columns of generated spikes (window time base)
    stats: FiringStats
    distances: dict                        # stats.compare_stats(real, generated)


def make_frame(ev: Evaluation, threshold: float) -> Frame:
    """The generator's operating point at `threshold` and the trains it generates (no prediction)."""
    op = ev.hist.operating_point(threshold)
    if ev.mode == "free":
        generated = ev.free
    else:
        # P >= edge: exactly the cells the operating point counts as predicted spikes.
        generated = ev.P >= np.float32(op.threshold)
    stats = firing_stats(generated, ev.stretch.bin_ms)
    return Frame(ev, op.threshold, op, np.nonzero(generated), stats, compare_stats(ev.real_stats, stats))
