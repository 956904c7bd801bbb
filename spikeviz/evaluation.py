"""Evaluation: directions, unit-order policies, protocols, checkpoint results and the paper's tables."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import _atomic
from .baselines import BASELINES, EWMAPredictor, GLMPredictor, RatePredictor
from .binning import _n_bins, bin_index, bin_spikes, select_units
from .catalog import Session, bundled_session, models_dir, sessions
from .errors import SpikevizError
from .metrics import PRESETS, ScoreHistogram, UnitHistograms, scores_histograms
from .predictor import Predictor, split_bounds
from .recording import Recording

PROTOCOLS = ("strict", "reference")
SECONDS = 200.0   # default cap on the evaluated stretch (s)
WARMUP_S = 30.0   # real past before the evaluated stretch
PRIME_S = 10.0    # its first part only primes the predictors' history (model traces, GLM 10-s rate)
FPR_CAP = 0.005
GLM_FIT_BINS = 300_000   # the GLM fits on the last 5 min (at 1 ms) of the source's train split


# --- protocols ------------------------------------------------------------------------------------

def aligned(P: np.ndarray, X: np.ndarray, protocol: str = "strict") -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) a protocol scores, as views: row t of both belongs to prediction P[t].

    strict: P[t] against X[t+1], the causal one-step-ahead task. reference: P[t] against X[t],
    the paper code's same-bin scoring; the prediction has seen its label, so the score is leaky.
    Both use P[0..T-2], so they score the same number of cells.
    """
    if protocol == "strict":
        return X[1:], P[:-1]
    if protocol == "reference":
        return X[:-1], P[:-1]
    raise SpikevizError(f"unknown protocol {protocol!r}: use 'strict' or 'reference' (leaky)")


# --- unit order -----------------------------------------------------------------------------------

def parse_unit_order(spec: str) -> tuple[str, int | None]:
    """("recorded" | "rate-rank" | "auto", None) or ("random", seed) from a policy string."""
    if spec in ("auto", "recorded", "rate-rank"):
        return spec, None
    if spec.startswith("random:"):
        try:
            return "random", int(spec.split(":", 1)[1])
        except ValueError:
            pass
    raise SpikevizError(f"unknown unit order {spec!r}: use recorded, random:SEED (e.g. random:0), "
                        f"rate-rank or auto")


def unit_permutation(policy: str, n_units: int, warmup: np.ndarray | None = None,
                     source_rates: np.ndarray | None = None) -> np.ndarray:
    """perm with model input column j = target column perm[j].

    recorded: identity. random:SEED: a seeded permutation (the paper's choice). rate-rank: the
    target column with the k-th highest spike count in `warmup` (T, N) goes where the source
    unit with the k-th highest `source_rates` was trained.
    """
    kind, seed = parse_unit_order(policy)
    if kind == "recorded":
        return np.arange(n_units)
    if kind == "random":
        return np.random.default_rng(seed).permutation(n_units)
    if kind == "rate-rank":
        if warmup is None or source_rates is None:
            raise SpikevizError("rate-rank needs the target's warm-up window and the source "
                                "session's unit rates")
        if len(source_rates) != n_units or warmup.shape[1] != n_units:
            raise SpikevizError(f"rate-rank maps units one to one: {len(source_rates)} source "
                                f"units, {warmup.shape[1]} target units")
        target_rank = np.argsort(-warmup.sum(0, dtype=np.int64), kind="stable")
        source_rank = np.argsort(-np.asarray(source_rates), kind="stable")
        perm = np.empty(n_units, np.int64)
        perm[source_rank] = target_rank
        return perm
    raise SpikevizError("unit order 'auto' must be resolved before permuting")


# --- directions -----------------------------------------------------------------------------------

def short_domain(domain: str | None) -> str | None:
    return {"in vitro": "vitro", "in vivo": "vivo"}.get(domain or "", domain)


def direction(source_domain: str | None, target_domain: str | None) -> str | None:
    """"vitro->vivo" and the like; None when a domain is unknown."""
    a, b = short_domain(source_domain), short_domain(target_domain)
    return f"{a}->{b}" if a and b else None


def recording_domain(recording: Recording) -> str | None:
    """The catalogued domain of a bundled recording, else None."""
    path = recording.source.get("path")
    s = bundled_session(path) if path else None
    return s.domain if s else None


# --- binning helpers ------------------------------------------------------------------------------

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


def _ids_like(recording: Recording, names: Sequence[str]) -> list:
    """The recording's unit ids whose string forms are `names` (checkpoints store ids as strings)."""
    by_name = {str(u): u for u in recording.unit_ids.tolist()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SpikevizError(f"units {missing[:5]} of the checkpoint are not in {recording.name}")
    return [by_name[n] for n in names]


# --- the source: what a model was trained on ------------------------------------------------------

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
    a, b = split_bounds(_n_bins(recording.duration_s, bin_ms))["train"]
    return Source(recording.name, recording_domain(recording),
                  bin_rates(recording, unit_ids, bin_ms, a, b),
                  bin_range(recording, unit_ids, bin_ms, max(a, b - GLM_FIT_BINS), b), fit,
                  (recording.content_hash(), recording.duration_s, tuple(map(str, unit_ids)), bin_ms))


@lru_cache(maxsize=4)
def _source_cached(session: str | None, data_path: str | None, seconds: float | None, bin_ms: float,
                   unit_names: tuple, content_hash: str | None) -> Source | None:
    from .catalog import session as find_session
    from .io import load_recording

    try:
        if session:
            rec = find_session(session).load()
        elif data_path and Path(data_path).exists():
            bundled = bundled_session(data_path)
            rec = bundled.load() if bundled else load_recording(data_path)
        else:
            return None
    except SpikevizError:
        return None
    if content_hash and rec.content_hash() != content_hash:
        return None
    if seconds:
        rec = rec.slice(0.0, float(seconds))
    return source_from_recording(rec, _ids_like(rec, unit_names), bin_ms)


def checkpoint_source(meta: dict[str, Any]) -> Source | None:
    """The training data named in checkpoint metadata (bundled session or data_path), if it is
    still there with the same content; None otherwise."""
    names = tuple(str(u) for u in meta.get("unit_ids") or ())
    if not names:
        return None
    return _source_cached(meta.get("session"), meta.get("data_path"), meta.get("seconds"),
                          float(meta.get("bin_ms", 1.0)), names, meta.get("content_hash"))


def is_training_data(meta: dict[str, Any], recording: Recording) -> bool:
    """Whether `recording` is the recording the checkpoint was trained on (or on its first
    `seconds`): then the model's own units exist in it, in their trained order."""
    return bool(meta.get("content_hash")) and recording.content_hash() == meta["content_hash"]


# --- scoring --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Scored:
    """One predictor's histograms on the evaluated stretch (per protocol) and its calibration window."""

    hists: dict[str, ScoreHistogram]
    units: UnitHistograms | None   # None where a caller dropped them to save memory
    calibration: ScoreHistogram

    def result(self, protocol: str, threshold: float | None = None) -> dict:
        h = self.hists[protocol]
        none = np.array([np.nan])
        roc, pr = (none, none) if self.units is None else (self.units.roc_auc, self.units.pr_auc)
        out = {"roc_auc": h.roc_auc, "pr_auc": h.pr_auc,
               "per_unit_roc_auc_median": _nanmedian(roc),
               "per_unit_pr_auc_median": _nanmedian(pr)}
        if threshold is not None:
            op = h.operating_point(threshold).as_dict()
            out |= {k: op[k] for k in ("threshold", "precision", "recall", "f1", "fpr",
                                       "predicted_spikes", "real_spikes")}
        return out


def _nanmedian(a: np.ndarray) -> float | None:
    return float(np.nanmedian(a)) if np.isfinite(a).any() else None


def score_stretch(P: np.ndarray, X: np.ndarray, warm: int, protocol: str, prime: int = 0) -> Scored:
    """Histograms of predictions P over X (both (warm + T, N)): the evaluated pairs t >= warm under
    both protocols (per unit for `protocol`), and the calibration pairs prime <= t < warm - 1."""
    hists = {}
    for proto in PROTOCOLS:
        y, p = aligned(P[warm:], X[warm:], proto)
        if proto == protocol:
            hists[proto], units = scores_histograms(y, p)
        else:
            hists[proto] = ScoreHistogram.from_scores(y, p)
    y, p = aligned(P[prime:warm], X[prime:warm], protocol)
    return Scored(hists, units, ScoreHistogram.from_scores(y, p))


def parse_threshold(threshold: float | str) -> float | str:
    """A preset name as it is, or the threshold as a number in [0, 1]."""
    if isinstance(threshold, str) and threshold in PRESETS:
        return threshold
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise SpikevizError(f"threshold {threshold!r}: give a number in [0, 1] or one of "
                            f"{', '.join(PRESETS)}") from None
    if not 0.0 <= value <= 1.0:
        raise SpikevizError(f"threshold {value} is not in [0, 1]")
    return value


def resolve_threshold(threshold: float | str, calibration: ScoreHistogram) -> tuple[float, str]:
    """A threshold and the rule that set it: a number as given, or a preset on the calibration pairs."""
    threshold = parse_threshold(threshold)
    if isinstance(threshold, float):
        return threshold, "given"
    rule = f"youden (FPR <= {FPR_CAP})" if threshold == "youden" else threshold
    return calibration.threshold(threshold, FPR_CAP), f"{rule}, tuned on the warm-up window"


# --- evaluating a checkpoint ----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Stretch:
    """The binned warm-up and evaluated stretch of a target, columns in model order."""

    X: np.ndarray            # (warm + T, N) uint8
    warm: int
    prime: int
    unit_ids: np.ndarray     # target unit of each column
    bins: tuple[int, int]    # evaluated bins [a, b) of the whole target recording
    bin_ms: float

    @property
    def seconds(self) -> tuple[float, float]:
        return tuple(round(x * self.bin_ms / 1000.0, 6) for x in self.bins)


def make_stretch(recording: Recording, unit_ids: Sequence, bin_ms: float, split: str,
                 seconds: float | None, warmup_s: float = WARMUP_S) -> Stretch:
    """Bins of `split` (capped to `seconds`, None: all) with `warmup_s` of real past before them.

    When the split starts too early for a full warm-up (split "all"), the evaluated stretch starts
    after it instead: the warm-up always precedes what is scored.
    """
    n_bins = _n_bins(recording.duration_s, bin_ms)
    bounds = split_bounds(n_bins)
    if split not in bounds:
        raise SpikevizError(f"unknown split {split!r}: use test, valid or all")
    a, b = bounds[split]
    warm = int(round(warmup_s * 1000.0 / bin_ms))
    a = max(a, warm)
    if seconds:
        b = min(b, a + int(round(seconds * 1000.0 / bin_ms)))
    if b - a < 2:
        raise SpikevizError(f"the {split} split leaves {max(b - a, 0)} bins to evaluate after a "
                            f"{warmup_s:g}-s warm-up: the recording is too short",
                            recording.source.get("path"))
    X = bin_range(recording, unit_ids, bin_ms, a - warm, b)
    return Stretch(X, warm, min(int(round(PRIME_S * 1000.0 / bin_ms)), warm // 2),
                   np.asarray(unit_ids), (a, b), bin_ms)


def _clean(x):
    """JSON-safe: NaN and infinity become None, numpy scalars Python numbers."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def target_units(model, recording: Recording, same: bool, n_units: int) -> list:
    """Units of `recording` a model sees: its own columns on its training data, else the most
    active ones (the model's unit count; `n_units` for a transfer model)."""
    meta, cfg = model.meta, model.config
    if same:
        return _ids_like(recording, [str(u) for u in meta["unit_ids"]])
    if cfg.shared_units:
        return select_units(recording, min(n_units, recording.n_units), "rate")
    if recording.n_units < cfg.n_units:
        raise SpikevizError(f"{recording.n_units} units, but the model was trained on "
                            f"{cfg.n_units}: evaluate it on a recording with at least as many "
                            f"units, or use a transfer-preset model", recording.source.get("path"))
    return select_units(recording, cfg.n_units, "rate")


def rates_for(n_units: int, rates: np.ndarray) -> np.ndarray:
    """`rates` as given for n_units of them, else their quantiles high to low (rank matching
    across unit counts, for transfer models trained on another number of units)."""
    if len(rates) == n_units:
        return rates
    q = np.linspace(0.0, 1.0, n_units)
    return np.quantile(np.sort(rates), 1.0 - q).astype(np.float32)


def evaluate_checkpoint(checkpoint, recording: Recording, *, split: str = "test",
                        unit_order: str = "auto", protocol: str = "strict",
                        threshold: float | str = "youden", seconds: float | None = SECONDS,
                        warmup_s: float = WARMUP_S, n_units: int = 128,
                        baselines: Sequence[str] = BASELINES,
                        cache: dict | None = None) -> dict[str, Any]:
    """Score a checkpoint (path or loaded model) and the baselines on `recording`; a JSON-able dict.

    Units: the checkpoint's own columns when `recording` is its training data, else the most
    active ones (the model's unit count; `n_units` for a transfer model). unit_order "auto" is
    recorded on the training data, rate-rank elsewhere. Baselines are fitted like the model on
    the source's train split (the target's when the source cannot be found) and see the model's
    column order. A threshold preset is tuned on the warm-up window, never on the scored bins.
    `cache` (a dict) reuses baseline scores and fits across checkpoints.
    """
    from .checkpoint import load_model
    from .predict import ModelPredictor

    if protocol not in PROTOCOLS:
        raise SpikevizError(f"unknown protocol {protocol!r}: use 'strict' or 'reference' (leaky)")
    requested, _ = parse_unit_order(unit_order)
    parse_threshold(threshold)
    model = load_model(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    meta, cfg = model.meta, model.config
    bin_ms = float(meta.get("bin_ms", 1.0))
    same = is_training_data(meta, recording)
    ids = target_units(model, recording, same, n_units)
    source = checkpoint_source(meta) or source_from_recording(recording, ids, bin_ms,
                                                              fit="target train stretch")
    policy = unit_order if requested != "auto" else (
        "rate-rank" if not same and source.fit == "source train stretch" else "recorded")
    st = make_stretch(recording, ids, bin_ms, split, seconds, warmup_s)
    src_rates = rates_for(len(ids), source.rates)
    perm = unit_permutation(policy, len(ids), st.X[:st.warm], src_rates)
    X = np.ascontiguousarray(st.X[:, perm])

    def scored(predictor: Predictor) -> Scored:
        return score_stretch(predictor.predict(X), X, st.warm, protocol, st.prime)

    cache = {} if cache is None else cache
    target_key = (recording.content_hash(), st.bins, policy, protocol, tuple(ids))
    results = {}
    for name in baselines:
        key = (name, source.key, target_key)
        if key not in cache:
            if name == "rate":
                predictor = RatePredictor(src_rates)
            elif name == "ewma":
                predictor = EWMAPredictor(bin_ms=bin_ms)
            elif name == "glm":
                fit_key = ("glm-fit", source.key)
                if fit_key not in cache:
                    cache[fit_key] = GLMPredictor(bin_ms=bin_ms).fit(source.train)
                predictor = cache[fit_key]
            else:
                raise SpikevizError(f"unknown baseline {name!r}: use {', '.join(BASELINES)}")
            cache[key] = scored(predictor)
        results[name] = cache[key]
    model_scored = scored(ModelPredictor(model))
    thr, rule = resolve_threshold(threshold, model_scored.calibration)
    hist = model_scored.hists[protocol]
    target_domain = recording_domain(recording)
    out = {
        "checkpoint": str(meta.get("path", "")), "preset": cfg.preset, "loss": meta.get("loss"),
        "source": {"name": meta.get("session") or meta.get("data"), "domain": meta.get("domain"),
                   "baselines_fit_on": source.fit},
        "data": recording.source.get("path") or recording.name, "data_name": recording.name,
        "domain": target_domain, "direction": direction(meta.get("domain"), target_domain),
        "same_recording": same, "split": split, "stretch_s": list(st.seconds),
        "warmup_s": st.warm * bin_ms / 1000.0, "bin_ms": bin_ms,
        "n_bins": st.bins[1] - st.bins[0] - 1, "n_units": len(ids), "n_scored": hist.n,
        "base_rate": hist.base_rate, "chance": hist.chance,
        "protocol": protocol, "leaky": protocol == "reference",
        "unit_order": policy, "unit_order_requested": unit_order,
        "model_needs_unit_order": not cfg.shared_units,
        "units": [str(u) for u in st.unit_ids[perm]],
        "threshold_rule": rule,
        "model": model_scored.result(protocol, thr),
        "baselines": {name: s.result(protocol) for name, s in results.items()},
        "protocols": {proto: {"model": _aucs(model_scored.hists[proto]),
                              **{name: _aucs(s.hists[proto]) for name, s in results.items()}}
                      for proto in PROTOCOLS},
    }
    return _clean(out)


def _aucs(h: ScoreHistogram) -> dict:
    return {"roc_auc": h.roc_auc, "pr_auc": h.pr_auc}


# --- the paper's tables ---------------------------------------------------------------------------

def shipped_checkpoints(directory: str | Path | None = None) -> list[Path]:
    """models/<session>-<loss>[-<preset>].safetensors (resume states excluded), sorted."""
    d = Path(directory) if directory else models_dir()
    return sorted(p for p in d.glob("*.safetensors") if not p.name.endswith(".state.safetensors"))


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample SD (None for a single value)."""
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


TABLE_FILES = ("table.md", "table.csv", "table.json")
ROW_KEYS = ("train_session", "test_session", "direction", "kind", "loss", "preset", "unit_order",
            "seconds", "base_rate", "model_roc", "model_pr", "model_unit_roc", "model_roc_leaky",
            "model_pr_leaky", "rate_roc", "rate_pr", "ewma_roc", "ewma_pr", "glm_roc", "glm_pr",
            "best_baseline_pr", "model_beats_baselines")


@dataclass
class Table:
    """Every (train session, test session, loss) cell and the mean +/- SD per direction and loss."""

    rows: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def summary(self) -> list[dict]:
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault((r["direction"], r["loss"], r["preset"]), []).append(r)
        out = []
        for (d, loss, preset), rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
            s = {"direction": d, "loss": loss, "preset": preset, "cells": len(rows)}
            for col in ("model_roc", "model_pr", "model_roc_leaky", "rate_roc", "rate_pr",
                        "ewma_roc", "ewma_pr", "glm_roc", "glm_pr", "base_rate"):
                s[col + "_mean"], s[col + "_sd"] = _mean_sd([r[col] for r in rows])
            wins = sum(bool(r["model_beats_baselines"]) for r in rows)
            s["model_beats_baselines"] = f"{wins}/{len(rows)}"
            out.append(s)
        return out

    def markdown(self) -> str:
        def f(x, nd=3):
            return "-" if x is None else f"{x:.{nd}f}"

        def pm(s, col, nd=3):
            m, sd = s[col + "_mean"], s[col + "_sd"]
            return "-" if m is None else f"{m:.{nd}f}" + ("" if sd is None else f" ± {sd:.{nd}f}")

        st = self.settings
        caps = ", ".join(f"{k} models {v[0]:g} s after {v[1]:g} s"
                         for k, v in st.get("preset_limits", {}).items())
        lines = [f"Protocol {st.get('protocol')}, unit order {st.get('unit_order')}; evaluated "
                 f"stretch: the first {st.get('seconds'):g} s of each test split after a "
                 f"{st.get('warmup_s'):g}-s warm-up{f' ({caps})' if caps else ''}; "
                 f"AUCs pooled over units and bins. Baselines are fitted on the source's train "
                 f"split and see the model's unit order. 'leaky' is the paper's same-bin scoring. "
                 f"Mean ± SD over the cells of a direction; 'model > baselines' counts the cells "
                 f"where the model's PR-AUC beats all three baselines.", "",
                 "| direction | loss | preset | cells | model ROC | model PR | model ROC leaky | "
                 "rate ROC | rate PR | EWMA ROC | EWMA PR | GLM ROC | GLM PR | base rate | "
                 "model > baselines (PR) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in self.summary:
            lines.append(
                f"| {s['direction']} | {s['loss']} | {s['preset']} | {s['cells']} | "
                f"{pm(s, 'model_roc')} | {pm(s, 'model_pr', 4)} | {pm(s, 'model_roc_leaky')} | "
                f"{pm(s, 'rate_roc')} | {pm(s, 'rate_pr', 4)} | {pm(s, 'ewma_roc')} | "
                f"{pm(s, 'ewma_pr', 4)} | {pm(s, 'glm_roc')} | {pm(s, 'glm_pr', 4)} | "
                f"{pm(s, 'base_rate', 4)} | {s['model_beats_baselines']} |")
        lines += ["", "| train session | test session | direction | loss | preset | unit order | "
                  "model ROC | model PR | per-unit ROC (median) | rate ROC | rate PR | EWMA ROC | "
                  "EWMA PR | GLM ROC | GLM PR | base rate |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(
                f"| {r['train_session']} | {r['test_session']} | {r['direction']} | {r['loss']} | "
                f"{r['preset']} | {r['unit_order']} | {f(r['model_roc'])} | {f(r['model_pr'], 4)} | "
                f"{f(r['model_unit_roc'])} | {f(r['rate_roc'])} | {f(r['rate_pr'], 4)} | "
                f"{f(r['ewma_roc'])} | "
                f"{f(r['ewma_pr'], 4)} | {f(r['glm_roc'])} | {f(r['glm_pr'], 4)} | "
                f"{f(r['base_rate'], 4)} |")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict:
        return _clean({"settings": self.settings, "summary": self.summary, "rows": self.rows})

    def write(self, out_dir: str | Path, force: bool = True) -> list[Path]:
        """table.md, table.csv (a line a cell) and table.json in `out_dir`, each written atomically;
        existing ones are replaced only with `force`."""
        out_dir = Path(out_dir)
        paths = [out_dir / name for name in TABLE_FILES]
        if not force:
            for path in paths:
                if path.exists():
                    raise SpikevizError("exists already: pass --force to replace it", path)
        with _atomic.target(paths[0]) as tmp:
            tmp.write_text(self.markdown())
        with _atomic.target(paths[1]) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=ROW_KEYS)
                w.writeheader()
                w.writerows(_clean(self.rows))
        with _atomic.target(paths[2]) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=1))
        return paths


def table_row(result: dict, train_session: str, test: Session) -> dict:
    """One table cell from an evaluate_checkpoint result."""
    b, m = result["baselines"], result["model"]
    leaky = result["protocols"]["reference"]["model"]
    best = max((b[k]["pr_auc"] for k in b if b[k]["pr_auc"] is not None), default=None)
    d = result["direction"]
    return {"train_session": train_session, "test_session": test.name, "direction": d,
            "kind": ("same session" if train_session == test.name else
                     "within domain" if d and d.split("->")[0] == d.split("->")[1] else "cross domain"),
            "loss": result["loss"], "preset": result["preset"], "unit_order": result["unit_order"],
            "base_rate": result["base_rate"], "model_roc": m["roc_auc"], "model_pr": m["pr_auc"],
            "model_unit_roc": m["per_unit_roc_auc_median"],
            "model_roc_leaky": leaky["roc_auc"], "model_pr_leaky": leaky["pr_auc"],
            **{f"{k}_{s}": b.get(k, {}).get(f"{s}_auc") for k in BASELINES for s in ("roc", "pr")},
            "best_baseline_pr": best,
            "model_beats_baselines": None not in (best, m["pr_auc"]) and m["pr_auc"] > best}


# Transfer models run one sequence per unit, a few hundred bins a second on 2 CPU cores: the table
# scores them on a shorter stretch after a shorter warm-up, (seconds, warm-up s) per preset.
TABLE_LIMITS = {"transfer": (10.0, 10.0)}
TABLE_WARMUP_S = 15.0


def build_table(checkpoints: Sequence[str | Path] | None = None, *, seconds: float = SECONDS,
                unit_order: str = "auto", protocol: str = "strict",
                threshold: float | str = "youden", warmup_s: float = TABLE_WARMUP_S,
                preset_limits: dict[str, tuple[float, float]] = TABLE_LIMITS,
                progress: Callable[[str], None] = lambda msg: None) -> Table:
    """Evaluate every shipped checkpoint on every bundled session's test split: its first `seconds`
    after `warmup_s` of real past (at most `preset_limits[preset]` = (seconds, warm-up))."""
    from .checkpoint import load_model

    paths = list(checkpoints) if checkpoints is not None else shipped_checkpoints()
    if not paths:
        raise SpikevizError(f"no checkpoints in {models_dir()}: train some (spikeviz train) or "
                            f"set $SPIKEVIZ_MODELS")
    table = Table(settings={"protocol": protocol, "unit_order": unit_order, "seconds": seconds,
                            "preset_limits": dict(preset_limits), "warmup_s": warmup_s,
                            "split": "test", "threshold": threshold,
                            "checkpoints": [str(p) for p in paths]})
    cache: dict = {}
    targets = sessions()
    for path in paths:
        model = load_model(path)
        train_session = model.meta.get("session") or model.meta.get("data") or Path(path).stem
        cap, warm = preset_limits.get(model.config.preset, (seconds, warmup_s))
        cap, warm = min(seconds, cap), min(warmup_s, warm)
        for test in targets:
            progress(f"{Path(path).name} on {test.name} ({cap:g} s)")
            result = evaluate_checkpoint(model, test.load(), unit_order=unit_order,
                                         protocol=protocol, threshold=threshold, seconds=cap,
                                         warmup_s=warm, cache=cache)
            table.rows.append(table_row(result, train_session, test) | {"seconds": cap})
    return table
