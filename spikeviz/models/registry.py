"""Every predictor fitted on a target, by name: the baselines and the population models (apart from baselines.py, which then loads without torch)."""
from __future__ import annotations

import numpy as np

from ..errors import SpikevizError
from .baselines import PREDICTORS, make_baseline
from .stack import StackPredictor
from .states import PopulationStates


def make_predictor(name: str, bin_ms: float = 1.0):
    """A fresh predictor to fit on the target, by name (one of baselines.PREDICTORS)."""
    if name not in PREDICTORS:
        raise SpikevizError(f"unknown baseline {name!r}: use one of {', '.join(PREDICTORS)}")
    if name == "stack":
        return StackPredictor(bin_ms=bin_ms)
    if name == "states":
        return PopulationStates(bin_ms=bin_ms)
    return make_baseline(name, bin_ms)


def fitted_arrays(predictor) -> dict[str, np.ndarray] | None:
    """A fitted predictor's state: its attributes ending in `_` (scikit-learn's convention), as
    arrays; None when some of it is neither an array nor a number (a network, a fitted PCA)."""
    state = {k: v for k, v in vars(predictor).items() if k.endswith("_") and not k.startswith("_")}
    if not all(isinstance(v, (np.ndarray, np.number, int, float)) for v in state.values()):
        return None
    return {k: np.asarray(v) for k, v in state.items()}


def from_fitted_arrays(name: str, arrays: dict[str, np.ndarray], bin_ms: float = 1.0):
    """The predictor `name` with the state `fitted_arrays` took from one fitted the same way."""
    predictor = make_predictor(name, bin_ms)
    for k, v in arrays.items():
        setattr(predictor, k, v.item() if v.ndim == 0 else v)
    return predictor
