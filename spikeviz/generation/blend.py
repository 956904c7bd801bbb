"""A model blended with its target's own coupled GLM: logit = a z_model + b z_own + d z_partners + c (the GLM's logit z_glm = z_own + z_partners), with (a, b, d, c) fitted on the stretch's warm-up as a generalist's guard is."""
from __future__ import annotations

import numpy as np

from ..errors import SpikevizError
from ..measures.scoring import aligned
from ..models.logistic import sigmoid
from .adapt import fit_guard
from .logits import logits

_ROWS = 8192   # bins a block of the blend's sum takes


class GLMBlend:
    """A model's next-bin predictions and those of the coupled GLM fitted on the target's own
    train split, as one predictor.

    The two are good at different things (docs/corpus_generalist.md): a generalist at the rates
    and histories it learned across labs, the GLM at the target's own couplings. The GLM's logit
    is weighed in two parts: what its partners' recent spikes contribute (z_partners), which the
    model cannot know, and the rest (z_own: the unit's own history and the population's), which
    the model mostly knows too; one weight for the whole GLM let a preparation whose partners
    predict sharply lose them to the model's overlap (Aplysia Jun0414B: 0.74x the GLM's PR-AUC
    blended as one, 1.01x in two parts). The weights (a, b, d, c) are fitted by the guard's
    solver (adapt.fit_guard) on the rows [lo, hi) of the stretch predicted (its warm-up: row t
    predicts bin t + 1 from bins up to t, so no scored bin is read), at every `predict`;
    `weights_` holds the last ones. The GLM has no part in a free run: `model` is the model
    alone, which free runs use (pipeline.free_trains).

    `base` is the model as a predictor (ModelPredictor) over the stretch's columns in the model's
    order; `glm` (its `logit_parts`: glm.CoupledGLMPredictor) predicts the recording's order, and
    `columns[j]` is the recording's column of the model's column j.
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
        self.weights_: tuple[float, float, float, float] | None = None

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
        # The GLM's parts in the model's column order; `glm` may keep them (the page's baseline
        # row reads the same computation), so they are never written here.
        z_glm, z_partners = self.glm.logit_parts(recorded, self.columns)
        rows = slice(self.lo, self.hi)
        y, _ = aligned(z_model[rows], X[rows])
        parts = [aligned(z, X[rows])[1]
                 for z in (z_model[rows], z_glm[rows] - z_partners[rows], z_partners[rows])]
        # Too few warm-up spikes to weigh them: the model alone.
        a, b, d, c = fit_guard(parts, y, seed=self.seed, fallback=(1.0, 0.0, 0.0, 0.0))
        self.weights_ = (a, b, d, c)
        # a z_model + b z_own + d z_partners + c, in that order, in place, a block of rows at a
        # time: no window-sized z_own beside the GLM's two parts.
        for s in range(0, len(z_model), _ROWS):
            r = slice(s, s + _ROWS)
            z, z_own = z_model[r], z_glm[r] - z_partners[r]
            z *= np.float32(a)
            z_own *= np.float32(b)
            z += z_own
            np.multiply(z_partners[r], np.float32(d), out=z_own)
            z += z_own
            z += np.float32(c)
        return sigmoid(z_model, out=z_model)
