"""Benchmark: spikeviz ROC + PR (histogram) against scikit-learn on the same N random scores.

Scores are imbalanced like spike predictions (base rate ~2 %, logit-normal). The last line printed
is a JSON object: n, ours_s, sklearn_s, speedup, max_abs_dauc.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from spikeviz.metrics import ScoreHistogram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=float, default=3e7, help="number of scores (default 3e7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = int(args.n)
    rng = np.random.default_rng(args.seed)
    y = rng.random(n, dtype=np.float32) < 0.02
    # Positives score higher on average: a realistic, far-from-perfect predictor.
    logit = rng.standard_normal(n, dtype=np.float32) * 1.5 - 5.0 + 1.5 * y
    p = 1.0 / (1.0 + np.exp(-logit))

    t0 = time.perf_counter()
    h = ScoreHistogram.from_scores(y, p)
    ours = (h.roc_auc, h.pr_auc)
    h.roc_curve(), h.pr_curve()
    ours_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = (roc_auc_score(y, p), average_precision_score(y, p))
    roc_curve(y, p), precision_recall_curve(y, p)
    sklearn_s = time.perf_counter() - t0

    dauc = max(abs(a - b) for a, b in zip(ours, ref))
    print(f"ours    roc {ours[0]:.6f} pr {ours[1]:.6f}  {ours_s:.3f} s")
    print(f"sklearn roc {ref[0]:.6f} pr {ref[1]:.6f}  {sklearn_s:.3f} s")
    print(json.dumps({"n": n, "ours_s": round(ours_s, 4), "sklearn_s": round(sklearn_s, 3),
                      "speedup": round(sklearn_s / ours_s, 1), "max_abs_dauc": dauc}))


if __name__ == "__main__":
    main()
