"""The logistic-regression baselines: pooled over units, per unit, and per unit coupled to partner units."""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import SpikevizError
from .logistic import fit_logistic, sigmoid

_ROWS = 8192  # time bins per chunk when building GLM features and filtering


def _as_binary(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise SpikevizError(f"spike matrices are (T, N), got shape {X.shape}")
    return X


class WindowSums:
    """Spike counts of windows of lags a..b back from t+1 (X[t+1-b .. t+1-a], clipped at the start
    of X) at bins t, from the cumulative counts C[k] = spikes in X[lo..lo+k-1].

    With `units`, only at the cells (t[k], units[k]) and as vectors: what fitting needs from the
    few cells it samples. Without, for every unit, as (rows, N) arrays. The features are written
    once, on `own`, `others`, `partner_rates` and `length`, and come out the same, bit for bit,
    either way.
    """

    def __init__(self, C: np.ndarray, lo: int, t: np.ndarray, units: np.ndarray | None = None):
        self.C, self.lo, self.t, self.units = C, lo, t, units
        self._total = None if units is None else C.sum(1, dtype=np.int64)

    def _bounds(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        hi = self.t + 2 - a
        lo_ = np.maximum(self.t + 1 - b, 0)
        return np.maximum(hi, lo_) - self.lo, lo_ - self.lo

    def counts(self, a: int, b: int) -> np.ndarray:
        """Every unit's counts (rows, N) float32."""
        hi, lo_ = self._bounds(a, b)
        return (self.C[hi] - self.C[lo_]).astype(np.float32)

    def _at_cells(self, a: int, b: int, units: np.ndarray) -> np.ndarray:
        """Counts of units[k] at bin t[k], float32."""
        hi, lo_ = self._bounds(a, b)
        return (self.C[hi, units] - self.C[lo_, units]).astype(np.float32)

    def own(self, a: int, b: int) -> np.ndarray:
        """The unit's own counts, float32."""
        return self.counts(a, b) if self.units is None else self._at_cells(a, b, self.units)

    def others(self, a: int, b: int) -> np.ndarray:
        """The summed counts of the other units, float32."""
        if self.units is None:
            counts = self.counts(a, b)
            return counts.sum(1, keepdims=True) - counts
        hi, lo_ = self._bounds(a, b)
        return (self._total[hi] - self._total[lo_]).astype(np.float32) - self.own(a, b)

    def partner_rates(self, a: int, b: int, partners: np.ndarray) -> list[np.ndarray]:
        """Spike rates (counts / (b - a + 1)) of each unit's partners, one array per column of
        `partners` (N, k): for every unit, divided once before the k gathers."""
        n = b - a + 1
        if self.units is None:
            rate = self.counts(a, b) / n
            return [rate[:, column] for column in partners.T]
        return [self._at_cells(a, b, column[self.units]) / n for column in partners.T]

    def length(self, a: int, b: int) -> np.ndarray:
        """The windows' lengths in bins, clipped at the start of X: (rows, 1), or one per cell."""
        hi, lo_ = self._bounds(a, b)
        n = np.maximum(hi - lo_, 1).astype(np.float32)
        return n if self.units is not None else n[:, None]


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
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0

    @property
    def feature_names(self) -> list[str]:
        return ([f"own {a}-{b} ms" for a, b in GLM_WINDOWS_MS]
                + [f"population {a}-{b} ms" for a, b in POP_WINDOWS_MS] + ["log own rate 10 s"])

    def _window_sums(self, X: np.ndarray, start: int, stop: int, rows: np.ndarray | None = None,
                     units: np.ndarray | None = None, reach: int | None = None) -> WindowSums:
        """Window sums at bins t in [start, stop) (from X[..t] only): of every unit, or at the
        cells (start + rows[k], units[k]); of windows reaching `reach` bins back at most (the
        longest feature's, by default)."""
        lo = max(0, start - (self.long if reach is None else reach))
        # C[k] = spikes in X[lo..lo+k-1]: window sums are differences of two rows.
        C = np.zeros((stop - lo + 1, X.shape[1]), np.int32)
        np.cumsum(X[lo:stop], axis=0, dtype=np.int32, out=C[1:])
        t = np.arange(start, stop) if rows is None else start + rows
        return WindowSums(C, lo, t, units)

    def _features(self, X: np.ndarray, start: int, stop: int) -> list[np.ndarray]:
        """Features (rows, N) float32 of bins t in [start, stop), from X[..t] only."""
        return self.features_from(self._window_sums(X, start, stop), X.shape[1])

    def features_from(self, window: WindowSums, n_units: int) -> list[np.ndarray]:
        """The features from window sums: how a free run computes them bin by bin."""
        return self._own_features(window, n_units)

    def _own_features(self, window: WindowSums, n_units: int) -> list[np.ndarray]:
        feats = [window.own(a, b) / (b - a + 1) for a, b in self.windows]
        n_other = max(n_units - 1, 1)
        feats += [window.others(a, b) / (n_other * (b - a + 1)) for a, b in self.pop_windows]
        feats.append(np.log((window.own(1, self.long) + 0.5) / window.length(1, self.long)))
        return feats

    def _spike_counts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spikes and silent bins per unit among the predicted cells X[1:]."""
        if len(X) < 2:
            raise SpikevizError("the GLM needs a training stretch of at least 2 bins")
        n_pos = X[1:].sum(0, dtype=np.int64)
        return n_pos, (len(X) - 1) - n_pos

    def _sample(self, X: np.ndarray, q_pos, q_neg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, labels and units of the cells (t, i), t < T - 1, kept with probability q_pos
        (spike at t+1) or q_neg (none): scalars or one per unit."""
        rng = np.random.default_rng(self.seed)
        rows, labels, units = [], [], []
        for s in range(0, len(X) - 1, _ROWS):
            e = min(s + _ROWS, len(X) - 1)
            y = X[s + 1:e + 1].astype(bool)
            keep = rng.random(y.shape, dtype=np.float32) < np.where(y, q_pos, q_neg)
            # Features at the kept cells only (a few % of them), in the order y[keep] has them.
            t, i = np.nonzero(keep)
            F = self.features_from(self._window_sums(X, s, e, t, i), X.shape[1])
            rows.append(np.stack(F, axis=1))
            labels.append(y[t, i])
            units.append(i)
        return np.concatenate(rows), np.concatenate(labels), np.concatenate(units)

    def fit(self, X_train: np.ndarray) -> "GLMPredictor":
        X = _as_binary(X_train)
        X = X[max(0, len(X) - self.max_fit_bins):]
        n_pos, n_neg = (int(n.sum()) for n in self._spike_counts(X))
        if n_pos == 0 or n_neg == 0:
            raise SpikevizError("the GLM needs both spikes and silent bins in its training stretch")
        half = self.max_samples // 2
        q_pos, q_neg = min(1.0, half / n_pos), min(1.0, half / n_neg)
        F, y, _ = self._sample(X, q_pos, q_neg)
        # A unit-variance prior on each standardised weight (l2 = variance on the raw scale).
        # Sampling positives at q_pos and negatives at q_neg shifts the log-odds by log(q_pos/q_neg).
        fit = fit_logistic(y, F, offset=np.log(q_pos / q_neg), l2=F.var(0, dtype=np.float64))
        self.coef_ = fit.coef.astype(np.float32)
        self.intercept_ = fit.intercept
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._checked(X)
        P = np.empty(X.shape, np.float32)
        for rows, feats in self._chunks(X):
            P[rows] = sigmoid(self.logit_of(feats))
        return P

    def _checked(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.coef_ is None:
            raise SpikevizError(f"the {self.name} baseline is not fitted: call fit(X_train) first")
        return X

    def _chunks(self, X: np.ndarray):
        """(rows, features of those rows) over X, _ROWS bins at a time."""
        for s in range(0, len(X), _ROWS):
            e = min(s + _ROWS, len(X))
            yield slice(s, e), self._features(X, s, e)

    def logit_of(self, feats: list[np.ndarray]) -> np.ndarray:
        """The logits (rows, N) float32 of features (rows, N) each, as `features_from` gives them."""
        return self._add_terms(np.full(feats[0].shape, self.intercept_, np.float32), feats, 0)

    def _add_terms(self, z: np.ndarray, feats: list[np.ndarray], lo: int, hi: int | None = None
                   ) -> np.ndarray:
        """z += the weighted features feats[lo:hi], each product written into one scratch array."""
        term = np.empty_like(z)
        for w, f in zip(self.coef_[lo:hi], feats[lo:hi]):
            z += np.multiply(f, w, out=term)
        return z


PARTNER_WINDOWS_MS = ((1, 2), (3, 10), (11, 30))   # a coupled unit's history windows
_POOLED_SAMPLES = 200_000       # cells the pooled prior of the per-unit GLMs is fitted on
PARTNER_SCREEN_MS = 10          # partners: best correlated spikes in the last 10 ms -> next bin


class UnitGLMPredictor(GLMPredictor):
    """Logistic regression per unit on the pooled GLM's features, shrunk towards the pooled fit.

    The pooled weights are fitted first, on every unit's sampled cells; each unit's weights are
    then w_pool + d_i with an L2 penalty `l2` on d_i (standardised features), so a 1 Hz unit with
    a few hundred spikes stays near the pooled model and a fast unit gets its own filter. Fitting
    samples at most `max_pos` spikes and `max_neg` silent cells per unit from the last
    `max_fit_bins` bins; each unit's intercept is corrected for its sampling rates. Weights are
    per column: predict on the units, in the order, it was fitted on.
    """

    name = "glm-unit"

    def __init__(self, bin_ms: float = 1.0, max_fit_bins: int = 300_000, max_pos: int = 2000,
                 max_neg: int = 6000, l2: float = 30.0, seed: int = 0):
        super().__init__(bin_ms, max_fit_bins, seed=seed)
        self.max_pos, self.max_neg, self.l2 = max_pos, max_neg, float(l2)

    def fit(self, X_train: np.ndarray) -> "UnitGLMPredictor":
        # Many small solves: BLAS threads only add overhead (and stall on a shared machine).
        with threadpool_limits(1, user_api="blas"):
            return self._fit(_as_binary(X_train))

    def _fit(self, X: np.ndarray) -> "UnitGLMPredictor":
        X = X[max(0, len(X) - self.max_fit_bins):]
        self._fit_structure(X)
        n_pos, n_neg = self._spike_counts(X)
        if not n_pos.any() or not n_neg.any():
            raise SpikevizError("the GLM needs both spikes and silent bins in its training stretch")
        q_pos = np.minimum(1.0, self.max_pos / np.maximum(n_pos, 1))
        q_neg = np.minimum(1.0, self.max_neg / np.maximum(n_neg, 1))
        F32, y, unit = self._sample(X, q_pos, q_neg)
        mean, scale = F32.mean(0), F32.std(0) + 1e-6
        # Standardised in place, then one float64 copy with the intercept's column: a million
        # rows here, and every extra copy is another few hundred MB to allocate.
        F32 -= mean
        F32 /= scale
        # The rows grouped by unit (in sampling order within a unit), so that each unit's fit
        # reads a slice, not a copy.
        order = np.argsort(unit, kind="stable")
        starts = np.searchsorted(unit[order], np.arange(X.shape[1] + 1))
        F = np.empty((len(F32), F32.shape[1] + 1))
        F[:, -1] = 1.0
        piece = 16 * _ROWS   # (copied in pieces: no float32 copy of the whole sample)
        for s in range(0, len(order), piece):
            F[s:s + piece, :-1] = F32[order[s:s + piece]]
        del F32
        y = y[order]
        # Sampling positives at q_pos and negatives at q_neg shifts the log-odds by log(q_pos/q_neg).
        shift = np.log(q_pos / q_neg)[unit[order]]
        # The pooled prior: a random subset of the rows, taken in sampling order.
        some = np.random.default_rng(self.seed).random(len(F)) < _POOLED_SAMPLES / len(F)
        row_of = np.empty_like(order)
        row_of[order] = np.arange(len(order))
        pooled_rows = row_of[np.flatnonzero(some)]
        prior = fit_logistic(y[pooled_rows], F[pooled_rows, :-1], offset=shift[pooled_rows], l2=1e-3)
        pooled = np.append(prior.coef, prior.intercept)
        W = np.tile(pooled, (X.shape[1], 1))
        for i in range(X.shape[1]):
            a, b = starts[i], starts[i + 1]
            if b > a:   # the unit's deviation d_i, its intercept's included, shrunk by l2
                Fi = F[a:b]
                W[i] += fit_logistic(y[a:b], Fi, offset=Fi @ pooled + shift[a:b], intercept=False,
                                     l2=self.l2).coef
        self.coef_ = (W[:, :-1] / scale).T.astype(np.float32)          # (features, units)
        self.intercept_ = (W[:, -1] - W[:, :-1] @ (mean / scale)).astype(np.float32)
        return self

    def _fit_structure(self, X: np.ndarray) -> None:
        """What the features need to know about the units before sampling (nothing here)."""

    def _checked(self, X: np.ndarray) -> np.ndarray:
        X = super()._checked(X)
        if len(self.intercept_) != X.shape[1]:
            raise SpikevizError(f"{self.name} fitted on {len(self.intercept_)} units, data has "
                                f"{X.shape[1]}")
        return X


class CoupledGLMPredictor(UnitGLMPredictor):
    """Per-unit GLM with coupling: the pooled GLM's features plus the recent spikes of each unit's
    `n_partners` best predictors among the other units (PARTNER_WINDOWS_MS), and population
    activity (already among the features). Partners are the units whose spike count over the last
    10 ms correlates best with the unit's next bin on the fitting stretch, so the model costs
    N x n_partners couplings instead of N^2."""

    name = "glm-coupled"

    def __init__(self, bin_ms: float = 1.0, n_partners: int = 4, **kwargs):
        super().__init__(bin_ms, **kwargs)
        self.n_partners = n_partners
        to_bins = lambda ms: max(1, int(round(ms / self.bin_ms)))  # noqa: E731
        self.partner_windows = [(to_bins(a), max(to_bins(a), to_bins(b)))
                                for a, b in PARTNER_WINDOWS_MS]
        self.partners_: np.ndarray | None = None

    @property
    def feature_names(self) -> list[str]:
        k = self.n_partners if self.partners_ is None else self.partners_.shape[1]
        return super().feature_names + [f"partner {m + 1} {a}-{b} ms" for a, b in PARTNER_WINDOWS_MS
                                        for m in range(k)]

    def _fit_structure(self, X: np.ndarray) -> None:
        N = X.shape[1]
        k = min(self.n_partners, N - 1)
        screen = max(1, int(round(PARTNER_SCREEN_MS / self.bin_ms)))
        # Correlation of S_j(t) (spikes of j in the last `screen` bins) with X_i[t+1].
        SY = np.zeros((N, N))
        S1, S2, Y1 = np.zeros(N), np.zeros(N), np.zeros(N)
        for s in range(0, len(X) - 1, _ROWS):
            e = min(s + _ROWS, len(X) - 1)
            S = self._window_sums(X, s, e, reach=screen).counts(1, screen)
            y = X[s + 1:e + 1].astype(np.float32)
            SY += S.T @ y
            S1 += S.sum(0)
            S2 += (S.astype(np.float64) ** 2).sum(0)
            Y1 += y.sum(0)
        n = len(X) - 1
        cov = SY / n - np.outer(S1 / n, Y1 / n)
        sd_s = np.sqrt(np.maximum(S2 / n - (S1 / n) ** 2, 0))
        sd_y = np.sqrt(np.maximum(Y1 / n - (Y1 / n) ** 2, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(cov / np.outer(sd_s, sd_y), nan=-np.inf)
        np.fill_diagonal(corr, -np.inf)
        # partners[i]: the k units j whose past best predicts unit i.
        self.partners_ = np.argsort(-corr, axis=0, kind="stable")[:k].T.copy()

    def features_from(self, window: WindowSums, n_units: int) -> list[np.ndarray]:
        feats = self._own_features(window, n_units)
        for a, b in self.partner_windows:
            feats += window.partner_rates(a, b, self.partners_)
        return feats

    def logit_parts(self, X: np.ndarray, columns: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(z, z_partners), (T, N) float32 each: the logits whose sigmoid `predict` gives, and
        the part of them the partners' recent spikes contribute (a blend weighs the two parts
        apart: generation.blend). `columns`: X's columns in that order (taken chunk by chunk:
        no window-sized copies)."""
        X = self._checked(X)
        cols = slice(None) if columns is None else np.asarray(columns, dtype=np.intp)
        shape = (len(X), X.shape[1] if columns is None else len(cols))
        Z, C = np.empty(shape, np.float32), np.empty(shape, np.float32)
        for rows, feats in self._chunks(X):
            z, c = self._logit_and_partners(feats)
            Z[rows], C[rows] = z[:, cols], c[:, cols]
        return Z, C

    def logit_of(self, feats: list[np.ndarray]) -> np.ndarray:
        return self._logit_and_partners(feats)[0]

    def _logit_and_partners(self, feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The logits and the partners' part of them, summed once: predict's logits and
        logit_parts' are the same floats."""
        first = len(feats) - len(self.partner_windows) * self.partners_.shape[1]
        c = self._add_terms(np.zeros(feats[0].shape, np.float32), feats, first)
        z = self._add_terms(np.full(feats[0].shape, self.intercept_, np.float32), feats, 0, first)
        z += c
        return z, c
