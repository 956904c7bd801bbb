"""Benchmark: fitting a generalist to a recording it never saw, with the default `spikeviz train --init`
settings, against the best baseline on that recording's test split.

    python benchmarks/bench_finetune.py [--session NAME | --data PATH --init CKPT] [--seconds 120]
        [--seed 0]

The recording is the first --seconds of a bundled session, and the starting checkpoint the
leave-one-session-out generalist that never saw it (models/loso/); or any recording (--data, e.g.
a corpus table) and the generalist that never saw it (--init, e.g. its fold's generalist from
benchmarks/bench_corpus_generalist.py). Prints the fine-tuning time, the zero-shot and fine-tuned
PR-AUC against every baseline, and, last, one JSON line with both against glm-coupled (ratios,
paired differences and their 95 % block-bootstrap intervals).
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

from spikeviz.data.catalog import models_dir, open_recording, session  # noqa: E402
from spikeviz.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from spikeviz.training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR, TrainOptions, train_recording  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session", default="invitro_210511001_lh")
    ap.add_argument("--data", help="any recording instead of a bundled session (needs --init)")
    ap.add_argument("--init", help="the generalist to start from (default: the loso one); "
                                   "'scratch': an untrained generalist, the same epochs and rate")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.data and not args.init:
        ap.error("--data needs --init: the generalist that never saw the recording")
    rec = open_recording(args.data) if args.data else session(args.session).load()
    scratch = args.init == "scratch"
    init = Path(args.init) if args.init else (
        models_dir() / "loso" / f"generalist-focal-without-{rec.name}-seed{args.seed}.safetensors")
    start = dict(preset="generalist") if scratch else dict(init=str(init))
    rec = rec.slice(0.0, args.seconds)
    # The short recording's own test split (its last 25 %), after the standard warm-up; the
    # baselines fitted once (its train split) for both models.
    # The generalist alone (`evaluate --without-glm`): trial_guard_glm.py scores the blend.
    score = dict(seconds=None, split="test", cache={}, glm=False)
    zero = None if scratch else evaluate_checkpoint(init, rec, **score)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fitted.safetensors"
        t0 = time.perf_counter()
        meta = train_recording(rec, out, TrainOptions(loss="focal", epochs=FINE_TUNE_EPOCHS,
                                                       lr=FINE_TUNE_LR, seed=args.seed, **start),
                               progress=False, log=False)
        seconds = time.perf_counter() - t0
        tuned = evaluate_checkpoint(out, rec, **score)
        # Each against glm-coupled itself (the comparison above is with the best baseline).
        glm = {name: evaluate_checkpoint(path, rec, baselines=("glm-coupled",), **score)
               for name, path in (("zero_shot", init), ("fine_tuned", out))
               if not (scratch and name == "zero_shot")}
    best = tuned["comparison"]["best_baseline"]
    best_pr = tuned["baselines"][best]["pr_auc"]
    print(f"{rec.name}, first {args.seconds:g} s; fine-tuning from {init.name}: {seconds:.0f} s, "
          f"{meta['epochs']} epochs (best {meta['best_epoch']})")
    for name, r in (("zero-shot", zero), ("fine-tuned", tuned)):
        if r is None:
            continue
        print(f"  {name:10s} PR-AUC {r['model']['pr_auc']:.4f}, bits/spike "
              f"{r['model']['bits_per_spike']:+.3f}")
    for name, b in tuned["baselines"].items():
        print(f"  {name:10s} PR-AUC {b['pr_auc']:.4f}, bits/spike {b['bits_per_spike']:+.3f}")
    row = {"recording": rec.name, "seconds": args.seconds, "init": init.name,
           "fit_s": round(seconds, 1), "epochs": meta["epochs"],
           "zero_shot_pr": zero and zero["model"]["pr_auc"], "fine_tuned_pr": tuned["model"]["pr_auc"],
           "best_baseline": best, "best_baseline_pr": best_pr,
           "ratio": tuned["model"]["pr_auc"] / best_pr,
           "ci95": tuned["comparison"].get("pr_auc_diff_ci95"),
           "ewma_pr": tuned["baselines"]["ewma"]["pr_auc"],
           "glm_pr": tuned["baselines"]["glm-coupled"]["pr_auc"],
           "glm_bps": tuned["baselines"]["glm-coupled"]["bits_per_spike"]}
    for name, r in glm.items():
        c = r["comparison"]
        row |= {f"{name}_bps": r["model"]["bits_per_spike"],
                f"{name}_pr_ratio": r["model"]["pr_auc"] / row["glm_pr"],
                f"{name}_bps_ratio": r["model"]["bits_per_spike"] / row["glm_bps"],
                f"{name}_pr_diff": c["pr_auc_diff"], f"{name}_pr_ci95": c["pr_auc_diff_ci95"],
                f"{name}_bps_diff": c["bits_per_spike_diff"],
                f"{name}_bps_ci95": c["bits_per_spike_diff_ci95"]}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
