"""The predictor interface shared by the model and the baselines, and the chronological split."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

# Chronological: the model is tuned on what comes after its training bins, scored on what comes last.
SPLIT_FRACTIONS = {"train": (0.0, 0.5), "valid": (0.5, 0.75), "test": (0.75, 1.0)}
SPLIT_NAME = "train 0-50 %, valid 50-75 %, test 75-100 % (chronological)"


def split_bounds(n_bins: int) -> dict[str, tuple[int, int]]:
    """Bin ranges of the chronological split: first 50 % train, next 25 % validation, last 25 % test."""
    return {name: (int(round(a * n_bins)), int(round(b * n_bins)))
            for name, (a, b) in SPLIT_FRACTIONS.items()} | {"all": (0, n_bins)}


@runtime_checkable
class Predictor(Protocol):
    """Anything that gives next-bin spike probabilities from the past.

    `predict(X)` takes a binary (T, N) matrix and returns float32 P of the same shape with
    P[t] = p(X[t+1] = 1 | X[0..t]): row t never depends on rows after t. `fit(X_train)` learns
    what it needs from a training stretch (a no-op for training-free predictors) and returns self.
    """

    name: str

    def fit(self, X_train: np.ndarray) -> "Predictor": ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...
