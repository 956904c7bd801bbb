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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large negative logits.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


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
    """
    y = np.asarray(y, np.float64).ravel()
    n = y.size
    F = np.zeros((n, 0)) if features is None else np.asarray(features, np.float64).reshape(n, -1)
    off = np.broadcast_to(np.asarray(offset, np.float64), (n,))
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
    mu = F.mean(0) if intercept else np.zeros(F.shape[1])
    sd = F.std(0) if intercept else np.sqrt((F ** 2).mean(0))
    sd[sd == 0] = 1.0
    # Dense block: standardised features, then the intercept's column of ones.
    A = np.hstack(((F - mu) / sd, np.ones((n, 1)))) if intercept else F / sd
    g_idx = np.zeros(n, np.intp) if groups is None else np.asarray(groups, np.intp)
    G = n_groups if groups is not None else 0
    prec = 0.0 if prior_sd is None else 1.0 / prior_sd ** 2
    k = A.shape[1]
    if k + G == 0:
        raise SpikevizError("a logistic fit needs features, an intercept or groups to fit")

    def logit(theta: np.ndarray) -> np.ndarray:
        return A @ theta[:k] + off + (theta[k:][g_idx] if G else 0.0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:   # -log-posterior, logits
        u = logit(theta)
        return float(np.logaddexp(0.0, u).sum() - y @ u + 0.5 * prec * theta[k:] @ theta[k:]), u

    # From slope 0 at the mean rate, where the Hessian is well conditioned (a start at slope 1
    # saturated every probability when the logits do not predict the spikes, and Newton stalled).
    theta = np.zeros(k + G)
    if intercept:
        m = y.mean()
        theta[k - 1] = np.log(m / (1 - m)) - off.mean()
    f, u = objective(theta)
    for _ in range(MAX_ITER):
        p = _sigmoid(u)
        r, w = y - p, p * (1 - p)
        # Gradient and Hessian of the log-posterior in blocks: dense (a) and diagonal (d).
        g_a, H_aa = A.T @ r, (A * w[:, None]).T @ A
        g_d, h_d, H_ad = np.zeros(0), np.zeros(0), np.zeros((k, 0))
        if G:
            g_d = np.bincount(g_idx, r, G) - prec * theta[k:]
            h_d = np.bincount(g_idx, w, G) + prec
            H_ad = np.array([np.bincount(g_idx, w * col, G) for col in A.T]).reshape(k, G)
        S = H_aa - (H_ad / h_d) @ H_ad.T
        step_a = np.linalg.solve(S + 1e-9 * np.eye(k), g_a - H_ad @ (g_d / h_d))
        step = np.concatenate([step_a, (g_d - H_ad.T @ step_a) / h_d])
        if np.concatenate([g_a, g_d]) @ step < TOL:
            theta = theta + step
            break
        for _ in range(MAX_HALVINGS):
            f_new, u_new = objective(theta + step)
            if f_new <= f:
                break
            step = step / 2
        else:   # no shorter step improves it: the optimum is as close as float64 resolves
            break
        theta, f, u = theta + step, f_new, u_new
    coef = theta[:F.shape[1]] / sd
    return LogisticFit(coef, float(theta[k - 1] - coef @ mu) if intercept else 0.0, theta[k:])
