"""Causal baselines every result stands next to (rate, EWMA with fixed or tuned tau, pooled/per-unit/coupled GLMs) and the Predictor interface they share with the model."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import SpikevizError
from .filters import exponential_filter
from .glm import CoupledGLMPredictor, GLMPredictor, UnitGLMPredictor, _as_binary
from ..measures.likelihood import LogLikelihood
from ..measures.metrics import ScoreHistogram


@runtime_checkable
class Predictor(Protocol):
    """Anything that gives next-bin spike probabilities from the past (the baselines here,
    predict.ModelPredictor for a checkpoint).

    `predict(X)` takes a binary (T, N) matrix and returns float32 P of the same shape with
    P[t] = p(X[t+1] = 1 | X[0..t]): row t never depends on rows after t. `fit(X_train)` learns
    what it needs from a training stretch (a no-op for training-free predictors) and returns self.
    """

    name: str

    def fit(self, X_train: np.ndarray) -> "Predictor": ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class RatePredictor:
    """Each unit's mean firing probability on the training stretch, constant in time.

    `rates` (one per unit, in the column order the predictor will see) skips fitting: that is how
    a source session's rates are applied to a target under a unit-order policy.
    """

    name = "rate"

    def __init__(self, rates: np.ndarray | None = None):
        self.rates_ = None if rates is None else np.asarray(rates, np.float32)

    def fit(self, X_train: np.ndarray) -> "RatePredictor":
        self.rates_ = _as_binary(X_train).mean(0, dtype=np.float64).astype(np.float32)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.rates_ is None:
            raise SpikevizError("the rate baseline is not fitted: call fit(X_train) first")
        if len(self.rates_) != X.shape[1]:
            raise SpikevizError(f"rates for {len(self.rates_)} units, data has {X.shape[1]}")
        return np.broadcast_to(self.rates_, X.shape)   # a read-only view: no T x N copy


def _ewma(X: np.ndarray, a: float) -> np.ndarray:
    """EWMA P[t] = a P[t-1] + (1 - a) X[t] from 0, float32."""
    return exponential_filter(X, a)


class EWMAPredictor:
    """Exponentially weighted moving average of each unit's own past (time constant tau_ms).

    P[t] = a P[t-1] + (1 - a) X[t] with a = exp(-bin_ms / tau_ms), starting from 0: no training.
    """

    name = "ewma"

    def __init__(self, tau_ms: float = 50.0, bin_ms: float = 1.0):
        self.tau_ms, self.bin_ms = float(tau_ms), float(bin_ms)

    def fit(self, X_train: np.ndarray) -> "EWMAPredictor":
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _ewma(_as_binary(X), np.exp(-self.bin_ms / self.tau_ms))


TUNED_TAUS_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000)
RATE_WEIGHTS = (0.001, 0.003, 0.01, 0.03, 0.1)   # the rate's share, capped at 10 %: see below


class TunedEWMAPredictor:
    """EWMA whose time constant is chosen on the fitting stretch, mixed with each unit's rate.

    P = (1 - w) EWMA_tau + w r, with r the unit's rate on the fitting stretch (add-half smoothed, so
    a unit silent there still gets a rate above 0). tau is the grid value with the best `criterion`
    ("pr_auc" or "loglik") on the fitting stretch, scored after a burn-in of the longest tau, with
    w = 0.1 %; then w in RATE_WEIGHTS maximises the log-likelihood there. The rate share is a
    floor: an EWMA is 0 before a unit's first spike and underflows in long silences, which a
    log-likelihood scores as minus infinity (clipped: -13.8 nats a spike). The likelihood would
    take shares up to 30-50 % (a lone spike overstates a slow unit's rate for several tau), but
    they reorder units by rate and cost PR-AUC (bh session: -0.002 at 30 %), so w stays <= 10 %
    and the predictor stays an EWMA.
    """

    name = "ewma-tuned"

    def __init__(self, taus_ms: tuple[float, ...] = TUNED_TAUS_MS, bin_ms: float = 1.0,
                 criterion: str = "pr_auc", max_fit_bins: int = 60_000):
        if criterion not in ("pr_auc", "loglik"):
            raise SpikevizError(f"unknown criterion {criterion!r}: use 'pr_auc' or 'loglik'")
        self.taus_ms, self.bin_ms = tuple(float(t) for t in taus_ms), float(bin_ms)
        self.criterion, self.max_fit_bins = criterion, max_fit_bins
        self.tau_ms_: float | None = None
        self.rate_weight_ = RATE_WEIGHTS[0]
        self.rates_: np.ndarray | None = None

    def fit(self, X_train: np.ndarray) -> "TunedEWMAPredictor":
        X = _as_binary(X_train)
        X = X[max(0, len(X) - self.max_fit_bins):]
        # Scored pairs P[t] -> X[t+1] for t >= burn: the EWMA has forgotten its zero start.
        burn = min(int(max(self.taus_ms) / self.bin_ms), len(X) // 3)
        if len(X) - burn < 2:
            raise SpikevizError("the tuned EWMA needs a fitting stretch of at least 2 bins")
        Y = X[burn + 1:]
        self.rates_ = ((X.sum(0, dtype=np.float64) + 0.5) / (len(X) + 1)).astype(np.float32)
        loglik = lambda P: LogLikelihood().add(Y, P).total  # noqa: E731
        score = ((lambda P: ScoreHistogram.from_scores(Y, P).pr_auc)
                 if self.criterion == "pr_auc" else loglik)
        best = -np.inf
        for tau in self.taus_ms:
            E = _ewma(X, np.exp(-self.bin_ms / tau))[burn:-1]
            s = score(self._mix(E, RATE_WEIGHTS[0]))
            if s > best:
                best, self.tau_ms_, E_best = s, tau, E
        self.rate_weight_ = max(RATE_WEIGHTS, key=lambda w: loglik(self._mix(E_best, w)))
        return self

    def _mix(self, E: np.ndarray, w: float) -> np.ndarray:
        return np.float32(1.0 - w) * E + np.float32(w) * self.rates_

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.tau_ms_ is None:
            raise SpikevizError("the tuned EWMA is not fitted: call fit(X_train) first")
        if len(self.rates_) != X.shape[1]:
            raise SpikevizError(f"rates for {len(self.rates_)} units, data has {X.shape[1]}")
        P = _ewma(X, np.exp(-self.bin_ms / self.tau_ms_))
        P *= np.float32(1.0 - self.rate_weight_)
        P += np.float32(self.rate_weight_) * self.rates_
        return P


# Own-history windows in ms back from the predicted bin: 1 is the current bin X[t].
BASELINES = ("rate", "ewma", "glm")
# The stronger, matched ones: evaluation scores BASELINES until it learns where to fit these.
MATCHED_BASELINES = ("ewma-tuned", "glm-unit", "glm-coupled")
ALL_BASELINES = BASELINES + MATCHED_BASELINES
# Population models fitted on the recording like the baselines, asked for by name ("all" leaves
# them out: the stack takes a minute or more to fit, and the baselines' table stays comparable).
FITTED_MODELS = ("stack", "states")
PREDICTORS = ALL_BASELINES + FITTED_MODELS


def make_baseline(name: str, bin_ms: float = 1.0):
    """A fresh baseline to fit on the target, by name (one of ALL_BASELINES; every name of
    PREDICTORS: registry.make_predictor)."""
    if name == "rate":
        return RatePredictor()
    if name == "ewma":
        return EWMAPredictor(bin_ms=bin_ms)
    if name == "glm":
        return GLMPredictor(bin_ms=bin_ms)
    if name == "ewma-tuned":
        return TunedEWMAPredictor(bin_ms=bin_ms)
    if name == "glm-unit":
        return UnitGLMPredictor(bin_ms=bin_ms)
    if name == "glm-coupled":
        return CoupledGLMPredictor(bin_ms=bin_ms)
    raise SpikevizError(f"unknown baseline {name!r}: use one of {', '.join(ALL_BASELINES)}")
