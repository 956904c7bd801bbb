"""Prediction and generation with a trained model: batched next-bin probabilities, teacher-forced and free-running trains."""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..data.binning import BinnedSpikes
from ..errors import SpikevizError
from ..models.checkpoint import check_data, load_model
from ..models.model import SpikeTransformer, compute_traces, final_traces
from . import fused
from .calibration import RateController, TargetCalibration, free_affine, identity

# Tokens (windows x bins x sequences) per forward pass: measured fastest on CPU at a few
# thousand (activations stay in cache); 2^17 was 4x slower.
TOKEN_BUDGET = 1 << 12


def _matrix(model: SpikeTransformer, X) -> np.ndarray:
    if isinstance(X, BinnedSpikes):
        check_data(model, X.n_units, X.bin_ms, X.source.get("path"))
        X = X.X
    X = np.asarray(X)
    if X.ndim != 2:
        raise SpikevizError(f"spikes must be a (bins, units) matrix, got shape {X.shape}")
    check_data(model, X.shape[1], None)
    return X


def windows(n_bins: int, context: int) -> list[tuple[int, int]]:
    """(start, keep_from) of the windows predict_next runs: length min(context, n_bins), stride half
    a context, each keeping the positions no earlier window kept. Every kept position past the first
    window has at least half a context of past inside its window."""
    L = min(context, n_bins)
    half = max(1, L // 2)
    out = [(0, 0)]
    covered = L
    while covered < n_bins:
        start = min(out[-1][0] + half, n_bins - L)
        out.append((start, covered))
        covered = start + L
    return out


@contextmanager
def one_thread():
    """Torch on one CPU thread for the duration: inference runs many small operations, which a
    second thread does not speed up and which, on a busy machine, threads spinning for a core
    slow down more than tenfold (measured on 2 cores under load: 12 s against 155 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def logits_next(model: SpikeTransformer, X: np.ndarray | BinnedSpikes,
                batch_size: int | None = None) -> np.ndarray:
    """Logits L (T, N) float32 with sigmoid(L[t]) the model's p(X[t+1] = 1 | X[0..t]) before its
    calibration, from batched overlapping windows.

    Traces are filtered over all of X (in pieces), so they carry history from before each window.
    """
    with one_thread():
        return _logits_next(model, X, batch_size)


def _logits_next(model, X, batch_size: int | None) -> np.ndarray:
    X = _matrix(model, X)
    T, N = X.shape
    out = np.empty((T, N), dtype=np.float32)
    if T == 0:
        return out
    cfg = model.config
    L = min(cfg.context, T)
    wins = windows(T, cfg.context)
    device = next(model.parameters()).device
    if batch_size is None:
        budget = TOKEN_BUDGET * (256 if device.type == "cuda" else 1)
        batch_size = max(1, budget // (L * (N if cfg.shared_units else 1)))
    tail, tail_start, tail_end = None, 0, 0
    for i in range(0, len(wins), batch_size):
        group = wins[i:i + batch_size]
        lo, hi = group[0][0], group[-1][0] + L
        # Extend the traces from where the previous group stopped; windows only move forward.
        new = compute_traces(X[tail_end:hi], cfg.trace_taus, None if tail is None else tail[-1])
        tr = new if tail is None else np.concatenate((tail[lo - tail_start:], new))
        tail, tail_start, tail_end = tr, lo, hi
        xb = torch.from_numpy(np.stack([X[s:s + L] for s, _ in group]).astype(np.float32))
        trb = torch.from_numpy(np.stack([tr[s - lo:s - lo + L] for s, _ in group]))
        # Positions an earlier window already gave are not read out again.
        first = min(keep - s for s, keep in group)
        logits = model(xb.to(device), trb.to(device), first).float().cpu().numpy()
        for j, (s, keep) in enumerate(group):
            out[keep:s + L] = logits[j, keep - s - first:]
    return out


def predict_next(model: SpikeTransformer, X: np.ndarray | BinnedSpikes,
                 batch_size: int | None = None, logits: bool = False) -> np.ndarray:
    """P (T, N) float32 with P[t] = p(X[t+1] = 1 | X[0..t]), from batched overlapping windows.

    Probabilities carry the checkpoint's calibration (a monotone map: AUCs are unaffected);
    `logits`: their logits instead (what spikeviz.generation.calibration maps on a target).
    """
    scale, shift = (float(v) for v in model.calibration)
    # In place, float32 throughout: a window's copies held a GB at once (bench_memory.py).
    z = logits_next(model, X, batch_size)
    z *= scale
    z += shift
    return z if logits else torch.sigmoid_(torch.from_numpy(z)).numpy()


DRAW_RULES: dict[str, dict] = {
    "bernoulli": {"label": "Bernoulli sampling (seeded)", "min": 0.0, "max": 1.0, "step": 0.01,
                  "default": None, "means": "ignored: each bin spikes with its probability p"},
    "pooled": {"label": "pooled threshold: p >= t, one t for all units", "min": 0.0, "max": 1.0,
               "step": 0.001, "default": 0.1, "means": "probability every unit must reach"},
    "unit-density": {"label": "per-unit density match", "min": 0.1, "max": 4.0, "step": 0.05,
                     "default": 1.0,
                     "means": "each unit's spike count / its expected count (its causal rate "
                              "when given, else the sum of its p): a per-unit threshold"},
    "lift": {"label": "lift: p / p-bar(unit) >= t", "min": 1.0, "max": 50.0, "step": 0.5,
             "default": 5.0, "means": "how many times its own causal rate a unit's p must reach"},
}


def _rule(rule: str | None, threshold: float | None) -> str:
    # Callers of the threshold-only API (threshold=t) meant the pooled rule.
    rule = rule or ("pooled" if threshold is not None else "bernoulli")
    if rule not in DRAW_RULES:
        raise SpikevizError(f"unknown draw rule {rule!r}: use one of {', '.join(DRAW_RULES)}")
    return rule


def unit_thresholds(P: np.ndarray, rule: str, threshold: float | None = None,
                    unit_rates: np.ndarray | None = None) -> np.ndarray:
    """Per-unit thresholds (N,) float32 of a threshold rule: a unit spikes where P >= its threshold.

    pooled: t for every unit; lift: t * p-bar (unit_rates, the units' causal rates per bin, else
    each column's mean of P); unit-density: the p above which the unit's count in P is t times its
    expected count (unit_rates * T, else the column sum of P).
    """
    rule = _rule(rule, threshold)
    if rule == "bernoulli":
        raise SpikevizError("Bernoulli sampling has no threshold")
    spec = DRAW_RULES[rule]
    t = float(spec["default"] if threshold is None else threshold)
    P = np.asarray(P)
    T, N = P.shape
    if unit_rates is not None:
        unit_rates = np.asarray(unit_rates, np.float64)
        if unit_rates.shape != (N,):
            raise SpikevizError(f"unit_rates must have one rate per unit ({N}), got shape "
                                f"{unit_rates.shape}")
    if rule == "pooled":
        return np.full(N, t, np.float32)
    if rule == "lift":
        pbar = P.mean(0, dtype=np.float64) if unit_rates is None else unit_rates
        return (t * pbar).astype(np.float32)
    expected = P.sum(0, dtype=np.float64) if unit_rates is None else unit_rates * T
    k = np.clip(np.round(t * expected).astype(np.int64), 0, T)
    out = np.full(N, np.inf, np.float32)          # k = 0: never spikes
    for j in np.flatnonzero(k):
        out[j] = np.partition(P[:, j], T - k[j])[T - k[j]]
    return out


def draw_spikes(P: np.ndarray, rule: str = "bernoulli", threshold: float | None = None, *,
                seed: int = 0, unit_rates: np.ndarray | None = None) -> np.ndarray:
    """Spikes uint8 (T, N) drawn from next-bin probabilities P (T, N) by a rule of DRAW_RULES.

    bernoulli (seeded; threshold ignored), or P >= a per-unit threshold (unit_thresholds): pooled,
    unit-density or lift. Scoring never depends on the rule: it reads P.
    """
    P = np.asarray(P)
    if P.ndim != 2:
        raise SpikevizError(f"probabilities must be a (bins, units) matrix, got shape {P.shape}")
    if _rule(rule, threshold) == "bernoulli":
        rng = np.random.default_rng(seed)
        return (rng.random(P.shape, dtype=np.float32) < P).astype(np.uint8)
    return (P >= unit_thresholds(P, rule, threshold, unit_rates)).astype(np.uint8)


@torch.inference_mode()
def generate(model: SpikeTransformer, X_real: np.ndarray | BinnedSpikes, mode: str = "teacher",
             threshold: float | None = None, seed: int = 0, n_bins: int | None = None, *,
             draw: str | None = None, calibration: TargetCalibration | None = None,
             unit_rates: np.ndarray | None = None, rate_control: bool = True,
             copula=None) -> np.ndarray:
    """Generated spikes, uint8 (n, N), drawn by `draw` (DRAW_RULES; default Bernoulli sampling,
    seeded, or the pooled rule when only a threshold is given).

    teacher: row t is bin t+1 drawn from p(X[t+1] | real X[0..t]) (n = n_bins or len(X_real)).
    free: X_real is the real past (a silent bin when empty); row t is the bin t after it, drawn
    from the model given that past and its own earlier draws, fed back through the KV cache.
    `calibration` (spikeviz.generation.calibration, fitted on the target before X_real ends) maps the logits
    first. Free-running Bernoulli draws with known target rates (unit_rates, else the
    calibration's) pass through a slow causal rate controller (`rate_control`): each unit's
    offset follows the log ratio of its target rate to its recent mean probability, so the
    model's own feedback cannot drift into runaway bursts or silence over minutes. Free runs
    use the calibration's closed-loop offsets and tempered slope when it has them
    (calibration.fit_free_running; generate_recording fits them): without them a generalist's
    own feedback runs away. A free run's Bernoulli draws take a bin's units jointly under
    `copula` (generation.copula), its draws fed back like any other.
    """
    X = _matrix(model, X_real)
    T, N = X.shape
    rule = _rule(draw, threshold)
    cal = calibration or identity(N)
    rates = cal.rates if unit_rates is None else np.asarray(unit_rates, np.float32)

    def probs(Xp: np.ndarray) -> np.ndarray:
        if calibration is None:
            return predict_next(model, Xp)
        return cal.probabilities(predict_next(model, Xp, logits=True))

    if mode == "teacher":
        n = T if n_bins is None else min(int(n_bins), T)
        return draw_spikes(probs(X[:n]), rule, threshold, seed=seed, unit_rates=rates)
    if mode != "free":
        raise SpikevizError(f"unknown generation mode {mode!r}: use 'teacher' or 'free'")
    n = T if n_bins is None else int(n_bins)
    thr = None
    if rule != "bernoulli":
        # Per-unit thresholds fixed before the run: a rule's reference is the real past.
        ref = probs(X) if len(X) and (rule == "unit-density" or rates is None) else \
            np.zeros((1, N), np.float32)
        thr = unit_thresholds(ref, rule, threshold, rates)
    if T == 0:
        X = np.zeros((1, N), dtype=np.uint8)
    cfg = model.config
    prompt = X[-cfg.context:]
    past = X[:len(X) - len(prompt)]
    # Platt scaling and the target calibration folded into one affine map of the raw logits
    # (the closed-loop fit's in the compiled decoder; other models run under the teacher-forced
    # map).
    gain, bias, closed_loop = free_affine(model, cal, closed_loop=fused.supported(model))
    controlled = rate_control and thr is None and rates is not None
    draw = fused.draw_settings(gain, bias, seed=seed, thresholds=thr,
                               rates=rates if controlled else None, copula=copula, **closed_loop)
    run = fused.run if fused.supported(model) else run_eager
    return run(model, final_traces(past, cfg.trace_taus), prompt, n, draw)[0]


@torch.inference_mode()
def run_eager(model: SpikeTransformer, traces: np.ndarray, prompt: np.ndarray, n: int,
              draw: fused.Draw) -> tuple[np.ndarray, np.ndarray | None]:
    """fused.run's free run, one model.step per bin in torch: the models the compiled decoder
    does not run, and its reference (tests/test_decoder.py). Bernoulli draws come from torch's
    generator: seeded, but not the compiled decoder's."""
    N = prompt.shape[1]
    with one_thread():
        state = model.start(N, torch.tensor(traces, dtype=torch.float32))
        model.eval()
        for row in torch.from_numpy(np.asarray(prompt, np.float32)):
            logits = model.step(row, state)
        if len(draw.anchor):     # held from the first free bin on, as in the compiled loop
            state.anchor = torch.from_numpy(draw.anchor)
        bias = torch.tensor(draw.bias)
        control = RateController(bias, draw.rates, draw.tau, draw.every, draw.ctrl_gain,
                                 draw.max_shift) if len(draw.rates) else None
        thr, forced = torch.from_numpy(draw.thresholds), torch.from_numpy(draw.forced)
        # Draws stay in torch: a numpy round trip per bin would cost as much as the model step.
        gen = torch.Generator().manual_seed(draw.seed)
        L = torch.from_numpy(draw.loadings)
        joint = L.shape[1] > 0 and not len(thr) and not len(forced)
        factors = torch.randn(L.shape[1], generator=gen, dtype=torch.float64)
        last = torch.full((N,), -(1 << 40), dtype=torch.int64)
        out = torch.empty((n, N), dtype=torch.uint8)
        probs = torch.empty((n if draw.record else 0, N))
        for t in range(n):
            p = torch.sigmoid(torch.add(bias, logits, alpha=draw.gain))
            if joint:   # kernels._draw's joint branch
                factors = draw.factor_a * factors + math.sqrt(1 - draw.factor_a ** 2) * torch.randn(
                    L.shape[1], generator=gen, dtype=torch.float64)
                latent = L.double() @ factors + torch.from_numpy(draw.unique).double() * torch.randn(
                    N, generator=gen, dtype=torch.float64)
                x = ((torch.special.ndtr(-latent) < p) & (t - last >= draw.dead_bins)).float()
                last = torch.where(x > 0, t, last)
            else:
                x = (forced[t] if len(forced) else (p >= thr).float() if len(thr)
                     else torch.bernoulli(p, generator=gen))
            out[t] = x
            if draw.record:
                probs[t] = p
            if control is not None:
                control.update(p)
            if t + 1 < n:
                logits = model.step(x, state)
    return out.numpy(), (probs.numpy() if draw.record else None)


def warmup_bins(model: SpikeTransformer) -> int:
    """Bins of real past that fill a model's context and settle its traces."""
    cfg = model.config
    return cfg.context + int(4 * max(cfg.trace_taus, default=0))


def scores_for_range(model: SpikeTransformer, X: np.ndarray, lo: int, hi: int,
                     warmup: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets for the bins X[lo:hi], each predicted from the real past before it.

    `warmup` bins before `lo` (default: a context plus four of the longest trace time constant)
    prime the traces and the context, as a model running continuously would have them.
    """
    if warmup is None:
        warmup = warmup_bins(model)
    first = max(lo, 1)
    start = max(0, first - 1 - warmup)
    P = predict_next(model, X[start:hi - 1])
    return P[first - 1 - start:], X[first:hi]


class ModelPredictor:
    """A trained model behind the Predictor protocol (spikeviz.models.baselines): fit is a no-op."""

    def __init__(self, model: SpikeTransformer | str | Path, name: str | None = None):
        self.model = load_model(model) if isinstance(model, (str, Path)) else model
        meta = self.model.meta
        self.name = name or (Path(meta["path"]).stem if "path" in meta
                             else f"transformer ({self.model.config.preset})")

    def fit(self, X_train: np.ndarray) -> "ModelPredictor":
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return predict_next(self.model, X)
