"""Scores of spike predictions: histogram ROC/PR curves, AUCs, presets, Brier, reliability; bits/spike."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache

import numpy as np

from ..errors import SpikevizError

# Scores are quantized on a log scale straight from their float32 bits: the bits of a non-negative
# float32 are monotone in its value. Scores are first scaled by 2^24, exactly, so that float32
# denormals (an EWMA decayed for seconds) become normal numbers and keep their order. With
# k = bits >> 12 (exponent and 11 mantissa bits), the level is max((k >> (11 - m)) - offset, k >> 5):
# m mantissa bits (relative resolution 2^-m) for scores >= 2^-32, 6 bits (1.6 %) below.
SCALE = np.float32(2.0 ** 24)
FINE_BITS = 11       # pooled: 73,153 levels, 0.05 % relative resolution
UNIT_BITS = 8        # per unit: 15,809 levels a unit, 0.4 %
_K0 = (95 + 24) << 11  # k of 2^-32 (scaled), where the fine region starts
_KTOP = (127 + 24) << 11  # k of 1.0 (scaled)
_LOW_SHIFT = 5       # below it: 6 mantissa bits (1.6 %)
_CHUNK = 1 << 18     # elements per pass: keeps the working set in cache
_UNIT_BLOCK = 16     # units a per-unit pass counts at once
THRESHOLD_RULES = ("youden", "max-f1", "density")


def _offset(bits: int) -> int:
    return (_K0 >> (11 - bits)) - (_K0 >> _LOW_SHIFT)


def n_levels(bits: int = FINE_BITS) -> int:
    return (_KTOP >> (11 - bits)) - _offset(bits) + 1


def _levels(k: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Levels of the int32 keys k = float32 bits >> 12 (into `out`, k itself if not given)."""
    out = k if out is None else out
    low = np.right_shift(k, _LOW_SHIFT)
    np.right_shift(k, 11 - bits, out=out)
    np.subtract(out, _offset(bits), out=out)
    np.maximum(out, low, out=out)
    # -0.0 has the sign bit set (a negative key): it belongs with 0 at the bottom.
    return np.clip(out, 0, n_levels(bits) - 1, out=out)


def _keys(p: np.ndarray) -> np.ndarray:
    """int32 keys of the float32 scores p (p is overwritten by the scaled scores)."""
    np.multiply(p, SCALE, out=p)
    return np.right_shift(p.view(np.int32), 12)


@lru_cache(maxsize=4)
def level_edges(bits: int = FINE_BITS) -> np.ndarray:
    """Lowest score of each level (float64): a score p is in level >= j exactly when p >= edges[j]."""
    k = np.arange(1 << 19, dtype=np.int32)    # every key of a non-negative float32
    first = np.searchsorted(_levels(k.copy(), bits), np.arange(n_levels(bits)), side="left")
    edges = (k[first] << 12).view(np.float32).astype(np.float64) / float(SCALE)
    edges[0] = 0.0
    return edges


@lru_cache(maxsize=4)
def level_values(bits: int = FINE_BITS) -> np.ndarray:
    """A representative score of each level: the middle of its range (1.0 for the top level)."""
    edges = level_edges(bits)
    return np.append((edges[:-1] + edges[1:]) / 2, edges[-1])


def score_levels(scores: np.ndarray, bits: int = FINE_BITS) -> np.ndarray:
    """int32 levels of probabilities `scores` (any shape), as the histograms count them."""
    return _levels(_keys(np.array(scores, dtype=np.float32)), bits)


def score_level(threshold: float, bits: int = FINE_BITS) -> int:
    """The level a score in [0, 1] falls in."""
    k = int((np.float32(threshold) * SCALE).view(np.int32)) >> 12
    level = max((k >> (11 - bits)) - _offset(bits), k >> _LOW_SHIFT)
    return min(max(level, 0), n_levels(bits) - 1)


def _check(y: np.ndarray, p: np.ndarray) -> None:
    if y.shape != p.shape:
        raise SpikevizError(f"labels {y.shape} and scores {p.shape} differ in shape")
    if p.size == 0:
        raise SpikevizError("no scores to evaluate")
    lo, hi = p.min(), p.max()
    if not (0.0 <= lo and hi <= 1.0):  # NaN fails both comparisons
        raise SpikevizError(f"scores must be probabilities in [0, 1], got range [{lo}, {hi}]")
    if y.dtype != np.bool_ and y.max() > 1:
        raise SpikevizError("labels must be 0/1")


def _count(y: np.ndarray, p: np.ndarray, per_unit: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Counts per (class, level), class 0 negatives and 1 positives: pooled (2, L) and per unit
    (N, 2, L), in one chunked pass (a block of units at a time)."""
    L, Lu = n_levels(FINE_BITS), n_levels(UNIT_BITS)
    pooled = np.zeros(2 * L, np.int64)
    n_units = p.shape[1] if per_unit else 1
    units = np.zeros((n_units, 2 * Lu), np.int64) if per_unit else None
    y2 = y.reshape(len(y), -1) if per_unit else y.reshape(-1, 1)
    p2 = p.reshape(len(p), -1) if per_unit else p.reshape(-1, 1)
    # A per-unit bincount returns its whole output each call: chunks twice its size amortise
    # that, and a block of units keeps both small (all 128 at once held 0.25 GB).
    block = min(n_units, _UNIT_BLOCK)
    rows = max(1, max(_CHUNK, 4 * block * Lu if per_unit else 0) // block)
    offsets = (np.arange(block, dtype=np.int32) * (2 * Lu))
    for j in range(0, n_units, block):
        cols = slice(j, j + block)
        for s in range(0, len(p2), rows):
            pc = np.array(p2[s:s + rows, cols], dtype=np.float32)   # a copy: _keys scales it
            yc = y2[s:s + rows, cols]
            yc = yc.view(np.uint8) if yc.dtype == np.bool_ else yc
            k = _keys(pc)
            if per_unit:
                cu = _levels(k, UNIT_BITS, np.empty_like(k))
                np.left_shift(cu, 1, out=cu)
                np.add(cu, yc, out=cu, casting="unsafe")
                cu += offsets[:k.shape[1]]
                units[cols] += np.bincount(cu.ravel(), minlength=k.shape[1] * 2 * Lu
                                           ).reshape(-1, 2 * Lu)
            lv = _levels(k, FINE_BITS)
            np.left_shift(lv, 1, out=lv)
            np.add(lv, yc, out=lv, casting="unsafe")
            pooled += np.bincount(lv.ravel(), minlength=2 * L)
    pooled = pooled.reshape(L, 2).T
    return pooled, None if units is None else units.reshape(n_units, Lu, 2).transpose(0, 2, 1)


def aucs(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC (ties count half) and average precision (scikit-learn's step sum) of positive and
    negative counts per level (increasing score), along the last axis: any batch shape, any
    non-negative weights."""
    P = pos.sum(-1, dtype=np.float64)
    N = neg.sum(-1, dtype=np.float64)
    tp = np.cumsum(pos[..., ::-1], -1, dtype=np.float64)   # positives scoring >= each level, top down
    fp = np.cumsum(neg[..., ::-1], -1, dtype=np.float64)
    neg_below = N[..., None] - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        roc = ((pos[..., ::-1] * (neg_below + 0.5 * neg[..., ::-1])).sum(-1)) / (P * N)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        ap = (pos[..., ::-1] * precision).sum(-1) / P
    return np.where(P * N > 0, roc, np.nan), np.where(P > 0, ap, np.nan)


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates when predicting a spike wherever the score is >= threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    fpr: float
    predicted_spikes: int
    real_spikes: int

    def as_dict(self) -> dict:
        return asdict(self)


class ScoreHistogram:
    """Positives and negatives per score level: every curve, AUC and operating point comes from it.

    Built once in O(n) (`from_scores`); afterwards curves cost O(levels) and an operating point
    O(1), so a threshold slider recomputes nothing heavy. Scores are quantized on a log scale to
    73,153 levels (relative resolution 0.05 % above 2^-32, 1.6 % below), so AUCs agree with
    scikit-learn's to well within 1e-3. Thresholds snap down to a level edge; the
    edge is what operating points report, and `p >= edge` reproduces their counts exactly.
    """

    def __init__(self, pos: np.ndarray, neg: np.ndarray, bits: int = FINE_BITS):
        self.pos = np.asarray(pos, np.int64)
        self.neg = np.asarray(neg, np.int64)
        self.bits = bits
        if self.pos.shape != (n_levels(bits),) or self.neg.shape != self.pos.shape:
            raise SpikevizError(f"a score histogram needs {n_levels(bits)} levels per class")

    @classmethod
    def from_scores(cls, y_true: np.ndarray, scores: np.ndarray) -> "ScoreHistogram":
        """Histogram of probabilities `scores` in [0, 1] against 0/1 labels `y_true` (any shape)."""
        y, p = np.asarray(y_true), np.asarray(scores)
        _check(y, p)
        pooled, _ = _count(y, p, per_unit=False)
        return cls(pooled[1], pooled[0])

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        return ScoreHistogram(self.pos + other.pos, self.neg + other.neg, self.bits)

    @cached_property
    def _cum(self) -> tuple[np.ndarray, np.ndarray]:
        """tp[k], fp[k]: positives and negatives with level >= k, for k = 0..L (L: nothing)."""
        tp = np.append(np.cumsum(self.pos[::-1])[::-1], 0)
        fp = np.append(np.cumsum(self.neg[::-1])[::-1], 0)
        return tp, fp

    @cached_property
    def edges(self) -> np.ndarray:
        """Threshold of each level k = 0..L (L: above every score, +inf)."""
        return np.append(level_edges(self.bits), np.inf)

    @cached_property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @cached_property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @property
    def n(self) -> int:
        return self.n_pos + self.n_neg

    @property
    def base_rate(self) -> float:
        """Fraction of positives: the PR-AUC of a random predictor."""
        return self.n_pos / self.n if self.n else float("nan")

    @property
    def chance(self) -> dict:
        return {"roc_auc": 0.5, "pr_auc": self.base_rate}

    @cached_property
    def roc_auc(self) -> float:
        return float(aucs(self.pos, self.neg)[0])

    @cached_property
    def pr_auc(self) -> float:
        """Average precision (scikit-learn's definition)."""
        return float(aucs(self.pos, self.neg)[1])

    @cached_property
    def _points(self) -> np.ndarray:
        """Levels k where the curves move (a non-empty level), highest first, then 0 counts (k = L)."""
        k = np.flatnonzero((self.pos + self.neg) > 0)[::-1]
        return np.concatenate([[len(self.pos)], k])

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fpr, tpr and thresholds (decreasing, first +inf), like sklearn.metrics.roc_curve."""
        tp, fp = self._cum
        k = self._points
        return fp[k] / max(self.n_neg, 1), tp[k] / max(self.n_pos, 1), self.edges[k]

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """precision, recall and thresholds (decreasing), the curve average precision sums over.

        The first point (nothing predicted) has precision 1 and recall 0, as in scikit-learn.
        """
        tp, fp = self._cum
        k = self._points
        pred = tp[k] + fp[k]
        precision = np.where(pred > 0, tp[k] / np.maximum(pred, 1), 1.0)
        return precision, tp[k] / max(self.n_pos, 1), self.edges[k]

    @cached_property
    def brier(self) -> float:
        """Mean squared error of the scores against the labels (scores at their level's middle:
        within 0.05 % relative above 2^-32)."""
        v = level_values(self.bits)
        return float((self.pos @ (1 - v) ** 2 + self.neg @ v ** 2) / self.n) if self.n else float("nan")

    def _op(self, k: int) -> OperatingPoint:
        tp_, fp_ = self._cum
        tp, fp = int(tp_[k]), int(fp_[k])
        fn, tn = self.n_pos - tp, self.n_neg - fp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / self.n_pos if self.n_pos else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return OperatingPoint(float(self.edges[k]), tp, fp, fn, tn, precision, recall, f1,
                              fp / self.n_neg if self.n_neg else 0.0, tp + fp, self.n_pos)

    def operating_point(self, threshold: float) -> OperatingPoint:
        """Precision, recall, F1, FPR and spike counts predicting a spike where score >= threshold."""
        if not np.isfinite(threshold) or threshold > 1:
            return self._op(len(self.pos))
        return self._op(score_level(max(float(threshold), 0.0), self.bits))

    def threshold(self, preset: str, fpr_cap: float = 0.005) -> float:
        """The threshold a preset picks among the level edges where the curves move.

        "youden": max TPR - FPR with FPR <= fpr_cap (the paper's rule); "max-f1": max F1;
        "density": the predicted spike count closest to the real one.
        """
        tp_, fp_ = self._cum
        k = self._points
        tp, fp = tp_[k].astype(np.float64), fp_[k].astype(np.float64)
        P, N = max(self.n_pos, 1), max(self.n_neg, 1)
        if preset == "youden":
            score = np.where(fp / N <= fpr_cap, tp / P - fp / N, -np.inf)
        elif preset == "max-f1":
            score = 2 * tp / np.maximum(tp + fp + self.n_pos, 1)
        elif preset == "density":
            score = -np.abs(tp + fp - self.n_pos)
        else:
            raise SpikevizError(f"unknown threshold preset {preset!r}: use one of {', '.join(THRESHOLD_RULES)}")
        return float(self.edges[k[int(np.argmax(score))]])

    def summary(self, threshold: float | None = None) -> dict:
        out = {"n": self.n, "n_pos": self.n_pos, "base_rate": self.base_rate,
               "roc_auc": self.roc_auc, "pr_auc": self.pr_auc, "chance": self.chance}
        if threshold is not None:
            out["operating_point"] = self.operating_point(threshold).as_dict()
        return out


class UnitHistograms:
    """Per-unit score histograms (N, 2, levels: negatives, positives) at 0.4 % resolution."""

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, np.int32)   # sums below are taken in int64

    @classmethod
    def from_scores(cls, Y: np.ndarray, P: np.ndarray) -> "UnitHistograms":
        """From (T, N) labels and probabilities."""
        return scores_histograms(Y, P)[1]

    @property
    def n_units(self) -> int:
        return len(self.counts)

    @cached_property
    def _aucs(self) -> tuple[np.ndarray, np.ndarray]:
        return aucs(self.counts[:, 1], self.counts[:, 0])

    @property
    def roc_auc(self) -> np.ndarray:
        """ROC-AUC of each unit (NaN for a unit with no spike or no silent bin)."""
        return self._aucs[0]

    @property
    def pr_auc(self) -> np.ndarray:
        """Average precision of each unit (NaN for a unit with no spike)."""
        return self._aucs[1]

    @property
    def n_spikes(self) -> np.ndarray:
        return self.counts[:, 1].sum(1, dtype=np.int64)

    @property
    def roc_auc_spike_weighted(self) -> float:
        """Per-unit ROC-AUCs averaged with each unit's spike count as weight (scored units only).

        Unlike the pooled ROC-AUC it does not reward ranking units by rate."""
        roc, w = self.roc_auc, self.n_spikes
        ok = np.isfinite(roc)
        return float(roc[ok] @ w[ok] / w[ok].sum()) if ok.any() else float("nan")

    @property
    def base_rate(self) -> np.ndarray:
        n = self.counts.sum((1, 2))
        return self.counts[:, 1].sum(1) / np.maximum(n, 1)

    def unit(self, i: int) -> ScoreHistogram:
        """The histogram of unit i (coarser levels than the pooled one)."""
        return ScoreHistogram(self.counts[i, 1], self.counts[i, 0], UNIT_BITS)

    def summary(self) -> dict:
        roc, pr = self.roc_auc, self.pr_auc
        ok = np.isfinite(roc)
        return {"n_units_scored": int(ok.sum()),
                "roc_auc_spike_weighted": self.roc_auc_spike_weighted if ok.any() else None,
                "roc_auc_median": float(np.median(roc[ok])) if ok.any() else None,
                "roc_auc_iqr": [float(q) for q in np.quantile(roc[ok], [0.25, 0.75])]
                if ok.any() else None,
                "pr_auc_median": float(np.nanmedian(pr)) if np.isfinite(pr).any() else None,
                "frac_units_above_chance": float((roc[ok] > 0.5).mean()) if ok.any() else None}


def scores_histograms(Y: np.ndarray, P: np.ndarray) -> tuple[ScoreHistogram, UnitHistograms]:
    """Pooled and per-unit histograms of (T, N) labels and probabilities in one pass."""
    Y, P = np.asarray(Y), np.asarray(P)
    if Y.ndim != 2:
        raise SpikevizError(f"per-unit scoring needs (T, N) matrices, got shape {Y.shape}")
    _check(Y, P)
    pooled, units = _count(Y, P, per_unit=True)
    return ScoreHistogram(pooled[1], pooled[0]), UnitHistograms(units)


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    return ScoreHistogram.from_scores(y_true, scores).roc_auc


def pr_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, as sklearn.metrics.average_precision_score."""
    return ScoreHistogram.from_scores(y_true, scores).pr_auc


def threshold_preset(y_true: np.ndarray, scores: np.ndarray, preset: str,
                     fpr_cap: float = 0.005) -> float:
    """The threshold a preset ("youden" with FPR <= fpr_cap, "max-f1", "density") picks on these scores."""
    return ScoreHistogram.from_scores(y_true, scores).threshold(preset, fpr_cap)
