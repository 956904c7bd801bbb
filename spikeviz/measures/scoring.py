"""Scoring predictions: protocols, histograms of an evaluated stretch, log-likelihoods, thresholds tuned on the warm-up."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SpikevizError
from .metrics import THRESHOLD_RULES, ScoreHistogram, UnitHistograms, scores_histograms
from .uncertainty import BlockScores

PROTOCOLS = ("strict", "reference")
FPR_CAP = 0.005


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


@dataclass(frozen=True, eq=False)
class Scored:
    """One predictor's histograms on the evaluated stretch (per protocol) and its calibration window."""

    hists: dict[str, ScoreHistogram]
    units: UnitHistograms | None   # None where a caller dropped them to save memory
    calibration: ScoreHistogram
    blocks: BlockScores | None = None   # the scored pairs in time blocks, for paired intervals

    @property
    def loglik(self) -> float:
        """Bernoulli log-likelihood (nats) of the scored pairs."""
        return float(self.blocks.loglik.sum()) if self.blocks is not None else float("nan")

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
    both protocols (per unit for `protocol`, and in time blocks with their log-likelihoods), and
    the calibration pairs prime <= t < warm - 1."""
    hists = {}
    for proto in PROTOCOLS:
        y, p = aligned(P[warm:], X[warm:], proto)
        if proto == protocol:
            hists[proto], units = scores_histograms(y, p)
        else:
            hists[proto] = ScoreHistogram.from_scores(y, p)
    y, p = aligned(P[prime:warm], X[prime:warm], protocol)
    calibration = ScoreHistogram.from_scores(y, p)
    return Scored(hists, units, calibration,
                  BlockScores.from_scores(*aligned(P[warm:], X[warm:], protocol)))


def parse_threshold(threshold: float | str) -> float | str:
    """A preset name as it is, or the threshold as a number in [0, 1]."""
    if isinstance(threshold, str) and threshold in THRESHOLD_RULES:
        return threshold
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise SpikevizError(f"threshold {threshold!r}: give a number in [0, 1] or one of "
                            f"{', '.join(THRESHOLD_RULES)}") from None
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


def json_safe(x):
    """JSON-safe: NaN and infinity become None, numpy scalars Python numbers."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
