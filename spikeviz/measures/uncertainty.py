"""Uncertainty of paired predictor comparisons: a bootstrap over contiguous time blocks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpikevizError
from .likelihood import LogLikelihood
from .metrics import aucs, n_levels, score_levels

METRICS = ("pr_auc", "roc_auc", "bits_per_spike")
BLOCK_BINS = 10_000     # 10 s of 1-ms bins: longer than the slow rate changes within a recording
MIN_BLOCK_BINS = 1_000  # 1 s: still longer than a network burst and its after-silence
MIN_BLOCKS = 10         # fewer blocks give a percentile interval that is mostly resampling noise
N_BOOT = 200
_BATCH = 16             # bootstrap samples scored at once: bounds the (batch, levels) temporaries


@dataclass(frozen=True, eq=False)
class BlockScores:
    """One predictor's scores on a stretch cut into contiguous time blocks.

    Per block: positives and negatives at each score level (the pooled ScoreHistogram's levels,
    only those occupied anywhere), the log-likelihood and the spike count. Counts are additive
    over blocks, so a bootstrap sample's histogram is a weighted sum of block rows: nothing is
    re-sorted. Memory: blocks x occupied levels x 8 bytes (200 s in 10-s blocks: a few MB).
    """

    levels: np.ndarray      # (L,) occupied levels, increasing
    pos: np.ndarray         # (B, L) int32
    neg: np.ndarray         # (B, L) int32
    loglik: np.ndarray      # (B,) nats
    spikes: np.ndarray      # (B,) int64
    cells: np.ndarray       # (B,) int64

    @classmethod
    def from_scores(cls, Y: np.ndarray, P: np.ndarray, block_bins: int | None = None) -> "BlockScores":
        """From labels Y and probabilities P, (T, N) with rows in time order (the scored pairs),
        cut into round(T / block_bins) blocks of nearly equal length (at least one); by default
        `block_length(T)` bins each."""
        Y, P = np.asarray(Y), np.asarray(P)
        if block_bins is None:
            block_bins = block_length(len(Y))
        if Y.shape != P.shape or Y.ndim != 2 or not len(Y):
            raise SpikevizError(f"block scores need (T, N) labels and scores of one shape, got "
                                f"{Y.shape} and {P.shape}")
        if block_bins < 1:
            raise SpikevizError(f"blocks must be at least 1 bin long, got {block_bins}")
        n_blocks = max(1, int(round(len(Y) / block_bins)))
        bounds = np.linspace(0, len(Y), n_blocks + 1).round().astype(int)
        # Two passes: the levels occupied anywhere, then each block's counts on those levels only.
        occupied = np.zeros(n_levels(), bool)
        for a, b in zip(bounds[:-1], bounds[1:]):
            occupied[score_levels(P[a:b])] = True
        levels = np.flatnonzero(occupied)
        column = np.cumsum(occupied) - 1
        counts = np.zeros((n_blocks, len(levels), 2), np.int32)
        loglik, spikes = np.zeros(n_blocks), np.zeros(n_blocks, np.int64)
        for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            ll = LogLikelihood().add(Y[a:b], P[a:b])      # also checks labels and probabilities
            key = 2 * column[score_levels(P[a:b])].ravel() + (Y[a:b].ravel() != 0)
            counts[j] = np.bincount(key, minlength=2 * len(levels)).reshape(-1, 2)
            loglik[j], spikes[j] = ll.total, ll.n_spikes
        return cls(levels, np.ascontiguousarray(counts[..., 1]), np.ascontiguousarray(counts[..., 0]),
                   loglik, spikes,
                   np.diff(bounds).astype(np.int64) * Y.shape[1])

    @property
    def n_blocks(self) -> int:
        return len(self.pos)

    def values(self, metric: str, weights: np.ndarray) -> np.ndarray:
        """`metric` of each resampled stretch, one per row of block weights (k, B).

        bits_per_spike here is the log-likelihood per spike in bits, with no reference: a paired
        difference of it is the difference of bits per spike against any common reference.
        """
        W = np.atleast_2d(np.asarray(weights, np.float64))
        if metric == "bits_per_spike":
            return (W @ self.loglik) / np.maximum(W @ self.spikes, 1) / np.log(2)
        if metric not in ("pr_auc", "roc_auc"):
            raise SpikevizError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
        out = np.empty(len(W))
        pos, neg = self.pos.astype(np.float64), self.neg.astype(np.float64)   # for BLAS
        for s in range(0, len(W), _BATCH):
            roc, ap = aucs(W[s:s + _BATCH] @ pos, W[s:s + _BATCH] @ neg)
            out[s:s + _BATCH] = roc if metric == "roc_auc" else ap
        return out


def block_length(n_bins: int) -> int:
    """Bins per bootstrap block for a stretch of `n_bins`: BLOCK_BINS where that gives MIN_BLOCKS
    blocks, shorter on shorter stretches (so 15 s still gives 15 blocks of 1 s, not one block),
    never under MIN_BLOCK_BINS."""
    return int(min(BLOCK_BINS, max(MIN_BLOCK_BINS, n_bins // MIN_BLOCKS)))


def paired_difference(a: BlockScores, b: BlockScores, metric: str, n_boot: int = N_BOOT,
                      seed: int = 0) -> dict:
    """metric(a) - metric(b) on the whole stretch, and its 95 % percentile interval from `n_boot`
    resamples of whole blocks with replacement, the same blocks for both predictors.

    Returns {metric, diff, ci95: [lo, hi], n_blocks, n_boot}. With fewer than MIN_BLOCKS blocks
    there is no interval: ci95 is None and `no_interval` says why (a bootstrap over one block
    has width 0, which would read as certainty).
    """
    if a.n_blocks != b.n_blocks or not (np.array_equal(a.spikes, b.spikes)
                                        and np.array_equal(a.cells, b.cells)):
        raise SpikevizError("a paired comparison needs both predictors scored on the same labels "
                            "and blocks")
    B = a.n_blocks
    ones = np.ones((1, B))
    diff = float(a.values(metric, ones)[0] - b.values(metric, ones)[0])
    if B < MIN_BLOCKS:
        return {"metric": metric, "diff": diff, "ci95": None, "n_blocks": B, "n_boot": 0,
                "no_interval": f"the stretch gives {B} block(s) of at least {MIN_BLOCK_BINS} bins; "
                               f"an interval needs {MIN_BLOCKS} (score a longer stretch)"}
    rng = np.random.default_rng(seed)
    W = np.zeros((n_boot, B))
    np.add.at(W, (np.arange(n_boot)[:, None], rng.integers(0, B, (n_boot, B))), 1.0)
    boot = a.values(metric, W) - b.values(metric, W)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"metric": metric, "diff": diff, "ci95": [float(lo), float(hi)], "n_blocks": B,
            "n_boot": n_boot}


def paired_block_bootstrap(Y: np.ndarray, P_a: np.ndarray, P_b: np.ndarray, metric: str,
                           block_bins: int | None = None, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Paired difference P_a - P_b of `metric` on labels Y, (T, N) each, with a block-bootstrap
    95 % interval (see paired_difference)."""
    return paired_difference(BlockScores.from_scores(Y, P_a, block_bins),
                             BlockScores.from_scores(Y, P_b, block_bins), metric, n_boot, seed)


def guarded_choice(scores: dict[float, BlockScores], seed: int = 0) -> tuple[float, dict]:
    """The option (a number; 0 is the unchanged model, which `scores` must hold) with the best
    log-likelihood, kept only if its bits/spike gain over 0 has a 95 % block-bootstrap interval
    above 0, else 0; with the evidence. The guard of every model that adapts a part of itself
    to held-out or warm-up bins (the stack's residual share, the population states' chain)."""
    best = max(scores, key=lambda a: scores[a].loglik.sum())
    gain = paired_difference(scores[best], scores[0.0], "bits_per_spike", seed=seed)
    keep = best > 0 and gain["ci95"] is not None and gain["ci95"][0] > 0
    return (best if keep else 0.0), {"best": best, "bits_per_spike_gain": gain["diff"],
                                     "ci95": gain["ci95"], "kept": keep}
