"""The causal exponential filter that the model's traces and the EWMA baselines share: y[t] = a y[t-1] + (1 - a) x[t], compiled."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _run(x, a, y, out):
    b = 1.0 - a
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[j] = a * y[j] + b * x[t, j]
            out[t, j] = y[j]


def exponential_filter(X: np.ndarray, a: float, state: np.ndarray | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
    """y (T, N) float32 with y[t] = a y[t-1] + (1 - a) X[t], into `out` (any float32 (T, N)
    array or view) when given; returned.

    Computed in float64 as scipy.signal.lfilter computes it (the same numbers to the bit) but
    without its import (1.5 s of every fresh process) or a float64 copy of X. `state` (N,)
    float64 holds y[-1] (zeros when None) and is left holding y[T-1], so long data can be
    filtered in consecutive pieces with the same result.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"the filter takes a (T, N) matrix, got shape {X.shape}")
    out = np.empty(X.shape, np.float32) if out is None else out
    if state is None:
        state = np.zeros(X.shape[1])
    _run(X, float(a), state, out)
    return out
