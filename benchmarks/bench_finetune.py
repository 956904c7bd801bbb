"""Benchmark: fitting a generalist to a recording it never saw, with the default `spikeviz train --init`
settings, against the best baseline on that recording's test split.

    python benchmarks/bench_finetune.py [--session NAME] [--seconds 120] [--seed 0]

The recording is the first --seconds of a bundled session, and the starting checkpoint the
leave-one-session-out generalist that never saw it (models/loso/). Prints the fine-tuning time, the
zero-shot and fine-tuned PR-AUC against every baseline, and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spikeviz.data.catalog import models_dir, session  # noqa: E402
from spikeviz.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from spikeviz.training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR, TrainOptions, train_recording  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session", default="invitro_210511001_lh")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    s = session(args.session)
    init = models_dir() / "loso" / f"generalist-focal-without-{s.name}-seed{args.seed}.safetensors"
    rec = s.load().slice(0.0, args.seconds)
    # The short recording's own test split (its last 25 %), after the standard warm-up.
    score = dict(seconds=None, split="test")
    zero = evaluate_checkpoint(init, rec, **score)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fitted.safetensors"
        t0 = time.perf_counter()
        meta = train_recording(rec, out, TrainOptions(loss="focal", init=str(init),
                                                       epochs=FINE_TUNE_EPOCHS, lr=FINE_TUNE_LR,
                                                       seed=args.seed), progress=False, log=False)
        seconds = time.perf_counter() - t0
        tuned = evaluate_checkpoint(out, rec, **score)
    best = tuned["comparison"]["best_baseline"]
    best_pr = tuned["baselines"][best]["pr_auc"]
    print(f"{s.name}, first {args.seconds:g} s; fine-tuning from {init.name}: {seconds:.0f} s, "
          f"{meta['epochs']} epochs (best {meta['best_epoch']})")
    for name, r in (("zero-shot", zero), ("fine-tuned", tuned)):
        print(f"  {name:10s} PR-AUC {r['model']['pr_auc']:.4f}, bits/spike "
              f"{r['model']['bits_per_spike']:+.3f}")
    for name, b in tuned["baselines"].items():
        print(f"  {name:10s} PR-AUC {b['pr_auc']:.4f}, bits/spike {b['bits_per_spike']:+.3f}")
    print(json.dumps({"session": s.name, "seconds": args.seconds, "fit_s": round(seconds, 1),
                      "epochs": meta["epochs"], "zero_shot_pr": zero["model"]["pr_auc"],
                      "fine_tuned_pr": tuned["model"]["pr_auc"], "best_baseline": best,
                      "best_baseline_pr": best_pr,
                      "ratio": tuned["model"]["pr_auc"] / best_pr,
                      "ci95": tuned["comparison"].get("pr_auc_diff_ci95")}))


if __name__ == "__main__":
    main()
