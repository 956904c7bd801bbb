"""Evaluating a checkpoint on a recording: units, unit order, the warm-up and scored stretch, the model against the baselines."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..models.baselines import ALL_BASELINES, RatePredictor
from ..models.registry import make_predictor
from ..data.binning import SPLIT_NAME, bin_range, bin_rates, n_bins_of, split_bounds, train_units
from ..data.catalog import direction, recording_domain
from ..errors import SpikevizError
from ..models.baselines import Predictor
from ..data.recording import Recording
from ..measures.likelihood import LogLikelihood
from ..measures.scoring import (PROTOCOLS, Scored, aligned, json_safe, parse_threshold,
                               resolve_threshold, score_stretch)
from ..measures.uncertainty import paired_difference
from ..data.units import ids_named, parse_unit_order, rates_for, target_units, unit_permutation
from ..data.catalog import open_recording
from ..generation.adapt import adapt
from ..generation.predict import ModelPredictor
from ..models.checkpoint import load_model

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


def for_target(model, X: np.ndarray, st: Stretch):
    """The model as it scores this target: a generalist with its guard fitted on the warm-up
    (after the priming part, never on scored bins), any other model as it is."""
    if model.config.kind != "generalist":
        return model
    return adapt(model, X[:st.warm], st.prime, st.warm)


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
          window_s: tuple[float, float] | None = None, n_units: int = 128,
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


def fit_baseline(name: str, setup: Setup, cache: dict | None = None) -> Predictor:
    """Baseline `name` as a user could fit it on the target: on its own train split (ewma-tuned,
    which needs no training data, on the warm-up); it predicts `setup.stretch` (recorded order).
    `cache` (a dict) keeps fits across calls."""
    target, st = setup.target, setup.stretch
    if name == "rate":
        return RatePredictor(target.rates)
    if name == "ewma-tuned":
        return make_predictor(name, st.bin_ms).fit(st.X[:st.warm])
    cache = {} if cache is None else cache
    key = (f"{name}-fit", target.key)
    if key not in cache:
        cache[key] = make_predictor(name, st.bin_ms).fit(target.train)
    return cache[key]


def evaluate_checkpoint(checkpoint, recording: Recording, *, split: str = "test",
                        unit_order: str = "auto", protocol: str = "strict",
                        threshold: float | str = "youden", seconds: float | None = SECONDS,
                        warmup_s: float = WARMUP_S, n_units: int = 128,
                        window_s: tuple[float, float] | None = None,
                        baselines: Sequence[str] = ALL_BASELINES,
                        cache: dict | None = None,
                        progress: Callable[[str], None] = lambda stage: None) -> dict[str, Any]:
    """Score a checkpoint (path or loaded model) and the baselines on `recording`; a JSON-able dict.

    Units, unit order and stretch (`seconds` of the split, or `window_s`) as `setup` chooses
    them. Baselines are fitted on the target's own train
    split: what a user could fit on this recording instead. A threshold preset is tuned on
    the warm-up window, never on the scored bins; so is a generalist's guard. Bits per spike are
    the log-likelihood gain over each unit's mean rate in the target's train split.
    `cache` (a dict) reuses baseline scores and fits across checkpoints; `progress` is told of
    each stage as it starts.
    """
    if protocol not in PROTOCOLS:
        raise SpikevizError(f"unknown protocol {protocol!r}: use 'strict' or 'reference' (leaky)")
    parse_unit_order(unit_order)
    parse_threshold(threshold)
    model = load_model(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    meta, cfg = model.meta, model.config
    bin_ms = float(meta.get("bin_ms", 1.0))
    su = setup(model, recording, split=split, unit_order=unit_order, seconds=seconds,
               warmup_s=warmup_s, n_units=n_units, window_s=window_s)
    st, target, same, policy = su.stretch, su.target, su.same, su.model_stretch.unit_order
    ids, X = st.unit_ids, su.model_stretch.X

    def scored(predictor: Predictor, X: np.ndarray) -> Scored:
        return score_stretch(predictor.predict(X), X, st.warm, protocol, st.prime)

    # Pooled scores do not depend on the column order, so the baselines' serve every checkpoint
    # scored on this stretch.
    cache = {} if cache is None else cache
    results = {}
    for name in baselines:
        key = (name, target.key, st.bins, protocol)
        if key not in cache:
            progress(f"baseline {name}")
            cache[key] = scored(fit_baseline(name, su, cache), st.X)
        results[name] = cache[key]
    if cfg.kind == "generalist":
        progress("fitting the generalist's guard on the warm-up")
    adapted = for_target(model, X, st)
    progress(f"model ({len(X):,} bins x {len(ids)} units)")
    model_scored = scored(ModelPredictor(adapted), X)
    thr, rule = resolve_threshold(threshold, model_scored.calibration)
    hist = model_scored.hists[protocol]
    # The same pairs the predictors are scored on (protocol-aligned), under each unit's rate.
    reference = LogLikelihood().add(*aligned(np.broadcast_to(target.rates, st.X[st.warm:].shape),
                                             st.X[st.warm:], protocol))

    def result(s: Scored, thr: float | None = None) -> dict:
        bps = (s.loglik - reference.total) / max(reference.n_spikes, 1) / np.log(2)
        return s.result(protocol, thr) | {"bits_per_spike": bps}

    base_results = {name: result(s) for name, s in results.items()}
    best = max((n for n in base_results if base_results[n]["pr_auc"] is not None),
               key=lambda n: base_results[n]["pr_auc"], default=None)
    model_result = result(model_scored, thr)
    target_domain = recording_domain(recording)
    source_domain = meta.get("domain")
    out = {
        "checkpoint": str(meta.get("path", "")), "preset": cfg.preset, "loss": meta.get("loss"),
        "source": {"name": meta.get("session") or meta.get("data"), "domain": source_domain,
                   "sessions": meta.get("sessions")},
        "baselines_fit_on": "the target's train split (ewma-tuned: its warm-up)",
        "data": recording.source.get("path") or recording.name, "data_name": recording.name,
        "domain": target_domain,
        "direction": direction(source_domain or ("mixed" if meta.get("sessions") else None),
                               target_domain),
        "same_recording": same, "split": split, "split_fractions": SPLIT_NAME,
        "unit_selection": "most active in the target's train split" if not (
            same and meta.get("unit_ids")) else "the checkpoint's own units",
        "stretch_s": list(st.seconds), "warmup_s": st.warm * bin_ms / 1000.0,
        "prime_s": st.prime * bin_ms / 1000.0, "bin_ms": bin_ms,
        "n_bins": st.bins[1] - st.bins[0] - 1, "n_units": len(ids), "n_scored": hist.n,
        "base_rate": hist.base_rate, "chance": hist.chance,
        "protocol": protocol, "leaky": protocol == "reference",
        "unit_order": policy, "unit_order_requested": unit_order,
        "model_needs_unit_order": not cfg.shared_units,
        "units": [str(u) for u in su.model_stretch.unit_ids],
        "threshold_rule": rule,
        "guard": adapted.meta.get("guard"),
        "model": model_result,
        "baselines": base_results,
        "comparison": _comparison(model_scored, results.get(best), best),
        "protocols": {proto: {"model": _aucs(model_scored.hists[proto]),
                              **{name: _aucs(s.hists[proto]) for name, s in results.items()}}
                      for proto in PROTOCOLS},
    }
    return json_safe(out)


def _comparison(model: Scored, baseline: Scored | None, name: str | None) -> dict:
    """Model - best baseline, PR-AUC and bits/spike, with 95 % block-bootstrap intervals."""
    if baseline is None:
        return {"best_baseline": None, "pr_auc_diff": None, "pr_auc_diff_ci95": None}
    pr = paired_difference(model.blocks, baseline.blocks, "pr_auc")
    bits = paired_difference(model.blocks, baseline.blocks, "bits_per_spike")
    return {"best_baseline": name, "pr_auc_diff": pr["diff"], "pr_auc_diff_ci95": pr["ci95"],
            "bits_per_spike_diff": bits["diff"], "bits_per_spike_diff_ci95": bits["ci95"],
            "blocks": pr["n_blocks"], "resamples": pr["n_boot"],
            "no_interval": pr.get("no_interval")}


def _aucs(h) -> dict:
    return {"roc_auc": h.roc_auc, "pr_auc": h.pr_auc}
