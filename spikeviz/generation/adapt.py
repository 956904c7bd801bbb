"""Adapting a generalist to a target recording: its guard refitted on the predictions of the target's warm-up."""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch

from ..errors import SpikevizError
from ..models.generalist import Generalist, base_logits
from ..models.logistic import fit_logistic
from .predict import logits_next


def fit_guard(features: Sequence[np.ndarray], Y: np.ndarray, max_cells: int = 400_000,
              seed: int = 0, fallback: Sequence[float] = (1.0, 1.0, 0.0)) -> tuple[float, ...]:
    """(w_1, ..., w_k, bias) of logit = sum_j w_j features[j] + bias by logistic regression on
    the features (arrays shaped as Y) -> Y: a generalist's guard on (base, correction), a blend's
    weights on its logits.

    Every spike is kept and the silent cells subsampled to `max_cells` in all (an offset of
    -log(kept fraction) corrects the intercept for it). Too few spikes to fit: `fallback` (the
    trained guard).
    """
    y = Y.ravel().astype(bool)
    n_pos = int(y.sum())
    if n_pos < 20 or n_pos == y.size:
        return tuple(float(v) for v in fallback)
    q_neg = min(1.0, max(1, max_cells - n_pos) / (y.size - n_pos))
    keep = y | (np.random.default_rng(seed).random(y.size) < q_neg)
    fit = fit_logistic(y[keep], np.stack([f.ravel()[keep] for f in features], axis=1),
                       offset=-np.log(q_neg))
    return (*(float(v) for v in fit.coef), fit.intercept)


def adapt(model: Generalist, X: np.ndarray, lo: int, hi: int) -> Generalist:
    """A copy of `model` whose guard is fitted on the predictions of bins lo+1..hi-1 of X from
    their real past (X[:hi] is all it reads: pass the target's warm-up, never the scored bins).

    The copy's Platt calibration is the identity: the guard is fitted on the target itself.
    """
    if not 0 <= lo < hi - 1 <= len(X) - 1:
        raise SpikevizError(f"cannot adapt on bins [{lo}, {hi}) of a {len(X)}-bin stretch")
    unit = with_guard(model, [1.0, 1.0, 0.0], lo, hi)   # logits = base + correction
    base = base_logits(unit, X[:hi - 1])[lo:]
    corr = logits_next(unit, X[:hi - 1])[lo:] - base
    return with_guard(model, fit_guard((base, corr), X[lo + 1:hi]), lo, hi)


def with_guard(model: Generalist, guard, lo: int, hi: int) -> Generalist:
    """A copy of `model` with the guard (g0, g1, g2) that `adapt` fitted on bins [lo, hi), and
    no Platt calibration (the guard stands for it)."""
    out = copy.deepcopy(model)
    out.guard.copy_(torch.tensor([float(g) for g in guard], dtype=torch.float32))
    out.calibration = (1.0, 0.0)
    out.meta = dict(model.meta, guard=[float(g) for g in guard], adapted_on=[lo, hi])
    return out.eval()
