"""Benchmark: block-bootstrap intervals of paired differences on 200 s x 128 units of a real session.

EWMA (tau 50 ms) against the tuned EWMA on the bh session's test split. Baseline for the ratio:
one pooled ScoreHistogram of one predictor over the same cells. The last line printed is a JSON
object: cells, n_blocks, histogram_s, block_scores_s (both predictors), bootstrap_s (200 samples,
three metrics), ratio (block scores + bootstrap over one histogram), and the three differences.
"""
from __future__ import annotations

import argparse
import json
import time

import spikeviz
from spikeviz.models.baselines import EWMAPredictor, TunedEWMAPredictor
from spikeviz.measures.metrics import ScoreHistogram
from spikeviz.data.binning import split_bounds
from spikeviz.measures.uncertainty import METRICS, BlockScores, paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--session", default="invitro_210511001_bh")
    parser.add_argument("--seconds", type=float, default=200.0)
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    X = spikeviz.bin_spikes(spikeviz.load_session(args.session)).X
    a = split_bounds(len(X))["test"][0]
    warm = 30_000
    stretch = X[a - warm:a + int(args.seconds * 1000)]
    Y = stretch[warm + 1:]
    P_a = TunedEWMAPredictor().fit(stretch[:warm]).predict(stretch)[warm:-1]
    P_b = EWMAPredictor().predict(stretch)[warm:-1]

    t0 = time.perf_counter()
    ScoreHistogram.from_scores(Y, P_a)
    t1 = time.perf_counter()
    A, B = BlockScores.from_scores(Y, P_a), BlockScores.from_scores(Y, P_b)
    t2 = time.perf_counter()
    diffs = {m: paired_difference(A, B, m, n_boot=args.n_boot) for m in METRICS}
    t3 = time.perf_counter()
    print(json.dumps({"cells": Y.size, "n_blocks": A.n_blocks, "histogram_s": round(t1 - t0, 3),
                      "block_scores_s": round(t2 - t1, 3), "bootstrap_s": round(t3 - t2, 3),
                      "ratio": round((t3 - t1) / (t1 - t0), 1),
                      "diffs": {m: [round(d["diff"], 4), [round(c, 4) for c in d["ci95"]]]
                                for m, d in diffs.items()}}))


if __name__ == "__main__":
    main()
