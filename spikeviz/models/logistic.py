"""The one logistic solver: maximum a posteriori logistic regression by Newton steps, for the GLM baselines and every calibration stage."""
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
# A Newton step that moves no logit by more than this raises the log-posterior by at least 0.28
# of its decrement: along it |third derivative| <= max |logit change| x |second derivative|
# (a logistic row's |p (1 - p) (1 - 2p)| <= p (1 - p)), so the curvature grows at most e-fold
# and at most e - 2 = 0.72 of the decrement is lost.
SURE_STEP = 1.0
# The objective is a sum of n non-negative terms, exact to a few ulps of itself.
F_ROUNDING = 4 * np.finfo(np.float64).eps


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Probabilities of logits, in their dtype (a float32 logit under -88 is a probability of 0);
    `out=z` computes them in place (a window's worth: no temporaries)."""
    with np.errstate(over="ignore"):
        if out is None:
            return 1.0 / (1.0 + np.exp(-z))
        np.negative(z, out=out)
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)


@dataclass(frozen=True, eq=False)
class LogisticFit:
    """logit P(y = 1) = features @ coef + intercept + deviations[group] + offset."""

    coef: np.ndarray
    intercept: float
    deviations: np.ndarray


def fit_logistic(y: np.ndarray, features: np.ndarray | None = None, *,
                 offset: np.ndarray | float = 0.0, intercept: bool = True,
                 groups: np.ndarray | None = None, n_groups: int = 0,
                 prior_sd: float | None = None, l2: np.ndarray | float = 0.0,
                 start: LogisticFit | None = None,
                 weights: np.ndarray | None = None) -> LogisticFit:
    """Maximum a posteriori logistic regression by Newton steps, each halved until the
    log-posterior rises (it is concave, so the fit ends at its one maximum).

    y (n,) 0/1; features (n, k) or None; `offset` (n,) or scalar, a fixed part of every logit (a
    subsample of the silent rows kept with probability q is corrected by an offset -log q);
    `groups` (n,) in [0, n_groups): each group's deviation from the intercept has a
    N(0, prior_sd^2) prior. `l2` (scalar or (k,)): a ridge penalty l2 |coef|^2 / 2 on the
    coefficients on the features' own scale (a N(0, 1/l2) prior; the intercept has none).
    Features are standardised inside (the coefficients come back on their scale). The deviations' block of the Hessian is diagonal, so each step solves the
    dense block through its Schur complement: O(n) per step for any number of groups.
    `start`: where the Newton steps begin (a fit of the same shape, e.g. a nearby problem's);
    the maximum is unique, so it changes how many steps there are, not where they end.
    `weights` (n,) > 0: each row counts as that many (rows kept with probability q weigh 1/q:
    the fit of the rows sampled is then the full data's, model right or wrong).

    Each point costs one exp(-|u|) over its logits u, which gives the gradient and Hessian
    there (and the objective, with log1p, when a step must be checked). A full step that moves
    no logit by more than SURE_STEP is taken unchecked (it is sure to improve): near the
    maximum, where most steps are, one pass per step and no objective. Groups laid out as the
    rows of a (T, n_groups) table (np.tile(np.arange(n_groups), T): a raveled (time, unit)
    matrix) are summed and spread by reshaping instead of bincount and gathers.
    """
    y = np.asarray(y).ravel()   # checked as given (spikes are often uint8), used as y - 1/2
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
    l2 = np.asarray(l2, np.float64)
    if np.any(l2 < 0) or (l2.ndim and l2.shape != (F.shape[1],)):
        raise SpikevizError(f"l2 must be >= 0, one value or one per feature ({F.shape[1]})")
    if weights is not None:
        weights = np.asarray(weights, np.float64).ravel()
        if weights.shape != (n,) or not (weights > 0).all():
            raise SpikevizError(f"weights must be {n} positive values")
    if intercept and y.min() == y.max():
        raise SpikevizError("a fitted intercept needs both 0 and 1 labels (else it is infinite)")
    kf = F.shape[1]
    mu = F.mean(0) if intercept else np.zeros(kf)
    sd = F.std(0) if intercept else np.sqrt((F ** 2).mean(0))
    sd[sd == 0] = 1.0
    ridge = np.broadcast_to(l2 / sd ** 2, (kf,))   # the penalty on the standardised scale
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

    # r = y - p = (y - 1/2) - (p - 1/2): the sums of y - 1/2 once, of p - 1/2 at each point.
    ym = np.subtract(y, 0.5, dtype=np.float64)
    sym = ym if weights is None else ym * weights   # (y - 1/2) as the gradient counts it
    ym_d = group_sum(sym) if G else np.zeros(0)
    ym_a = np.concatenate([Fs @ sym, [ym_d.sum() if G else sym.sum()] if intercept else []])
    u, e, b1, b2 = (np.empty(n) for _ in range(4))
    WF = np.empty((kf, n))

    def point(theta: np.ndarray) -> None:
        """The logits u at theta and exp(-|u|) in e: all the objective and the derivatives need."""
        c = (theta[kf] if intercept else 0.0) + (0.0 if off.ndim else float(off))
        src = off if off.ndim else None   # the part of u that is not a constant or a group's
        if kf:
            np.matmul(theta[:kf], Fs, out=u)
            if off.ndim:
                np.add(u, off, out=u)
            src = u
        if tiled:   # the constant and the deviations as one row added to every time step
            row = c + theta[k:]
            if src is None:
                u.reshape(-1, G)[:] = row
            else:
                np.add(src.reshape(-1, G), row, out=u.reshape(-1, G))
        else:
            if src is None:
                u.fill(c)
            else:
                np.add(src, c, out=u)
            if G:
                np.add(u, theta[k:][g_idx], out=u)
        np.copysign(u, -1.0, out=e)
        np.exp(e, out=e)

    def objective(theta: np.ndarray) -> float:
        """-log-posterior at theta, the point() last seen."""
        # A row's -log-likelihood, softplus((1 - 2y) u) = log1p(exp(-|u|)) + 2 max(-(y - 1/2) u, 0).
        np.log1p(e, out=b1)
        np.multiply(ym, u, out=b2)
        np.minimum(b2, 0.0, out=b2)
        if weights is not None:
            np.subtract(b1, 2.0 * b2, out=b1)
            nll = float(weights @ b1)
        else:
            nll = float(b1.sum()) - 2.0 * float(b2.sum())
        return nll + 0.5 * prec * float(theta[k:] @ theta[k:]) + 0.5 * float(ridge @ theta[:kf] ** 2)

    def derivatives(theta: np.ndarray):
        """Gradient and Hessian blocks of the log-posterior at theta, the point() last seen."""
        np.add(e, 1.0, out=b1)
        np.divide(e, b1, out=b2)            # sigmoid(-|u|)
        np.divide(b2, b1, out=b1)           # w = p (1 - p) = e / (1 + e)^2
        np.subtract(0.5, b2, out=b2)
        np.copysign(b2, u, out=b2)          # p - 1/2
        if weights is not None:
            np.multiply(b1, weights, out=b1)
            np.multiply(b2, weights, out=b2)
        pc, w = b2, b1
        g_a, H_aa = ym_a.copy(), np.empty((k, k))
        if kf:
            np.multiply(Fs, w, out=WF)
            g_a[:kf] -= Fs @ pc + ridge * theta[:kf]
            H_aa[:kf, :kf] = WF @ Fs.T
            H_aa[:kf, :kf] += np.diag(ridge)
        g_d, h_d, H_ad = np.zeros(0), np.zeros(0), np.zeros((k, 0))
        if G:
            pc_d, w_d = group_sum(pc), group_sum(w)
            g_d = ym_d - pc_d - prec * theta[k:]
            h_d = w_d + prec
            H_ad = np.empty((k, G))
            for j in range(kf):
                H_ad[j] = group_sum(WF[j])
            if intercept:
                H_ad[kf] = w_d
        if intercept:   # with groups, the sums of their sums
            g_a[kf] -= pc_d.sum() if G else pc.sum()
            H_aa[kf, kf] = w_d.sum() if G else w.sum()
            if kf:
                H_aa[:kf, kf] = H_aa[kf, :kf] = WF.sum(1)
        return g_a, H_aa, g_d, h_d, H_ad

    # From slope 0 at the mean rate, where the Hessian is well conditioned (a start at slope 1
    # saturated every probability when the logits do not predict the spikes, and Newton stalled).
    theta = np.zeros(k + G)
    if start is not None:
        if np.shape(start.coef) != (kf,) or np.shape(start.deviations) != (G,):
            raise SpikevizError(f"a start needs {kf} coefficients and {G} deviations")
        theta[:kf] = np.asarray(start.coef, np.float64) * sd
        if intercept:
            theta[kf] = start.intercept + float(np.asarray(start.coef, np.float64) @ mu)
        theta[k:] = start.deviations
    elif intercept:
        total = n if weights is None else weights.sum()
        m = ym_a[-1] / total + 0.5
        theta[k - 1] = np.log(m / (1 - m)) - off.mean()
    # How far a step can move any logit: Newton's full step is sure to raise the log-posterior
    # when it moves none by more than 1 (then no objective is needed to accept it).
    reach = np.abs(Fs).max(1) if n else np.zeros(kf)
    point(theta)
    f = None   # the objective at theta, once needed
    for _ in range(MAX_ITER):
        g_a, H_aa, g_d, h_d, H_ad = derivatives(theta)
        S = H_aa - (H_ad / h_d) @ H_ad.T
        step_a = np.linalg.solve(S + 1e-9 * np.eye(k), g_a - H_ad @ (g_d / h_d))
        step = np.concatenate([step_a, (g_d - H_ad.T @ step_a) / h_d])
        decrement = float(np.concatenate([g_a, g_d]) @ step)
        if decrement < TOL:
            theta = theta + step
            break
        shared = step[kf] if intercept else 0.0
        moves = float(np.abs(step[:kf]) @ reach) + (float(np.abs(shared + step[k:]).max()) if G
                                                    else abs(shared))
        if moves <= SURE_STEP:
            theta = theta + step
            point(theta)
            f = None
            continue
        if f is None:
            f = objective(theta)
        for _ in range(MAX_HALVINGS):
            point(theta + step)
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
