"""Evaluating a checkpoint on a recording: the model against the baselines on the stretch that stretch.setup chooses."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.catalog import direction, recording_domain
from ..data.binning import SPLIT_NAME
from ..data.recording import Recording
from ..data.store import Cache, content_key
from ..data.units import parse_unit_order
from ..errors import SpikevizError
from ..generation.adapt import adapt, with_guard
from ..generation.blend import GLMBlend
from ..generation.predict import ModelPredictor
from ..measures.likelihood import LogLikelihood
from ..measures.scoring import (PROTOCOLS, Scored, aligned, json_safe, parse_threshold,
                               resolve_threshold, score_stretch)
from ..measures.uncertainty import paired_difference
from ..models.baselines import ALL_BASELINES, Predictor, RatePredictor
from ..models.checkpoint import load_model
from ..models.registry import fitted_arrays, from_fitted_arrays, make_predictor
from .stretch import N_UNITS, SECONDS, WARMUP_S, Setup, Source, Stretch, setup


def for_target(model, X: np.ndarray, st: Stretch):
    """The model as it scores this target: a generalist with its guard fitted on the warm-up
    (after the priming part, never on scored bins), any other model as it is. The guard is
    read back from the disk cache when these weights were adapted to this warm-up before."""
    if model.config.kind != "generalist":
        return model
    warm = np.ascontiguousarray(X[:st.warm])
    store = Cache(memo=True)
    key = content_key("guard", _weights_digest(model), hashlib.sha256(warm.tobytes()).hexdigest(),
                      warm.shape, warm.dtype.str, st.prime, st.warm)
    saved = store.get_json(key, "guard.json")
    if saved is not None:
        return with_guard(model, saved["guard"], st.prime, st.warm)
    adapted = adapt(model, warm, st.prime, st.warm)
    store.put_json(key, {"guard": adapted.meta["guard"]}, "guard.json")
    return adapted


def _weights_digest(model) -> str:
    """A SHA-256 of a model's configuration and weights (what its adapted guard depends on)."""
    digest = hashlib.sha256(repr(model.config).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + b"\0" + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def target_predictor(model, su: Setup, cache: dict | None = None, glm: bool = True):
    """The model as it predicts the target of `su`: `for_target`'s model, and a generalist with
    `glm` blended with the coupled GLM fitted on the target's train split (`blend_glm`). Its
    `.model` is the adapted model alone: what free runs use."""
    st = su.model_stretch
    base = ModelPredictor(for_target(model, st.X, st))
    if not blends(model, glm):
        return base
    return blend_glm(base, su, fit_baseline("glm-coupled", su, cache))


def blends(model, glm: bool = True) -> bool:
    """Whether `target_predictor` blends the model with the target's GLM: a generalist (the
    guard it adapts with is fitted on the warm-up) unless `glm` is off."""
    return glm and model.config.kind == "generalist"


def blend_glm(base: ModelPredictor, su: Setup, glm) -> GLMBlend:
    """`base` (over the model's columns of `su`) blended with `glm`, glm-coupled fitted as
    `fit_baseline` fits it (over the recorded columns), weighed on the stretch's warm-up."""
    recorded = {str(u): i for i, u in enumerate(su.stretch.unit_ids)}
    st = su.model_stretch
    return GLMBlend(base, glm, [recorded[str(u)] for u in st.unit_ids], st.prime, st.warm)


def fit_baseline(name: str, setup: Setup, cache: dict | None = None) -> Predictor:
    """Baseline `name` as a user could fit it on the target: on its own train split (ewma-tuned,
    which needs no training data, on the warm-up); it predicts `setup.stretch` (recorded order).
    `cache` (a dict) keeps fits across calls. A fitted model that adapts to a stretch (the
    stack's guard, like a generalist's, and the population states' chain: their `on_warmup`)
    adapts to the stretch's warm-up."""
    target, st = setup.target, setup.stretch
    if name == "rate":
        return RatePredictor(target.rates)
    if name == "ewma-tuned":
        return make_predictor(name, st.bin_ms).fit(st.X[:st.warm])
    cache = {} if cache is None else cache
    key = (f"{name}-fit", target.key)
    if key not in cache:
        cache[key] = _fit_stored(name, target, st.bin_ms)
    fitted = cache[key]
    return fitted.on_warmup(st.X, st.prime, st.warm) if hasattr(fitted, "on_warmup") else fitted


def _fit_stored(name: str, target: Source, bin_ms: float) -> Predictor:
    """`name` fitted on the target's train split, read back from the disk cache when this code
    fitted it on the same recording and units before (a later `generate` after `evaluate`, or a
    page, does not fit the coupled GLM again); a predictor whose fitted state is not arrays
    (fitted_arrays) is fitted every time."""
    fit = lambda: make_predictor(name, bin_ms).fit(target.train)  # noqa: E731
    if not target.key:
        return fit()
    store, key = Cache(memo=True), content_key("fitted-baseline", name, bin_ms, target.key)
    saved = store.get_arrays(key, "fitted.npz")
    if saved is not None:
        return from_fitted_arrays(name, saved, bin_ms)
    fitted = fit()
    arrays = fitted_arrays(fitted)
    if arrays is not None:
        store.put_arrays(key, "fitted.npz", arrays)
    return fitted


def evaluate_checkpoint(checkpoint, recording: Recording, *, split: str = "test",
                        unit_order: str = "auto", protocol: str = "strict",
                        threshold: float | str = "youden", seconds: float | None = SECONDS,
                        warmup_s: float = WARMUP_S, n_units: int = N_UNITS,
                        window_s: tuple[float, float] | None = None,
                        baselines: Sequence[str] = ALL_BASELINES, glm: bool = True,
                        cache: dict | None = None,
                        progress: Callable[[str], None] = lambda stage: None) -> dict[str, Any]:
    """Score a checkpoint (path or loaded model) and the baselines on `recording`; a JSON-able dict.

    Units, unit order and stretch (`seconds` of the split, or `window_s`) as `setup` chooses
    them. Baselines are fitted on the target's own train
    split: what a user could fit on this recording instead. A threshold preset is tuned on
    the warm-up window, never on the scored bins; so are a generalist's guard and, with `glm`, its
    blend with the target's coupled GLM (`target_predictor`). Bits per spike are
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
    blended = blends(model, glm)
    if cfg.kind == "generalist":
        progress("fitting the generalist's guard on the warm-up"
                 + (" (then its blend with glm-coupled)" if blended else ""))
    predictor = target_predictor(model, su, cache, glm)
    progress(f"model ({len(X):,} bins x {len(ids)} units)")
    model_scored = scored(predictor, X)
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
        "guard": predictor.model.meta.get("guard"),
        "glm_blend": {"weights": list(predictor.weights_), "fitted_on": "the warm-up",
                      "of": ["model", "glm-coupled without its partners", "glm-coupled's partners",
                             "bias"]} if blended else None,
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
