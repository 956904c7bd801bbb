"""Logit maps: the per-unit affine map every calibration step is.

A model's raw logits reach a draw through a stack of maps:

  raw --Platt (after training)--> --target (on the warm-up: 1/temperature, per-unit offsets)-->
      --tempering about the warm-up's mean (free runs)--> --closed-loop shift (free runs)--> p

Each stage is a `LogitMap` and the stack is their composition (`then`), so a free run gets one
gain and one bias (spikeviz.generation.calibration.free_affine). The one logistic solver
(spikeviz.models.logistic.fit_logistic) fits Platt, the temperature and the offsets, and a
generalist's guard, which maps (base, correction) to its raw logit before all of them
(spikeviz.generation.adapt), and the weights of a generalist's blend with its target's coupled
GLM, which maps (model logit, the GLM's logit in two parts: its coupled partners' share and
the rest) to the teacher-forced logit before the target map
(spikeviz.generation.blend, never in a free run); the tempering follows from the guard's base
slope and the closed-loop shift from free runs (calibration.fit_free_running); a free run's
rate controller (calibration.RateController) moves the final shift while it runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def logits(P: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Probabilities -> logits (float64, or `dtype`), clipped away from 0 and 1. In place on one
    copy and one temporary: a window's worth held five arrays at once (np.log(P / (1 - P)))."""
    z = P.astype(dtype)               # always a copy: the caller's P is never written
    np.clip(z, 1e-7, 1 - 1e-7, out=z)
    odds = 1 - z
    np.divide(z, odds, out=z)
    del odds
    return np.log(z, out=z)
