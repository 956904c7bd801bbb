"""Benchmark: the baselines on each bundled session's test split, PR-AUC, ROC-AUC and bits/spike.

Baselines are fitted on the train split (first 50 %; `--fit warmup`: on the 30-s warm-up only),
then predict the warm-up and the first `--seconds` of the test split, strict one step ahead.
Bits/spike is against the rate baseline fitted on the train split. One JSON line per session and
baseline: session, baseline, fit_s, predict_s, pr_auc, roc_auc, roc_auc_spike_weighted, bits_per_spike,
and the tuned EWMA's tau.
"""
from __future__ import annotations

import argparse
import json
import time


import spikeviz
from spikeviz.models.baselines import ALL_BASELINES, make_baseline
from spikeviz.measures.likelihood import LogLikelihood
from spikeviz.measures.metrics import scores_histograms
from spikeviz.data.binning import split_bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baselines", default=",".join(ALL_BASELINES))
    parser.add_argument("--sessions", default=",".join(s.name for s in spikeviz.sessions()))
    parser.add_argument("--seconds", type=float, default=200.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--fit", choices=("train", "warmup"), default="train")
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="evaluated split; the default starts at 50 %%, valid at 75 %%")
    args = parser.parse_args()
    for session in args.sessions.split(","):
        X = spikeviz.bin_spikes(spikeviz.load_session(session)).X
        s = split_bounds(len(X))
        train = X[slice(*s["train"])]
        a = s[args.split][0]
        warm = int(args.warmup * 1000)
        stretch = X[a - warm:a + int(args.seconds * 1000)]
        Y = stretch[warm + 1:]
        rate = make_baseline("rate").fit(train).predict(stretch)[warm:-1]
        ll_rate = LogLikelihood().add(Y, rate)
        for name in args.baselines.split(","):
            t0 = time.perf_counter()
            p = make_baseline(name).fit(train if args.fit == "train" else stretch[:warm])
            t1 = time.perf_counter()
            P = p.predict(stretch)[warm:-1]
            t2 = time.perf_counter()
            pooled, units = scores_histograms(Y, P)
            row = {"session": session, "baseline": name, "fit": args.fit,
                   "fit_s": round(t1 - t0, 2), "predict_s": round(t2 - t1, 2),
                   "pr_auc": round(pooled.pr_auc, 4), "roc_auc": round(pooled.roc_auc, 4),
                   "roc_auc_spike_weighted": round(units.roc_auc_spike_weighted, 4),
                   "bits_per_spike": round(LogLikelihood().add(Y, P).bits_per_spike(ll_rate), 4)}
            if hasattr(p, "tau_ms_"):     # the tuned EWMA's chosen time constant
                row["tau_ms"] = p.tau_ms_
            print(json.dumps(row), flush=True)
            del P


if __name__ == "__main__":
    main()
