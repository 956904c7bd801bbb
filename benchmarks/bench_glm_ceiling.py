"""How far above the coupled GLM can any predictor of the same history get? (issue #27, in vitro)

    python benchmarks/bench_glm_ceiling.py [--recordings NAME,...] [--seconds 40]

(NAME: a bundled session or a corpus recording of ../shared/data/corpus; default: the two slices.)

On the HD-MEA slices no model here (generalist, blend, stack) ranks bins more than about 1.02x
better than glm-coupled. This asks whether the GLM's inputs hold more than it uses. On
`spikeviz evaluate`'s stretch (strict protocol, the first --seconds of the test split after the
30-s warm-up; glm-coupled fitted on the recording's train split), against glm-coupled:

- richer coupled GLMs: 8 and 16 partners instead of 4; population windows out to 1 s
  (11-30, 31-100, 101-300, 301-1000 ms beside 1 and 2-10 ms); both, with finer partner windows;
- a nonlinear model of the same inputs: gradient-boosted trees (scikit-learn's
  HistGradientBoostingClassifier) on glm-coupled's features, its logit and its intercept, fitted on
  cells sampled from the same train split (at most 4,000 spikes and 12,000 silent cells a unit,
  weighted back to their rates), early-stopped on a sixth of them.

Prints one JSON line a variant: PR-AUC, its ratio to glm-coupled's and the paired difference with
its 95 % block-bootstrap interval (measures.uncertainty).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spikeviz.data.catalog import open_recording, session  # noqa: E402
from spikeviz.evaluation.evaluate import fit_baseline  # noqa: E402
from spikeviz.evaluation.stretch import setup  # noqa: E402
from spikeviz.measures.scoring import score_stretch  # noqa: E402
from spikeviz.measures.uncertainty import paired_difference  # noqa: E402
from spikeviz.models.glm import CoupledGLMPredictor  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "corpus"
LONG_POPULATION = ((1, 1), (2, 10), (11, 30), (31, 100), (101, 300), (301, 1000))
FINE_PARTNERS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, 30), (31, 100))
VARIANTS = {
    "8 partners": dict(n_partners=8),
    "16 partners": dict(n_partners=16),
    "population to 1 s": dict(pop_windows=LONG_POPULATION),
    "16 partners, population to 1 s": dict(n_partners=16, pop_windows=LONG_POPULATION),
    "16 partners, population to 1 s, finer partner windows":
        dict(n_partners=16, pop_windows=LONG_POPULATION, partner_windows=FINE_PARTNERS),
}


def load(name: str):
    """A bundled session by name, or a corpus recording (../shared/data/corpus/NAME.csv)."""
    table = CORPUS / f"{name}.csv"
    return open_recording(table) if table.exists() else session(name).load()


def richer_glm(n_partners: int = 4, pop_windows=None, partner_windows=None) -> CoupledGLMPredictor:
    glm = CoupledGLMPredictor(n_partners=n_partners)   # (windows in ms = bins at 1 ms)
    glm.pop_windows = list(pop_windows or glm.pop_windows)
    glm.partner_windows = list(partner_windows or glm.partner_windows)
    return glm


class BoostedGLM:
    """Gradient-boosted trees on a fitted coupled GLM's features, logit and intercept."""

    name = "boosted trees on glm-coupled's inputs"

    def __init__(self, glm: CoupledGLMPredictor, max_pos: int = 4000, max_neg: int = 12000):
        self.glm, self.max_pos, self.max_neg = glm, max_pos, max_neg

    def _inputs(self, F: np.ndarray, unit: np.ndarray) -> np.ndarray:
        g = self.glm
        z = g.intercept_[unit] + (F * g.coef_.T[unit]).sum(1)
        return np.column_stack([F, z, g.intercept_[unit]])

    def fit(self, X_train: np.ndarray) -> "BoostedGLM":
        from sklearn.ensemble import HistGradientBoostingClassifier

        n_pos, n_neg = self.glm._spike_counts(X_train)
        q_pos = np.minimum(1.0, self.max_pos / np.maximum(n_pos, 1))
        q_neg = np.minimum(1.0, self.max_neg / np.maximum(n_neg, 1))
        F, y, unit = self.glm._sample(X_train, q_pos, q_neg)
        self.trees_ = HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, min_samples_leaf=200, early_stopping=True,
            validation_fraction=1 / 6, random_state=0)
        self.trees_.fit(self._inputs(F, unit), y,
                        sample_weight=np.where(y, 1 / q_pos[unit], 1 / q_neg[unit]))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        P = np.empty(X.shape, np.float32)
        units = np.arange(X.shape[1])
        for rows, feats in self.glm._chunks(X):
            F = np.stack([f.ravel() for f in feats], 1)
            u = np.tile(units, len(F) // len(units))
            P[rows] = self.trees_.predict_proba(self._inputs(F, u))[:, 1].reshape(-1, len(units))
        return P


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", default="invitro_210511001_bh,invitro_210511001_lh")
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    for name in args.recordings.split(","):
        su = setup(None, load(name), split="test", seconds=args.seconds)
        st = su.model_stretch
        recorded = {str(u): i for i, u in enumerate(su.stretch.unit_ids)}
        order = np.array([recorded[str(u)] for u in st.unit_ids])
        X = np.empty_like(st.X)
        X[:, order] = st.X   # the recorded order the GLMs were fitted in

        def scored(predictor):
            return score_stretch(predictor.predict(X)[:, order], st.X, st.warm, "strict", st.prime)

        glm = fit_baseline("glm-coupled", su)
        base = scored(glm)
        fits = {k: (lambda kw=kw: richer_glm(**kw).fit(su.target.train)) for k, kw in VARIANTS.items()}
        fits[BoostedGLM.name] = lambda: BoostedGLM(glm).fit(su.target.train)
        for variant, fit in fits.items():
            t0 = time.perf_counter()
            s = scored(fit())
            d = paired_difference(s.blocks, base.blocks, "pr_auc")
            pr, ref = s.hists["strict"].pr_auc, base.hists["strict"].pr_auc
            print(json.dumps({"recording": name, "variant": variant, "glm_pr": ref, "pr": pr,
                              "ratio": pr / ref, "diff": d["diff"], "ci95": d["ci95"],
                              "s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
