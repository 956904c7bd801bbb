"""Firing statistics of binary spike matrices and distances between real and generated ones."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpikevizError
from .population import count_correlations as _corr, ks_distance, population_distances, population_stats
from .population import similarity as _similarity

BLOCK_S = 10.0   # blocks of the rate-drift report
ISI_EDGES_MS = np.geomspace(1.0, 10_000.0, 41)   # log-spaced; longer ISIs fall in the last bin


@dataclass(frozen=True, eq=False)
class FiringStats:
    """Firing statistics of one (T, N) binary matrix; arrays are per unit unless said otherwise.

    isi_hist: (N, bins) ISI counts over `isi_edges_ms`; cv: ISI coefficient of variation (NaN
    with fewer than 3 spikes); fano: variance / mean of spike counts in `fano_ms` windows (NaN for
    silent units); pop_rate_hz: mean rate per unit in consecutive `pop_ms` windows (time series);
    pop_count_hist: how many bins have k = 0..N units spiking; synchrony: fraction of bins with
    >= 2 units spiking, and synchrony_independent: the same expected from the rates alone; corr:
    (N, N) Pearson correlations of spike counts in `corr_ms` windows (NaN for silent units).
    """

    bin_ms: float
    n_bins: int
    rates_hz: np.ndarray
    isi_edges_ms: np.ndarray
    isi_hist: np.ndarray
    cv: np.ndarray
    fano_ms: float
    fano: np.ndarray
    pop_ms: float
    pop_rate_hz: np.ndarray
    pop_count_hist: np.ndarray
    synchrony: float
    synchrony_independent: float
    corr_ms: float
    corr: np.ndarray

    @property
    def n_units(self) -> int:
        return len(self.rates_hz)

    @property
    def duration_s(self) -> float:
        return self.n_bins * self.bin_ms / 1000.0

    @property
    def isi_pdf(self) -> np.ndarray:
        """Pooled ISI distribution: fraction of all ISIs in each bin."""
        h = self.isi_hist.sum(0)
        return h / max(h.sum(), 1)

    def summary(self) -> dict:
        off = self.corr[~np.eye(self.n_units, dtype=bool)]
        return {"n_units": self.n_units, "duration_s": self.duration_s,
                "mean_rate_hz": float(self.rates_hz.mean()),
                "median_rate_hz": float(np.median(self.rates_hz)),
                "median_cv": _nanmedian(self.cv), "median_fano": _nanmedian(self.fano),
                "synchrony": self.synchrony, "synchrony_independent": self.synchrony_independent,
                "mean_corr": float(np.nanmean(off)) if np.isfinite(off).any() else None}


def _nanmedian(a: np.ndarray) -> float | None:
    return float(np.nanmedian(a)) if np.isfinite(a).any() else None


def _bins_of(ms: float, bin_ms: float) -> int:
    return max(1, int(round(ms / bin_ms)))


def window_counts(X: np.ndarray, w: int) -> np.ndarray:
    """Spike counts (T // w, N) in consecutive windows of w bins (a partial last window is dropped)."""
    n = len(X) // w
    return X[:n * w].reshape(n, w, X.shape[1]).sum(1, dtype=np.int32)


def spike_indices(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin and unit of every spike of a C-contiguous uint8 X, in time order."""
    flat = X.reshape(-1)
    n8 = flat.size - flat.size % 8
    # Spikes are sparse: find the non-zero 8-byte words first, then the bytes inside them.
    words = np.flatnonzero(flat[:n8].view(np.uint64))
    cand = (words[:, None] * 8 + np.arange(8)).ravel()
    idx = np.concatenate([cand[flat[cand] != 0], n8 + np.flatnonzero(flat[n8:])])
    return np.divmod(idx, X.shape[1])


def _isis(X: np.ndarray, edges_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit ISI histograms (N, bins) and CVs from the spike bins of X."""
    t, u = spike_indices(X)
    order = np.argsort(u, kind="stable")          # by unit, still in time order within a unit
    t, u = t[order], u[order]
    same = u[1:] == u[:-1]
    isi, unit = np.diff(t)[same].astype(np.float64), u[1:][same]
    N, B = X.shape[1], len(edges_bins) - 1
    b = np.clip(np.searchsorted(edges_bins, isi, side="right") - 1, 0, B - 1)
    hist = np.bincount(unit * B + b, minlength=N * B).reshape(N, B)
    n = np.bincount(unit, minlength=N).astype(np.float64)
    s1 = np.bincount(unit, isi, minlength=N)
    s2 = np.bincount(unit, isi * isi, minlength=N)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = s2 / n - mean * mean
        cv = np.where(n >= 2, np.sqrt(np.maximum(var, 0)) / mean, np.nan)
    return hist, cv


def firing_stats(X: np.ndarray, bin_ms: float = 1.0, fano_ms: float = 100.0, corr_ms: float = 10.0,
                 pop_ms: float = 10.0, isi_edges_ms: np.ndarray = ISI_EDGES_MS) -> FiringStats:
    """Firing statistics of a binary (T, N) matrix binned at bin_ms (one pass per statistic).

    An hour at 1 ms with 128 units takes a few seconds; pass a window of X for a quicker look.
    """
    X = np.ascontiguousarray(X)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise SpikevizError(f"firing statistics need a (T >= 2, N >= 1) matrix, got shape {X.shape}")
    if X.dtype != np.uint8:
        X = X.astype(np.uint8)
    T, N = X.shape
    counts = X.sum(0, dtype=np.int64)
    p = counts / T
    rates = p * (1000.0 / bin_ms)
    isi_hist, cv = _isis(X, np.asarray(isi_edges_ms) / bin_ms)

    F = window_counts(X, _bins_of(fano_ms, bin_ms)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fano = np.where(F.mean(0) > 0, F.var(0) / F.mean(0), np.nan) if len(F) >= 2 \
            else np.full(N, np.nan)

    pop = X.sum(1, dtype=np.int32)
    pop_count_hist = np.bincount(pop, minlength=N + 1)
    pw = _bins_of(pop_ms, bin_ms)
    pop_rate = window_counts(pop[:, None], pw)[:, 0] * (1000.0 / (pw * bin_ms * N))
    # Under independence: P(>= 2 of N) = 1 - P(none) - P(exactly one).
    q = np.clip(1 - p, 1e-12, 1)
    none = np.prod(q)
    synchrony_independent = float(1 - none - none * np.sum(p / q))

    corr = _corr(window_counts(X, _bins_of(corr_ms, bin_ms)))
    return FiringStats(float(bin_ms), T, rates, np.asarray(isi_edges_ms, np.float64), isi_hist, cv,
                       float(fano_ms), fano, float(pop_ms), pop_rate, pop_count_hist,
                       float((pop >= 2).mean()), synchrony_independent, float(corr_ms), corr)


def _ks(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return ks_distance(a, b) if len(a) and len(b) else None


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank (scipy.stats.rankdata's default)."""
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson's r of the ranks); None where either is constant.
    (Not scipy.stats: importing it was 0.9 s of a fresh server's first page.)"""
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


def compare_stats(real: FiringStats, generated: FiringStats) -> dict:
    """Distances between the statistics of a real and a generated matrix (0 means identical).

    KS statistics compare distributions over units; rate_corr and corr_mad need the same units in
    the same order (NaN pairs are skipped); isi_tv is the total-variation distance of the pooled
    ISI distributions.
    """
    same_units = real.n_units == generated.n_units
    out = {
        "rate_ks": _ks(real.rates_hz, generated.rates_hz),
        "mean_rate_ratio": float(generated.rates_hz.mean() / real.rates_hz.mean())
        if real.rates_hz.mean() > 0 else None,
        "cv_ks": _ks(real.cv, generated.cv),
        "fano_ks": _ks(real.fano, generated.fano),
        "isi_tv": float(0.5 * np.abs(real.isi_pdf - generated.isi_pdf).sum())
        if np.array_equal(real.isi_edges_ms, generated.isi_edges_ms) else None,
        "synchrony_real": real.synchrony, "synchrony_generated": generated.synchrony,
        "pop_rate_sd_ratio": float(generated.pop_rate_hz.std() / real.pop_rate_hz.std())
        if real.pop_rate_hz.std() > 0 else None,
        "rate_corr": None, "corr_mad": None,
    }
    if same_units:
        r, g = real.rates_hz, generated.rates_hz
        if r.std() > 0 and g.std() > 0:
            out["rate_corr"] = float(np.corrcoef(r, g)[0, 1])
        iu = np.triu_indices(real.n_units, 1)
        d = np.abs(real.corr[iu] - generated.corr[iu])
        out["corr_mad"] = float(np.nanmean(d)) if np.isfinite(d).any() else None
    return out


def isi_values(X: np.ndarray) -> np.ndarray:
    """Every unit's inter-spike intervals (bins) of a binary (T, N) matrix, pooled."""
    t, u = spike_indices(X)
    order = np.argsort(u, kind="stable")
    t, u = t[order], u[order]
    return np.diff(t)[u[1:] == u[:-1]]


def block_rates(X: np.ndarray, bin_ms: float, block_bins: int) -> list[float]:
    """Mean rate per unit (Hz) in consecutive blocks of `block_bins` bins (the last may be short)."""
    return [float(X[i:i + block_bins].mean() * 1000.0 / bin_ms) for i in range(0, len(X), block_bins)]


def fidelity_entry(real: np.ndarray, rs: FiringStats, X: np.ndarray, bin_ms: float = 1.0,
                   block_s: float = BLOCK_S) -> dict:
    """One candidate X's statistics and its distances to the real stretch (`rs`: its
    firing_stats), as in fidelity_report."""
    block_bins = _bins_of(block_s * 1000.0, bin_ms)
    s = firing_stats(X, bin_ms)
    counts, real_counts = X.sum(0, dtype=np.int64), real.sum(0, dtype=np.int64)
    active = real_counts > 0
    a, b = isi_values(real), isi_values(X)
    n = min(len(real), len(X))
    blocks = [float(X[i:i + block_bins].sum() / real[i:i + block_bins].sum())
              if real[i:i + block_bins].any() else None for i in range(0, n, block_bins)]
    summary = s.summary()
    return {
        "spikes": int(counts.sum()),
        "count_ratio": float(counts.sum() / real_counts.sum()) if real_counts.any() else None,
        "rate_spearman": spearman(counts, real_counts),
        "active_fraction": float((counts[active] > 0).mean()) if active.any() else None,
        "isi_ks": _ks(a, b),
        "median_cv": summary["median_cv"], "median_fano_100ms": summary["median_fano"],
        "corr_similarity_10ms": _similarity(rs.corr, s.corr),
        "synchrony": s.synchrony,
        "count_ratio_per_block": blocks,
        "rate_hz_per_block": block_rates(X, bin_ms, block_bins),
    } | population_distances(population_stats(real, bin_ms), population_stats(X, bin_ms))


def fidelity_report(real: np.ndarray, generated: np.ndarray, reference: np.ndarray | None = None,
                    *, bin_ms: float = 1.0, seed: int = 0, block_s: float = BLOCK_S) -> dict:
    """Generated against real spikes of the same stretch, beside a ceiling and a floor.

    real, generated: (T, N) binary matrices, same units in the same order. `reference`: another
    real stretch of the same recording (the ceiling: real against real); the floor: Poisson
    (Bernoulli) trains at each unit's real rate, seeded. Each entry gives spikes, the count
    ratio to real (also per `block_s` block, and the mean rate per unit in each block of the
    whole candidate: rate drift over a long free run), per-unit rate Spearman, the fraction of
    real active units that fire, the KS distance of the pooled ISI distributions, median ISI CV,
    median Fano factor (100-ms counts), the similarity (Pearson r) of the pairwise count
    correlations at 10 ms to the real ones, synchrony (fraction of bins with >= 2 spikes), and
    the population statistics of spikeviz.measures.population.population_distances (20-ms correlations,
    the 10-ms population-rate distribution and its tails, synchrony at 2/5/10 % of units, the
    population rate's autocorrelation, the distribution of units spiking per bin).
    """
    real, generated = np.ascontiguousarray(real, np.uint8), np.ascontiguousarray(generated, np.uint8)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise SpikevizError(f"fidelity needs real and generated (T, N) matrices of the same units, "
                            f"got shapes {real.shape} and {generated.shape}")
    out = fidelity_references(real, reference, bin_ms=bin_ms, seed=seed, block_s=block_s)
    out["model"] = fidelity_entry(real, firing_stats(real, bin_ms), generated, bin_ms, block_s)
    return {"bins": len(real), "units": real.shape[1], "bin_ms": bin_ms} | out


def fidelity_references(real: np.ndarray, reference: np.ndarray | None = None, *,
                        bin_ms: float = 1.0, seed: int = 0, block_s: float = BLOCK_S) -> dict:
    """The entries of fidelity_report that need no model: real against itself, the ceiling
    (`reference`, another real stretch, or None) and the rate-matched Poisson floor (seeded)."""
    real = np.ascontiguousarray(real, np.uint8)
    rs = firing_stats(real, bin_ms)
    rng = np.random.default_rng(seed)
    floor = (rng.random(real.shape, dtype=np.float32) < real.mean(0)).astype(np.uint8)
    return {"real": fidelity_entry(real, rs, real, bin_ms, block_s),
            "floor": fidelity_entry(real, rs, floor, bin_ms, block_s),
            "ceiling": None if reference is None else fidelity_entry(
                real, rs, np.ascontiguousarray(reference, np.uint8), bin_ms, block_s)}
