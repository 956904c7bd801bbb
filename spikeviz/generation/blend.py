"""A model blended with its target's own coupled GLM: logit = a z_model + b z_glm + c, with (a, b, c) fitted on the stretch's warm-up as a generalist's guard is."""
from __future__ import annotations

import numpy as np

from ..errors import SpikevizError
from ..measures.scoring import aligned
from .adapt import fit_guard
from .logits import logits


class GLMBlend:
    """A model's next-bin predictions and those of the coupled GLM fitted on the target's own
    train split, as one predictor.

    The two are good at different things (docs/corpus_generalist.md): a generalist at the rates
    and histories it learned across labs, the GLM at the target's own couplings. The weights
    (a, b, c) are fitted by the guard's solver (adapt.fit_guard) on the rows [lo, hi) of the
    stretch predicted (its warm-up: row t predicts bin t + 1 from bins up to t, so no scored bin
    is read), at every `predict`; `weights_` holds the last ones. The GLM has no part in a free
    run: `model` is the model alone, which free runs use (pipeline.free_trains).

    `base` is the model as a predictor (ModelPredictor) over the stretch's columns in the model's
    order; `glm` predicts the recording's order, and `columns[j]` is the recording's column of
    the model's column j.
    """

    def __init__(self, base, glm, columns: np.ndarray, lo: int, hi: int, seed: int = 0):
        columns = np.asarray(columns, dtype=np.intp)
        if sorted(columns.tolist()) != list(range(len(columns))):
            raise SpikevizError(f"a blend's columns must be a permutation, got {columns.tolist()}")
        if not 0 <= lo < hi - 1:
            raise SpikevizError(f"a blend is fitted on warm-up rows [lo, hi), got [{lo}, {hi})")
        self.base, self.glm, self.columns = base, glm, columns
        self.lo, self.hi, self.seed = lo, hi, seed
        self.name = f"{base.name} + glm-coupled"
        self.weights_: tuple[float, float, float] | None = None

    @property
    def model(self):
        return self.base.model

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.columns) or len(X) < self.hi:
            raise SpikevizError(f"a blend fitted for {len(self.columns)} units and a warm-up to "
                                f"row {self.hi} cannot predict a {X.shape} matrix")
        # In float32: a window's worth of float64 logarithms and exponentials cost a page 0.3 s.
        z_model = logits(self.base.predict(X), np.float32)
        recorded = np.empty_like(X)
        recorded[:, self.columns] = X
        z_glm = logits(self.glm.predict(recorded), np.float32)[:, self.columns]
        rows = slice(self.lo, self.hi)
        y, m = aligned(z_model[rows], X[rows])
        _, g = aligned(z_glm[rows], X[rows])
        # Too few warm-up spikes to weigh them: the model alone.
        a, b, c = fit_guard(m, g, y, seed=self.seed, fallback=(1.0, 0.0, 0.0))
        self.weights_ = (a, b, c)
        z = np.float32(a) * z_model + np.float32(b) * z_glm + np.float32(c)
        with np.errstate(over="ignore"):   # a logit under -88 is a probability of 0
            return 1.0 / (1.0 + np.exp(-z))
