"""Prediction and generation with a trained model: batched next-bin probabilities, teacher-forced and free-running trains."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .binning import BinnedSpikes, bin_spikes
from .checkpoint import check_data, load_model
from .errors import SpikevizError
from .model import SpikeTransformer, compute_traces
from .predictor import split_bounds
from .recording import Recording

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
                 batch_size: int | None = None) -> np.ndarray:
    """P (T, N) float32 with P[t] = p(X[t+1] = 1 | X[0..t]), from batched overlapping windows.

    Probabilities carry the checkpoint's calibration (a monotone map: AUCs are unaffected).
    """
    logits = torch.from_numpy(logits_next(model, X, batch_size))
    return model.probabilities(logits).numpy()


def _draw(p: np.ndarray, threshold: float | None, rng: np.random.Generator) -> np.ndarray:
    if threshold is None:
        return (rng.random(p.shape, dtype=np.float32) < p).astype(np.uint8)
    return (p >= threshold).astype(np.uint8)


@torch.inference_mode()
def generate(model: SpikeTransformer, X_real: np.ndarray | BinnedSpikes, mode: str = "teacher",
             threshold: float | None = None, seed: int = 0, n_bins: int | None = None) -> np.ndarray:
    """Generated spikes, uint8 (n, N); a threshold, or Bernoulli sampling (seeded) when None.

    teacher: row t is bin t+1 drawn from p(X[t+1] | real X[0..t]) (n = n_bins or len(X_real)).
    free: X_real is the real past (a silent bin when empty); row t is the bin t after it, drawn
    from the model given that past and its own earlier draws, fed back through the KV cache.
    """
    X = _matrix(model, X_real)
    T, N = X.shape
    rng = np.random.default_rng(seed)
    if mode == "teacher":
        n = T if n_bins is None else min(int(n_bins), T)
        return _draw(predict_next(model, X[:n]), threshold, rng)
    if mode != "free":
        raise SpikevizError(f"unknown generation mode {mode!r}: use 'teacher' or 'free'")
    n = T if n_bins is None else int(n_bins)
    if T == 0:
        X = np.zeros((1, N), dtype=np.uint8)
    cfg = model.config
    prompt = X[-cfg.context:]
    past = X[:len(X) - len(prompt)]
    state = model.start(N, torch.from_numpy(compute_traces(past, cfg.trace_taus)[-1])
                        if len(past) and cfg.trace_taus else None)
    model.eval()
    for row in torch.from_numpy(prompt.astype(np.float32)):
        logits = model.step(row, state)
    # Draws stay in torch: a numpy round trip per bin would cost as much as the model step.
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty((n, N), dtype=torch.uint8)
    for t in range(n):
        p = model.probabilities(logits)
        x = torch.bernoulli(p, generator=gen) if threshold is None else (p >= threshold).float()
        out[t] = x
        if t + 1 < n:
            logits = model.step(x, state)
    return out.numpy()


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


# The stretch of training data a threshold preset is tuned on (1 min at 1 ms).
THRESHOLD_BINS = 60_000


def generate_recording(model: SpikeTransformer, recording: Recording, mode: str = "teacher",
                       seconds: float = 10.0, start_s: float = 0.0, threshold: float | None = None,
                       preset: str | None = None, seed: int = 0) -> Recording:
    """Generated trains over [start_s, start_s + seconds) of `recording`, as a Recording.

    teacher: each bin drawn from the real past; free: the model's own draws fed back after the
    real past before `start_s`. Draws use `threshold`, a threshold `preset` (youden, max-f1,
    density: tuned on the first minute of the recording's training half), or Bernoulli sampling
    (seeded). `source["generated_by"]` records the checkpoint, mode, threshold, seed and data.
    """
    where = recording.source.get("path")
    bin_ms = float(model.meta.get("bin_ms", 1.0))
    n_units = recording.n_units if model.config.shared_units else model.config.n_units
    check_data(model, min(recording.n_units, n_units), bin_ms, where)
    binned = bin_spikes(recording, bin_ms=bin_ms, n_units=n_units)
    X = binned.X
    lo = int(round(start_s * 1000.0 / bin_ms))
    n = int(round(seconds * 1000.0 / bin_ms))
    if lo >= len(X) or (mode == "teacher" and lo + n > len(X)):
        raise SpikevizError(f"[{start_s:g}, {start_s + seconds:g}) s is not inside the "
                            f"recording ({recording.duration_s:g} s)", where)
    if preset:
        from .metrics import threshold_preset

        a, b = split_bounds(len(X))["train"]
        P, Y = scores_for_range(model, X, a, min(b, a + THRESHOLD_BINS))
        threshold = float(threshold_preset(Y, P, preset))
    w = max(0, lo - warmup_bins(model))
    if mode == "teacher":
        # Row r of G is bin w + r + 1; keep the bins of [lo, lo + n) (bin 0 has no past).
        G = generate(model, X[w:lo + n - 1], "teacher", threshold=threshold, seed=seed)
        first = max(lo, 1)
        bins = np.zeros((n, X.shape[1]), dtype=np.uint8)
        bins[first - lo:] = G[first - w - 1:]
    else:
        bins = generate(model, X[w:lo], mode, threshold=threshold, seed=seed, n_bins=n)
    trains = tuple(np.flatnonzero(bins[:, j]) * (bin_ms / 1000.0) for j in range(bins.shape[1]))
    generated_by = {"checkpoint": str(model.meta.get("path", "")), "mode": mode,
                    "threshold": threshold, "preset": preset,
                    "draw": "threshold" if threshold is not None else "bernoulli", "seed": seed,
                    "data": recording.name, "data_path": where, "start_s": start_s,
                    "bin_ms": bin_ms, "spikeviz_version": __version__}
    return Recording(f"{recording.name}-{mode}", binned.unit_ids, trains, n * bin_ms / 1000.0,
                     {"format": "generated", "generated_by": generated_by})


class ModelPredictor:
    """A trained model behind the Predictor protocol (spikeviz.predictor): fit is a no-op."""

    def __init__(self, model: SpikeTransformer | str | Path, name: str | None = None):
        self.model = load_model(model) if isinstance(model, (str, Path)) else model
        meta = self.model.meta
        self.name = name or (Path(meta["path"]).stem if "path" in meta
                             else f"transformer ({self.model.config.preset})")

    def fit(self, X_train: np.ndarray) -> "ModelPredictor":
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return predict_next(self.model, X)
