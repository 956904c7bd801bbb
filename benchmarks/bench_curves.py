"""Benchmark: spikeviz ROC + PR (histogram) against scikit-learn on the same N random scores.

Scores are imbalanced like spike predictions (base rate ~2 %, logit-normal). Also: 1000 threshold
slider steps (operating points) against building the histogram, and firing_stats on the 1-h
session against one pass of numpy column sums over the same matrix. The last line printed is a
JSON object: n, ours_s, sklearn_s, speedup, max_abs_dauc, slider_1000_vs_histogram,
stats_vs_column_sums.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from spikeviz.measures.metrics import ScoreHistogram


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

    t0 = time.perf_counter()
    for thr in np.linspace(0, 1, 1000):
        h.operating_point(thr)
    slider_s = time.perf_counter() - t0
    stats_s, sums_s = _stats_timing()

    dauc = max(abs(a - b) for a, b in zip(ours, ref))
    print(f"ours    roc {ours[0]:.6f} pr {ours[1]:.6f}  {ours_s:.3f} s")
    print(f"sklearn roc {ref[0]:.6f} pr {ref[1]:.6f}  {sklearn_s:.3f} s")
    print(f"1000 slider steps {slider_s:.3f} s; firing_stats of 1 h {stats_s:.2f} s "
          f"(column sums {sums_s:.2f} s)")
    print(json.dumps({"n": n, "ours_s": round(ours_s, 4), "sklearn_s": round(sklearn_s, 3),
                      "speedup": round(sklearn_s / ours_s, 1), "max_abs_dauc": dauc,
                      "slider_1000_vs_histogram": round(slider_s / ours_s, 3),
                      "stats_vs_column_sums": round(stats_s / sums_s, 1)}))


def _stats_timing() -> tuple[float, float]:
    """Seconds of firing_stats on the 1-h, 128-unit session, and of numpy column sums on it."""
    import spikeviz
    from spikeviz.measures.stats import firing_stats

    X = spikeviz.bin_spikes(spikeviz.load_session("invivo_NYU-40_2021-04-14_001")).X
    t0 = time.perf_counter()
    X.sum(0, dtype=np.int64)
    sums_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    firing_stats(X)
    return time.perf_counter() - t0, sums_s


if __name__ == "__main__":
    main()
