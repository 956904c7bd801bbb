"""Logit maps: the per-unit affine map every calibration step is, and the one logistic solver that fits them.

A model's raw logits reach a draw through a stack of maps:

  raw --Platt (after training)--> --target (on the warm-up: 1/temperature, per-unit offsets)-->
      --tempering about the warm-up's mean (free runs)--> --closed-loop shift (free runs)--> p

Each stage is a `LogitMap` and the stack is their composition (`then`), so a free run gets one
gain and one bias (spikeviz.generation.calibration.free_affine). `fit_logistic` fits Platt, the
temperature and the offsets, and a generalist's guard, which maps (base, correction) to its raw
logit before all of them (spikeviz.generation.adapt); the tempering follows from the guard's
base slope and the closed-loop shift from free runs (calibration.fit_free_running); a free
run's rate controller (calibration.RateController) moves the final shift while it runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpikevizError

MAX_ITER = 100
# Where every probability saturates the Hessian vanishes and a Newton step runs to ~1e12:
# enough halvings to bring that back to a fraction of a logit.
MAX_HALVINGS = 60
# Converged when a full Newton step would gain less than half this in log-posterior: closer
# than float64 resolves the objective, and in the quadratic region where the full step is safe.
TOL = 1e-10
# The objective is a sum of n non-negative terms, exact to a few ulps of itself.
F_ROUNDING = 4 * np.finfo(np.float64).eps


@dataclass(frozen=True, eq=False)
class LogitMap:
    """z -> scale * z + shift, per unit ((N,) arrays) or shared (scalars)."""

    scale: np.ndarray | float = 1.0
    shift: np.ndarray | float = 0.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.scale * z + self.shift

    def then(self, after: LogitMap) -> LogitMap:
        """`after` applied to this map's output: one affine map."""
        return LogitMap(after.scale * self.scale, after.scale * self.shift + after.shift)

    @staticmethod
    def tempering(factor: float, centre: np.ndarray) -> LogitMap:
        """Slopes multiplied by `factor` about `centre`, which stays where it is."""
        return LogitMap(factor, (1.0 - factor) * np.asarray(centre, np.float64))


@dataclass(frozen=True, eq=False)
class LogisticFit:
    """logit P(y = 1) = features @ coef + intercept + deviations[group] + offset."""

    coef: np.ndarray
    intercept: float
    deviations: np.ndarray


def fit_logistic(y: np.ndarray, features: np.ndarray | None = None, *,
                 offset: np.ndarray | float = 0.0, intercept: bool = True,
                 groups: np.ndarray | None = None, n_groups: int = 0,
                 prior_sd: float | None = None) -> LogisticFit:
    """Maximum a posteriori logistic regression by Newton steps, each halved until the
    log-posterior rises (it is concave, so the fit ends at its one maximum).

    y (n,) 0/1; features (n, k) or None; `offset` (n,) or scalar, a fixed part of every logit (a
    subsample of the silent rows kept with probability q is corrected by an offset -log q);
    `groups` (n,) in [0, n_groups): each group's deviation from the intercept has a
    N(0, prior_sd^2) prior. Features are standardised inside (the coefficients come back on
    their scale). The deviations' block of the Hessian is diagonal, so each step solves the
    dense block through its Schur complement: O(n) per step for any number of groups.

    Each trial point costs one pass of exp(-|u|) over the logits u, which gives the objective
    (with log1p) and, once the point is accepted, the gradient and Hessian (with one
    division): a full step that improves is one pass. Groups laid out as the rows of a (T,
    n_groups) table (np.tile(np.arange(n_groups), T), a raveled (time, unit) matrix) are summed
    and spread by reshaping instead of bincount and gathers.
    """
    y = np.asarray(y, np.float64).ravel()
    n = y.size
    F = np.zeros((n, 0)) if features is None else np.asarray(features, np.float64).reshape(n, -1)
    off = np.asarray(offset, np.float64)
    if off.ndim:
        off = np.broadcast_to(off, (n,))
    if n == 0 or not ((y == 0) | (y == 1)).all():
        raise SpikevizError(f"a logistic fit needs labels of 0 and 1, got {n} values"
                            + ("" if n == 0 else f" in [{y.min()}, {y.max()}]"))
    if (groups is None) != (prior_sd is None) or (prior_sd is not None and prior_sd <= 0):
        raise SpikevizError("group deviations need a positive prior_sd, and a prior_sd needs groups")
    if groups is not None and (np.shape(groups) != (n,) or n_groups < 1 or
                               np.min(groups) < 0 or np.max(groups) >= n_groups):
        raise SpikevizError(f"groups must be {n} labels in [0, n_groups = {n_groups})")
    if intercept and y.min() == y.max():
        raise SpikevizError("a fitted intercept needs both 0 and 1 labels (else it is infinite)")
    kf = F.shape[1]
    mu = F.mean(0) if intercept else np.zeros(kf)
    sd = F.std(0) if intercept else np.sqrt((F ** 2).mean(0))
    sd[sd == 0] = 1.0
    # Dense block: the standardised features as rows (kf, n), then the intercept (a constant,
    # never stored).
    Fs = np.ascontiguousarray(((F - mu) / sd).T)
    k = kf + intercept
    G = n_groups if groups is not None else 0
    prec = 0.0 if prior_sd is None else 1.0 / prior_sd ** 2
    if k + G == 0:
        raise SpikevizError("a logistic fit needs features, an intercept or groups to fit")
    g_idx = None if groups is None else np.asarray(groups, np.intp)
    tiled = bool(G and n % G == 0 and (g_idx.reshape(-1, G) == np.arange(G)).all())

    def group_sum(x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, G).sum(0) if tiled else np.bincount(g_idx, x, G)

    s = 1.0 - 2.0 * y   # -log-likelihood of a row: softplus(s u)
    ym = y - 0.5
    u, e, b1, b2, b3 = (np.empty(n) for _ in range(5))
    WF = np.empty((kf, n))

    def objective(theta: np.ndarray) -> float:
        """-log-posterior at theta; leaves its logits in u and exp(-|u|) in e."""
        if kf:
            np.matmul(theta[:kf], Fs, out=u)
            np.add(u, off, out=u)
        else:
            u[:] = off
        if intercept:
            np.add(u, theta[kf], out=u)
        if G:
            if tiled:
                np.add(u.reshape(-1, G), theta[k:], out=u.reshape(-1, G))
            else:
                np.add(u, theta[k:][g_idx], out=u)
        np.abs(u, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)
        np.log1p(e, out=b1)
        np.multiply(s, u, out=b2)
        np.maximum(b2, 0.0, out=b2)
        np.add(b1, b2, out=b1)
        return float(b1.sum()) + 0.5 * prec * float(theta[k:] @ theta[k:])

    def derivatives(theta: np.ndarray):
        """Gradient and Hessian blocks of the log-posterior at the point objective() last saw."""
        np.add(e, 1.0, out=b1)
        np.divide(1.0, b1, out=b1)          # sigmoid(|u|)
        np.multiply(e, b1, out=b2)          # sigmoid(-|u|)
        np.multiply(b2, b1, out=b3)         # w = p (1 - p)
        np.subtract(0.5, b2, out=b2)
        np.copysign(b2, u, out=b2)
        np.subtract(ym, b2, out=b2)         # r = y - p
        r, w = b2, b3
        g_a, H_aa = np.empty(k), np.empty((k, k))
        if kf:
            np.multiply(Fs, w, out=WF)
            g_a[:kf] = Fs @ r
            H_aa[:kf, :kf] = WF @ Fs.T
        if intercept:
            g_a[kf] = r.sum()
            H_aa[kf, kf] = w.sum()
            if kf:
                H_aa[:kf, kf] = H_aa[kf, :kf] = WF.sum(1)
        g_d, h_d, H_ad = np.zeros(0), np.zeros(0), np.zeros((k, 0))
        if G:
            g_d = group_sum(r) - prec * theta[k:]
            w_d = group_sum(w)
            h_d = w_d + prec
            H_ad = np.empty((k, G))
            for j in range(kf):
                H_ad[j] = group_sum(WF[j])
            if intercept:
                H_ad[kf] = w_d
        return g_a, H_aa, g_d, h_d, H_ad

    # From slope 0 at the mean rate, where the Hessian is well conditioned (a start at slope 1
    # saturated every probability when the logits do not predict the spikes, and Newton stalled).
    theta = np.zeros(k + G)
    if intercept:
        m = y.mean()
        theta[k - 1] = np.log(m / (1 - m)) - off.mean()
    f = objective(theta)
    for _ in range(MAX_ITER):
        g_a, H_aa, g_d, h_d, H_ad = derivatives(theta)
        S = H_aa - (H_ad / h_d) @ H_ad.T
        step_a = np.linalg.solve(S + 1e-9 * np.eye(k), g_a - H_ad @ (g_d / h_d))
        step = np.concatenate([step_a, (g_d - H_ad.T @ step_a) / h_d])
        decrement = float(np.concatenate([g_a, g_d]) @ step)
        if decrement < TOL:
            theta = theta + step
            break
        for _ in range(MAX_HALVINGS):
            f_new = objective(theta + step)
            # A rise within the objective's rounding (a few ulps of the sum) is no rise.
            if f_new <= f + F_ROUNDING * f:
                break
            step = step / 2
        else:   # no shorter step improves it: the optimum is as close as float64 resolves
            break
        theta, f = theta + step, f_new
    coef = theta[:kf] / sd
    return LogisticFit(coef, float(theta[k - 1] - coef @ mu) if intercept else 0.0, theta[k:])
