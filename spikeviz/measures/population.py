"""Population statistics of binary spike matrices and the distances of a generated one to a real one.

What a neuroscientist checks beyond per-unit rates and ISIs (Spike-GAN's comparisons): pairwise
spike-count correlations, the distribution of the population rate with its tails, synchrony, the
autocorrelation of the population rate (how long bursts last) and the distribution of the number
of units spiking in a bin. The fidelity report (spikeviz.measures.stats) puts each distance of a model
beside the same distance for a rate-matched Poisson floor and a real-vs-real ceiling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SpikevizError

RATE_MS = 10.0                        # population-rate bins (distribution, tails, autocorrelation)
CORR_MS = 20.0                        # count-correlation windows (stats reports 10 ms)
QUANTILES = (0.95, 0.99, 0.999)       # tails of the population-rate distribution
SYNC_MS = (1.0, 10.0)                 # synchrony windows
SYNC_FRACTIONS = (0.02, 0.05, 0.10)   # synchrony: windows with at least this fraction of units active
ACF_MAX_MS = 500.0                    # bursts last tens to hundreds of ms


def _bins_of(ms: float, bin_ms: float) -> int:
    return max(1, int(round(ms / bin_ms)))


def check_matrix(X: np.ndarray) -> np.ndarray:
    """X as a C-contiguous uint8 (T >= 2, N >= 1) matrix, or a SpikevizError saying what it is."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise SpikevizError(f"population statistics need a (T >= 2, N >= 1) matrix, got shape {X.shape}")
    return np.ascontiguousarray(X, np.uint8)


def window_sums(X: np.ndarray, w: int) -> np.ndarray:
    """Counts (T // w, N) in consecutive windows of w bins (a partial last window is dropped)."""
    n = len(X) // w
    return X[:n * w].reshape(n, w, X.shape[1]).sum(1, dtype=np.int32)


def count_correlations(C: np.ndarray) -> np.ndarray:
    """(N, N) Pearson correlations of the columns of a count matrix (NaN for constant columns)."""
    # float32 halves the cost of the (N x T) @ (T x N) product; counts are small integers.
    C = C.astype(np.float32)
    C -= C.mean(0, dtype=np.float64).astype(np.float32)
    G = (C.T @ C).astype(np.float64)
    sd = np.sqrt(np.diag(G))
    with np.errstate(invalid="ignore", divide="ignore"):
        return G / np.outer(sd, sd)


def similarity(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of the off-diagonal entries of two correlation matrices (pairs with a
    NaN skipped; None with fewer than 3 pairs or no spread)."""
    iu = np.triu_indices(len(a), 1)
    x, y = a[iu], b[iu]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or x[ok].std() == 0 or y[ok].std() == 0:
        return None
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def mean_offdiagonal(C: np.ndarray) -> float | None:
    """Mean pairwise correlation (NaN pairs skipped): similarity ignores the level, this does not."""
    off = C[np.triu_indices(len(C), 1)]
    return float(np.nanmean(off)) if np.isfinite(off).any() else None


def sync_threshold(n_units: int, fraction: float) -> int:
    """Units that make a window synchronous: a `fraction` of them, and never fewer than 2."""
    if not 0 < fraction <= 1:
        raise SpikevizError(f"a synchrony fraction must be in (0, 1], got {fraction}")
    return max(2, math.ceil(fraction * n_units - 1e-9))


def synchrony(active: np.ndarray, n_units: int, fractions=SYNC_FRACTIONS) -> list[float]:
    """Fraction of windows in which at least sync_threshold(n_units, f) units are active, per f."""
    if len(active) == 0:
        raise SpikevizError("synchrony needs at least one window")
    return [float((active >= sync_threshold(n_units, f)).mean()) for f in fractions]


def autocorrelation(series: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation of a time series at lags 0..max_lag (fewer when it is shorter; biased
    estimator, as correlograms are); all NaN for a constant series."""
    x = np.asarray(series, np.float64)
    if x.ndim != 1 or len(x) < 2 or max_lag < 1:
        raise SpikevizError(f"an autocorrelation needs a series of >= 2 points and a lag >= 1, "
                            f"got shape {x.shape} and lag {max_lag}")
    x = x - x.mean()
    lags = min(max_lag, len(x) - 1)
    f = np.fft.rfft(x, 2 * len(x))          # zero-padded: linear, not circular, correlation
    acov = np.fft.irfft(f * np.conj(f), 2 * len(x))[:lags + 1]
    if acov[0] <= 1e-12 * len(x):
        return np.full(lags + 1, np.nan)
    return acov / acov[0]


def correlation_time(acf: np.ndarray, step_ms: float, max_lag: int) -> float | None:
    """Sum of the autocorrelation over lags 1..max_lag times the lag step (ms): about 0 for
    independent spikes, growing with both the strength and the length of bursts. A population
    rate's holds units' own bursts as well as co-firing (in the bundled in vitro minute, units
    shifted apart in time keep 59 of its 81 ms; in vivo 18 of 78). None when the series was too
    short for max_lag or constant."""
    if len(acf) < max_lag + 1 or not np.isfinite(acf).all():
        return None
    return float(acf[1:max_lag + 1].sum() * step_ms)


def _cdf_gaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled values in order and |F_a - F_b| at each: the empirical distributions' gaps.
    (Here, not scipy.stats: importing it was 0.9 s of a fresh server's first page.)"""
    grid = np.sort(np.concatenate([a, b]))
    return grid, np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                        - np.searchsorted(np.sort(b), grid, "right") / len(b))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    return float(_cdf_gaps(a, b)[1].max())


def wasserstein_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The first Wasserstein distance of two samples: the area between their empirical CDFs."""
    grid, gaps = _cdf_gaps(a, b)
    return float((gaps[:-1] * np.diff(grid)).sum())


@dataclass(frozen=True, eq=False)
class PopulationStats:
    """Population statistics of one (T, N) binary matrix.

    rate_hz: population rate per unit in consecutive `rate_ms` windows; count_pdf: fraction of
    bins with k = 0..N units spiking; synchrony: per window of SYNC_MS and fraction of
    SYNC_FRACTIONS, the fraction of windows with at least that fraction of units active;
    acf: autocorrelation of rate_hz at lags 0, rate_ms, ... up to ACF_MAX_MS; corr: (N, N)
    spike-count correlations in `corr_ms` windows.
    """

    bin_ms: float
    n_units: int
    rate_ms: float
    rate_hz: np.ndarray
    count_pdf: np.ndarray
    synchrony: dict[str, float]
    acf: np.ndarray
    corr_ms: float
    corr: np.ndarray


def sync_key(ms: float, fraction: float) -> str:
    return f"sync_{ms:g}ms_{100 * fraction:g}pct"


def quantile_key(q: float) -> str:
    return f"pop_rate_q{100 * q:g}_hz"


def rate_distribution(rate_hz: np.ndarray, rate_ms: float, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """The distribution of a population rate (Hz per unit in `rate_ms` windows of `n_units`):
    each possible rate, from 0 to the largest, and the fraction of windows at it (counts of spikes
    are whole numbers: no histogram bins to choose)."""
    per_spike = 1000.0 / (rate_ms * n_units)
    counts = np.rint(np.asarray(rate_hz) / per_spike).astype(np.int64)
    if len(counts) == 0 or counts.min() < 0:
        raise SpikevizError("a population-rate distribution needs at least one non-negative rate")
    return np.arange(counts.max() + 1) * per_spike, np.bincount(counts) / len(counts)


def population_stats(X: np.ndarray, bin_ms: float = 1.0) -> PopulationStats:
    """Population statistics of a binary (T, N) matrix binned at bin_ms (each window is a whole
    number of bins: "1 ms" is one bin when bins are longer)."""
    X = check_matrix(X)
    if not (math.isfinite(bin_ms) and bin_ms > 0):
        raise SpikevizError(f"bin_ms must be positive, got {bin_ms}")
    T, N = X.shape
    w_rate = _bins_of(RATE_MS, bin_ms)
    if T < 2 * w_rate:
        raise SpikevizError(f"population statistics need at least {2 * w_rate} bins "
                            f"({2 * RATE_MS:g} ms), got {T}")
    rate_ms = w_rate * bin_ms
    per_bin = X.sum(1, dtype=np.int32)
    C_rate = window_sums(X, w_rate)
    rate_hz = C_rate.sum(1) * (1000.0 / (rate_ms * N))
    sync = {}
    for ms in SYNC_MS:
        w = _bins_of(ms, bin_ms)
        # Binary bins: spikes are active units; wider windows count units with any spike.
        active = per_bin if w == 1 else ((C_rate if w == w_rate else window_sums(X, w)) > 0).sum(1)
        sync |= {sync_key(ms, f): v for f, v in zip(SYNC_FRACTIONS, synchrony(active, N))}
    w_corr = _bins_of(CORR_MS, bin_ms)
    # 20-ms counts from the 10-ms ones: one pass over X fewer.
    corr = count_correlations(window_sums(C_rate, w_corr // w_rate) if w_corr % w_rate == 0
                              else window_sums(X, w_corr))
    return PopulationStats(float(bin_ms), N, rate_ms, rate_hz,
                           np.bincount(per_bin, minlength=N + 1) / T, sync,
                           autocorrelation(rate_hz, _bins_of(ACF_MAX_MS, rate_ms)),
                           w_corr * bin_ms, corr)


def population_distances(real: PopulationStats, candidate: PopulationStats) -> dict:
    """A candidate's population statistics and their distances to the real ones (0 / 1 for the
    real matrix itself); None where a stretch is too short or silent to tell.

    corr_similarity_20ms: Pearson r of the off-diagonal 20-ms count correlations (the same units in
    the same order); mean_corr_20ms: their mean level; pop_rate_ks_10ms: KS distance of the 10-ms
    population-rate distributions, pop_rate_w1_10ms: their Wasserstein distance over the real mean
    rate (both hold the rate level as well as the shape: a stretch at another mean rate is far
    even with the real bursts; count_ratio tells which), pop_rate_q*_hz: the candidate's upper
    quantiles (the tails KS barely sees); sync_*: its synchrony; pop_acf_time_ms: its
    population-rate correlation time, pop_acf_mad: mean absolute difference of the
    autocorrelations at lags 10..500 ms; count_tv_1ms: total-variation distance of the
    distributions of units spiking per bin.
    """
    if real.n_units != candidate.n_units or real.bin_ms != candidate.bin_ms:
        raise SpikevizError(f"population distances need the same units and bins, got "
                            f"{real.n_units} and {candidate.n_units} units at {real.bin_ms:g} and "
                            f"{candidate.bin_ms:g} ms")
    r, c = real.rate_hz, candidate.rate_hz
    lags = min(len(real.acf), len(candidate.acf))
    d_acf = np.abs(real.acf[1:lags] - candidate.acf[1:lags])
    return {
        "corr_similarity_20ms": similarity(real.corr, candidate.corr),
        "mean_corr_20ms": mean_offdiagonal(candidate.corr),
        "pop_rate_ks_10ms": ks_distance(r, c),
        "pop_rate_w1_10ms": wasserstein_distance(r, c) / float(r.mean()) if r.mean() > 0 else None,
        **{quantile_key(q): float(v) for q, v in zip(QUANTILES, np.quantile(c, QUANTILES))},
        **candidate.synchrony,
        "pop_acf_time_ms": correlation_time(candidate.acf, candidate.rate_ms,
                                            _bins_of(ACF_MAX_MS, candidate.rate_ms)),
        "pop_acf_mad": float(d_acf.mean()) if np.isfinite(d_acf).any() and len(d_acf) else None,
        "count_tv_1ms": float(0.5 * np.abs(real.count_pdf - candidate.count_pdf).sum()),
    }
