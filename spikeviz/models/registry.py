"""Every predictor fitted on a target, by name: the baselines and the population models (apart from baselines.py, which then loads without torch)."""
from __future__ import annotations

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
