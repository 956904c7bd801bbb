"""How well predicted probabilities fit: Bernoulli log-likelihoods streamed per unit, bits per spike (NLB's co-bps), reliability curves."""
from __future__ import annotations

import numpy as np

from ..errors import SpikevizError
from .metrics import _CHUNK, ScoreHistogram, _check, level_values

LL_CLIP = 1e-6       # log-likelihoods clip probabilities to [LL_CLIP, 1 - LL_CLIP], as NLB does


class LogLikelihood:
    """Bernoulli log-likelihood (nats) of 0/1 labels under probabilities, per unit, streamed.

    `add(Y, P)` takes (T, N) chunks (or 1-D, one unit) in time order or any order: the totals are
    sums. Probabilities are clipped to [LL_CLIP, 1 - LL_CLIP] so a confident miss costs at most
    ln(1e6) = 13.8 nats.
    """

    def __init__(self):
        self.per_unit: np.ndarray | None = None     # (N,) float64 nats
        self.spikes: np.ndarray | None = None       # (N,) int64
        self.n = 0

    def add(self, Y: np.ndarray, P: np.ndarray) -> "LogLikelihood":
        Y, P = np.asarray(Y), np.asarray(P)
        _check(Y, P)
        Y, P = Y.reshape(len(Y), -1), P.reshape(len(P), -1)
        if self.per_unit is None:
            self.per_unit, self.spikes = np.zeros(Y.shape[1]), np.zeros(Y.shape[1], np.int64)
        elif Y.shape[1] != len(self.per_unit):
            raise SpikevizError(f"log-likelihood of {len(self.per_unit)} units, chunk has {Y.shape[1]}")
        rows = max(1, _CHUNK // Y.shape[1])
        for s in range(0, len(Y), rows):
            p = np.clip(P[s:s + rows], LL_CLIP, 1 - LL_CLIP, dtype=np.float64)
            y = Y[s:s + rows].astype(bool)
            # Every cell's log(1 - p), corrected at the (rare) spikes: one log per cell.
            self.per_unit += np.log1p(-p).sum(0)
            t, i = np.nonzero(y)
            q = p[t, i]
            np.add.at(self.per_unit, i, np.log(q) - np.log1p(-q))
            self.spikes += np.bincount(i, minlength=len(self.spikes))
        self.n += Y.size
        return self

    @property
    def total(self) -> float:
        return float(self.per_unit.sum()) if self.per_unit is not None else 0.0

    @property
    def n_spikes(self) -> int:
        return int(self.spikes.sum()) if self.spikes is not None else 0

    def bits_per_spike(self, reference: "LogLikelihood") -> float:
        """(this log-likelihood - the reference's) / spikes / ln 2, the reference scored on the same
        labels: NLB's co-bps when the reference is the per-unit rate."""
        if reference.n != self.n or reference.n_spikes != self.n_spikes:
            raise SpikevizError("bits per spike compares log-likelihoods of the same labels")
        if not self.n_spikes:
            return float("nan")
        return (self.total - reference.total) / self.n_spikes / np.log(2)


def bits_per_spike(Y: np.ndarray, P: np.ndarray, P_rate: np.ndarray) -> float:
    """Log-likelihood gain of P over the rate predictions P_rate, in bits per spike (NLB's co-bps,
    whose null model is each unit's rate; here whatever rate the caller fitted, e.g. on train)."""
    return LogLikelihood().add(Y, P).bits_per_spike(LogLikelihood().add(Y, P_rate))


def reliability(h: ScoreHistogram, n_bins: int = 15, spacing: str = "quantile"
                ) -> dict[str, np.ndarray]:
    """Reliability curve of a score histogram: mean score, observed spike frequency and cell count per score bin.

    "quantile": bins of about equal cell counts; "log": log-spaced edges from 1e-6 to 1 (scores
    below 1e-6 in the first bin). Empty bins are left out.
    """
    v = level_values(h.bits)
    count = h.pos + h.neg
    if spacing == "quantile":
        before = np.cumsum(count) - count
        group = np.minimum(before * n_bins // max(h.n, 1), n_bins - 1)
    elif spacing == "log":
        edges = np.geomspace(LL_CLIP, 1.0, n_bins)[:-1]
        group = np.searchsorted(edges, v, side="right")
    else:
        raise SpikevizError(f"unknown reliability spacing {spacing!r}: use 'quantile' or 'log'")
    n = np.bincount(group, count, n_bins)
    s = np.bincount(group, count * v, n_bins)
    y = np.bincount(group, h.pos, n_bins)
    ok = n > 0
    return {"predicted": s[ok] / n[ok], "observed": y[ok] / n[ok], "count": n[ok].astype(np.int64)}
