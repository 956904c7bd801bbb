"""Causal baselines every result stands next to: per-unit rate, EWMA of own history, pooled GLM."""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .errors import SpikevizError

_ROWS = 8192  # time bins per chunk when building GLM features


def _as_binary(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise SpikevizError(f"spike matrices are (T, N), got shape {X.shape}")
    return X


class RatePredictor:
    """Each unit's mean firing probability on the training stretch, constant in time.

    `rates` (one per unit, in the column order the predictor will see) skips fitting: that is how
    a source session's rates are applied to a target under a unit-order policy.
    """

    name = "rate"

    def __init__(self, rates: np.ndarray | None = None):
        self.rates = None if rates is None else np.asarray(rates, np.float32)

    def fit(self, X_train: np.ndarray) -> "RatePredictor":
        self.rates = _as_binary(X_train).mean(0, dtype=np.float64).astype(np.float32)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.rates is None:
            raise SpikevizError("the rate baseline is not fitted: call fit(X_train) first")
        if len(self.rates) != X.shape[1]:
            raise SpikevizError(f"rates for {len(self.rates)} units, data has {X.shape[1]}")
        return np.broadcast_to(self.rates, X.shape)   # a read-only view: no T x N copy


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
        X = _as_binary(X)
        a = np.exp(-self.bin_ms / self.tau_ms)
        P = np.empty(X.shape, np.float32)
        # In row blocks carrying the filter state: lfilter works in float64, so one call over an
        # hour of 128 units would need several times the output's memory.
        state = np.zeros((1, X.shape[1]))
        for s in range(0, len(X), _ROWS):
            out, state = lfilter([1.0 - a], [1.0, -a], X[s:s + _ROWS], axis=0, zi=state)
            P[s:s + _ROWS] = out
        return P


# Own-history windows in ms back from the predicted bin: 1 is the current bin X[t].
GLM_WINDOWS_MS = ((1, 1), (2, 3), (4, 10), (11, 30), (31, 100), (101, 300))
LONG_MS = 10_000           # the window of the log-rate feature
POP_WINDOWS_MS = ((1, 1), (2, 10))


class GLMPredictor:
    """Logistic regression pooled over units on recent own history and population activity.

    Features of unit i at bin t (all from X[..t]): its spike rate in each window of GLM_WINDOWS_MS,
    the fraction of the other units spiking in each window of POP_WINDOWS_MS, and the log of its
    rate over the last 10 s. One weight vector serves every unit, so the model applies to any unit
    count and order. Fitting keeps at most `max_samples` (t, unit) cells of the last `max_fit_bins`
    training bins, subsampling positives and negatives separately; the intercept is corrected for
    the sampling rates.
    """

    name = "glm"

    def __init__(self, bin_ms: float = 1.0, max_fit_bins: int = 300_000, max_samples: int = 400_000,
                 seed: int = 0):
        self.bin_ms = float(bin_ms)
        self.max_fit_bins, self.max_samples, self.seed = max_fit_bins, max_samples, seed
        to_bins = lambda ms: max(1, int(round(ms / self.bin_ms)))  # noqa: E731
        self.windows = [(to_bins(a), max(to_bins(a), to_bins(b))) for a, b in GLM_WINDOWS_MS]
        self.pop_windows = [(to_bins(a), max(to_bins(a), to_bins(b))) for a, b in POP_WINDOWS_MS]
        self.long = to_bins(LONG_MS)
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    @property
    def feature_names(self) -> list[str]:
        return ([f"own {a}-{b} ms" for a, b in GLM_WINDOWS_MS]
                + [f"population {a}-{b} ms" for a, b in POP_WINDOWS_MS] + ["log own rate 10 s"])

    def _features(self, X: np.ndarray, start: int, stop: int) -> list[np.ndarray]:
        """Features (rows, N) float32 of bins t in [start, stop), from X[..t] only."""
        lo = max(0, start - self.long)
        # C[k] = spikes in X[lo..lo+k-1]: window sums are differences of two rows.
        C = np.zeros((stop - lo + 1, X.shape[1]), np.int32)
        np.cumsum(X[lo:stop], axis=0, dtype=np.int32, out=C[1:])
        t = np.arange(start, stop)

        def window(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            # Lags a..b back from t+1 cover X[t+1-b .. t+1-a], clipped at the start of X.
            hi = t + 2 - a
            lo_ = np.maximum(t + 1 - b, 0)
            counts = C[np.maximum(hi, lo_) - lo] - C[lo_ - lo]
            return counts.astype(np.float32), np.maximum(hi - lo_, 1).astype(np.float32)[:, None]

        feats = []
        for a, b in self.windows:
            counts, _ = window(a, b)
            feats.append(counts / (b - a + 1))
        n_other = max(X.shape[1] - 1, 1)
        for a, b in self.pop_windows:
            counts, _ = window(a, b)
            feats.append((counts.sum(1, keepdims=True) - counts) / (n_other * (b - a + 1)))
        counts, length = window(1, self.long)
        feats.append(np.log((counts + 0.5) / length))
        return feats

    def fit(self, X_train: np.ndarray) -> "GLMPredictor":
        from sklearn.linear_model import LogisticRegression

        X = _as_binary(X_train)
        X = X[max(0, len(X) - self.max_fit_bins):]
        if len(X) < 2:
            raise SpikevizError("the GLM needs a training stretch of at least 2 bins")
        # P[t] predicts X[t+1]: cells (t, i) for t < T - 1.
        n_pos = int(X[1:].sum(dtype=np.int64))
        n_neg = (len(X) - 1) * X.shape[1] - n_pos
        if n_pos == 0 or n_neg == 0:
            raise SpikevizError("the GLM needs both spikes and silent bins in its training stretch")
        half = self.max_samples // 2
        q_pos, q_neg = min(1.0, half / n_pos), min(1.0, half / n_neg)
        rng = np.random.default_rng(self.seed)
        rows, labels = [], []
        for s in range(0, len(X) - 1, _ROWS):
            e = min(s + _ROWS, len(X) - 1)
            y = X[s + 1:e + 1].astype(bool)
            keep = rng.random(y.shape, dtype=np.float32) < np.where(y, q_pos, q_neg)
            F = self._features(X, s, e)
            rows.append(np.stack([f[keep] for f in F], axis=1))
            labels.append(y[keep])
        F, y = np.concatenate(rows), np.concatenate(labels)
        self.mean, self.scale = F.mean(0), F.std(0) + 1e-6
        clf = LogisticRegression(C=1.0, max_iter=300).fit((F - self.mean) / self.scale, y)
        self.coef = (clf.coef_[0] / self.scale).astype(np.float32)
        # Sampling positives at q_pos and negatives at q_neg shifts the log-odds by log(q_pos/q_neg).
        self.intercept = float(clf.intercept_[0] - self.coef @ self.mean - np.log(q_pos / q_neg))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.coef is None:
            raise SpikevizError("the GLM baseline is not fitted: call fit(X_train) first")
        P = np.empty(X.shape, np.float32)
        for s in range(0, len(X), _ROWS):
            e = min(s + _ROWS, len(X))
            z = np.full((e - s, X.shape[1]), self.intercept, np.float32)
            for w, f in zip(self.coef, self._features(X, s, e)):
                z += w * f
            P[s:e] = 1.0 / (1.0 + np.exp(-z))
        return P


BASELINES = ("rate", "ewma", "glm")


def make_baseline(name: str, bin_ms: float = 1.0):
    """A fresh baseline predictor by name ("rate", "ewma" or "glm")."""
    if name == "rate":
        return RatePredictor()
    if name == "ewma":
        return EWMAPredictor(bin_ms=bin_ms)
    if name == "glm":
        return GLMPredictor(bin_ms=bin_ms)
    raise SpikevizError(f"unknown baseline {name!r}: use one of {', '.join(BASELINES)}")
