"""Issue #27: a fine-tuned generalist blended with the target's own coupled GLM (what `spikeviz
evaluate` scores since 2026-12-07), against that GLM, on a recording the starting generalist never saw.

    python benchmarks/trial_guard_glm.py --data PATH --init FOLD_GENERALIST [--seconds 120] [--seed 0]

As benchmarks/bench_finetune.py: the first --seconds of the recording, fine-tuned with the
defaults of `spikeviz train --init` on its train split, scored on its test split after the
standard warm-up (strict protocol). Three predictors on the same bins: glm-coupled (fitted on the
train split, as `evaluate` fits it), the fine-tuned generalist (its guard fitted on the warm-up,
as `evaluate --without-glm` does), and the blend `evaluate` scores (evaluate.target_predictor:
logit = a z_model + b z_glm + c, fitted by the one logistic solver on the same warm-up bins, never
a scored bin; first written here as a trial). The ablation "one": the blend as it was before
2026-12-07 11:00 UTC, the GLM's logit weighed as one (logit = a z_model + b z_glm + c) instead of
in two parts (its partners' share and the rest). Prints one JSON line: each one's PR-AUC and
bits/spike, the model, the blend and the ablation against glm-coupled and the blend against the
ablation (ratios, paired differences, 95 % block-bootstrap intervals). --fitted DIR keeps the
fine-tuned checkpoint there and reuses it when the same recording, length and seed come again.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spikeviz.data.catalog import open_recording, session  # noqa: E402
from spikeviz.evaluation.evaluate import fit_baseline, target_predictor  # noqa: E402
from spikeviz.evaluation.stretch import setup  # noqa: E402
from spikeviz.generation.adapt import fit_guard  # noqa: E402
from spikeviz.generation.logits import logits  # noqa: E402
from spikeviz.models.logistic import sigmoid  # noqa: E402
from spikeviz.measures.likelihood import LogLikelihood  # noqa: E402
from spikeviz.measures.scoring import aligned, score_stretch  # noqa: E402
from spikeviz.measures.uncertainty import paired_difference  # noqa: E402
from spikeviz.models.checkpoint import load_model  # noqa: E402
from spikeviz.training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR, TrainOptions, train_recording  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="any recording (else --session)")
    ap.add_argument("--session", default="invitro_210511001_lh")
    ap.add_argument("--init", required=True, help="the generalist that never saw the recording")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=FINE_TUNE_EPOCHS, help="fine-tuning epochs at most")
    ap.add_argument("--lr", type=float, default=FINE_TUNE_LR, help="fine-tuning's learning rate")
    ap.add_argument("--fitted", help="a folder to keep (and reuse) the fine-tuned checkpoint in")
    args = ap.parse_args()
    rec = (open_recording(args.data) if args.data else session(args.session).load()).slice(0.0, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.fitted or tmp) / (f"{rec.name}-{args.seconds:g}s-seed{args.seed}-"
                                          f"{args.epochs}epochs" + (f"-lr{args.lr:g}" if args.lr != FINE_TUNE_LR else "")
                                          + ".safetensors")
        fit_s = None
        if not out.exists():
            t0 = time.perf_counter()
            train_recording(rec, out, TrainOptions(loss="focal", epochs=args.epochs, lr=args.lr,
                                                   seed=args.seed, init=args.init), progress=False, log=False)
            fit_s = time.perf_counter() - t0
        model = load_model(out)
    su = setup(model, rec, split="test", seconds=None)
    st, ms = su.stretch, su.model_stretch
    X = ms.X
    cols = {str(u): i for i, u in enumerate(st.unit_ids)}
    order = np.array([cols[str(u)] for u in ms.unit_ids])   # recorded columns -> model columns
    cache: dict = {}
    glm = fit_baseline("glm-coupled", su, cache)
    P_glm = glm.predict(st.X)[:, order]
    P_model = target_predictor(model, su, cache, glm=False).predict(X)
    blend = target_predictor(model, su, cache)
    P_blend = blend.predict(X)
    P_one, one = _glm_as_one(P_model, glm.logit_parts(st.X)[0][:, order], X, st.prime, st.warm)
    reference = LogLikelihood().add(*aligned(np.broadcast_to(su.target.rates[order], X[st.warm:].shape),
                                             X[st.warm:]))
    scored = {name: score_stretch(P, X, st.warm, "strict", st.prime)
              for name, P in (("glm", P_glm), ("model", P_model), ("blend", P_blend),
                              ("one", P_one))}
    row = {"recording": rec.name, "seconds": args.seconds, "init": Path(args.init).name, "seed": args.seed,
           "epochs": model.meta.get("epochs"), "best_epoch": model.meta.get("best_epoch"),
           "fit_s": fit_s and round(fit_s, 1), "blend": list(blend.weights_), "one": one}
    for name, s in scored.items():
        row[f"{name}_pr"] = s.hists["strict"].pr_auc
        row[f"{name}_bps"] = (s.loglik - reference.total) / max(reference.n_spikes, 1) / np.log(2)
    for name, base in (("model", "glm"), ("blend", "glm"), ("one", "glm"), ("blend", "one")):
        suffix = "" if base == "glm" else f"_vs_{base}"
        pr = paired_difference(scored[name].blocks, scored[base].blocks, "pr_auc")
        bits = paired_difference(scored[name].blocks, scored[base].blocks, "bits_per_spike")
        row |= {f"{name}_pr_ratio{suffix}": row[f"{name}_pr"] / row[f"{base}_pr"],
                f"{name}_bps_ratio{suffix}": row[f"{name}_bps"] / row[f"{base}_bps"],
                f"{name}_pr_ci95{suffix}": pr["ci95"], f"{name}_bps_ci95{suffix}": bits["ci95"]}
    print(json.dumps(row))


def _glm_as_one(P_model, z_glm, X, lo, hi):
    """The ablation: logit = a z_model + b z_glm + c, fitted on the same warm-up rows by the same
    solver as the blend (generation.blend.GLMBlend)."""
    z_model = logits(P_model, np.float32)
    y, m = aligned(z_model[lo:hi], X[lo:hi])
    _, g = aligned(z_glm[lo:hi], X[lo:hi])
    a, b, c = fit_guard((m, g), y, fallback=(1.0, 0.0, 0.0))
    return sigmoid(np.float32(a) * z_model + np.float32(b) * z_glm + np.float32(c)), [a, b, c]


if __name__ == "__main__":
    main()
