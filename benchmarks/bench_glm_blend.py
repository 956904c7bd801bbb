"""The generalist blended with its target's coupled GLM (what `spikeviz evaluate` scores), zero-shot,
against that GLM, with the ablations that could explain a win more simply (issue #27).

    python benchmarks/bench_glm_blend.py [--recordings NAME,...] [--seconds 200]

Each recording is scored by a generalist that never saw it: the corpus recordings
(../shared/data/corpus) by the shipped generalist-focal (trained on the bundled sessions only), each
bundled session by its leave-one-session-out generalist (models/loso, seed 0). The stretch, units,
warm-up and baselines are `spikeviz evaluate`'s (strict protocol, the first --seconds of the test
split). Predictors on the same bins:

- glm-coupled, fitted on the recording's train split (the goal's yardstick), and ewma-tuned (the
  goal's floor);
- the generalist alone (`evaluate --without-glm`: its own warm-up guard);
- the blend (`evaluate`: evaluate.target_predictor);
- ablations, each blended the same way on the same warm-up (generation.blend.GLMBlend): the GLM
  with itself (the blend's weights alone: the GLM recalibrated on the warm-up) and the GLM with
  ewma-tuned (a history model that learned nothing across recordings).

Prints one JSON line a recording: PR-AUC and bits/spike of each, and each against glm-coupled and
the blend against each ablation (paired differences, 95 % block-bootstrap intervals). With
--fidelity S, also the population statistics of S seconds of teacher-forced trains from the start
of the test split (`spikeviz generate --mode teacher --json`), beside the Poisson floor and the
real-vs-real ceiling: 20-ms count-correlation similarity and mean, the synchrony of 10-ms bins
(>= 2, 5, 10 % of units active), the 10-ms population rate's KS distance, the count ratio and
the ISI KS distance. Three ways: blended, a bin's units drawn jointly (the default); blended and
drawn independently (`--independent-draws`, the ablation); alone, drawn jointly; and the joint
draws without their dead time (a second ablation). --seeds N draws the first two N times from
the same predictions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spikeviz.data.catalog import open_recording, session, sessions  # noqa: E402
from spikeviz.evaluation.evaluate import blend_glm, fit_baseline, target_predictor  # noqa: E402
from spikeviz.evaluation.pipeline import (fidelity, generate_window, generated_fidelity,  # noqa: E402
                                          reference_before, start_of_test_split, teacher_trains)
from spikeviz.evaluation.stretch import setup  # noqa: E402
from spikeviz.measures.likelihood import LogLikelihood  # noqa: E402
from spikeviz.measures.scoring import aligned, score_stretch  # noqa: E402
from spikeviz.measures.uncertainty import paired_difference  # noqa: E402
from spikeviz.models.checkpoint import load_model  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "corpus"


class _Named:
    """A fitted baseline as a blend's base (GLMBlend reads `name` and `predict`)."""

    def __init__(self, predictor, name: str, order: np.ndarray):
        self.predictor, self.name, self.order = predictor, name, order

    def predict(self, X: np.ndarray) -> np.ndarray:
        recorded = np.empty_like(X)
        recorded[:, self.order] = X
        return self.predictor.predict(recorded)[:, self.order]


def targets(names: list[str] | None) -> list[tuple[str, object, Path]]:
    """(name, recording loader, the generalist that never saw it)."""
    out = [(p.stem, lambda p=p: open_recording(p), ROOT / "models" / "generalist-focal.safetensors")
           for p in sorted(CORPUS.glob("*.csv"))]
    out += [(s.name, s.load, ROOT / "models" / "loso" / f"generalist-focal-without-{s.name}-seed0.safetensors")
            for s in sessions()]
    return [t for t in out if names is None or t[0] in names]


POPULATION = ("corr_similarity_20ms", "mean_corr_20ms", "sync_10ms_2pct", "sync_10ms_5pct",
              "sync_10ms_10pct", "pop_rate_ks_10ms", "count_ratio", "isi_ks")


def teacher_fidelity(model, rec, seconds: float, seeds: int = 1) -> dict:
    """POPULATION of teacher-forced trains from the start of the test split: blended with a
    bin's units drawn jointly (`spikeviz generate`), blended and drawn independently
    (`--independent-draws`: the ablation) and alone, drawn jointly (`--without-glm`), with the
    report's real, floor and ceiling values and the copula's fit; seeds 1.. of the first two
    under "<way>@<seed>" (the same predictions, other draws)."""
    start = start_of_test_split(rec, 1.0)
    out = {}
    for name, glm, joint in (("blend", True, True), ("independent", True, False),
                             ("alone", False, True)):
        made = generate_window(model, rec, (start, start + seconds), glm=glm, joint=joint)
        report = generated_fidelity(made, rec)
        for who in ("model", "floor", "ceiling", "real") if name == "blend" else ("model",):
            out |= {f"{name if who == 'model' else who}.{k}": (report.get(who) or {}).get(k)
                    for k in POPULATION}
        if name == "blend":
            out["copula"] = made.recording.source["generated_by"]["joint_draws"]
            out |= without_dead_time(made, rec)
        if name != "alone":
            st = made.setup.model_stretch
            for seed in range(1, seeds):
                bins = teacher_trains(made.prediction, seed=seed, joint=joint)
                report = fidelity(st, bins, reference_before(rec, st))["model"]
                out |= {f"{name}@{seed}.{k}": report.get(k) for k in POPULATION}
    return out


def without_dead_time(made, rec) -> dict:
    """POPULATION of the same joint draws without the copula's dead time (the second ablation)."""
    cop = made.prediction.copula
    if cop is None or cop.independent:
        return {}
    st = made.setup.model_stretch
    bins = teacher_trains(replace(made.prediction, copula=replace(cop, dead_bins=1)))
    report = fidelity(st, bins, reference_before(rec, st))["model"]
    return {f"no-dead-time.{k}": report.get(k) for k in POPULATION}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", help="comma-separated names (default: all 13)")
    ap.add_argument("--seconds", type=float, default=200.0)
    ap.add_argument("--fidelity", type=float, default=0.0,
                    help="seconds of teacher-forced trains to compare (0: none)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="seeds of the fidelity's draws, joint and independent (default 1)")
    args = ap.parse_args()
    for name, load, checkpoint in targets(args.recordings.split(",") if args.recordings else None):
        t0 = time.perf_counter()
        rec, model = load(), load_model(checkpoint)
        su = setup(model, rec, split="test", seconds=args.seconds)
        st, X = su.model_stretch, su.model_stretch.X
        cache: dict = {}
        blend = target_predictor(model, su, cache)
        recorded = {str(u): i for i, u in enumerate(su.stretch.unit_ids)}
        order = np.array([recorded[str(u)] for u in st.unit_ids])
        fitted = fit_baseline("glm-coupled", su, cache)
        glm = _Named(fitted, "glm-coupled", order)
        ewma = _Named(fit_baseline("ewma-tuned", su, cache), "ewma-tuned", order)
        predictors = {"glm": glm, "ewma": ewma, "model": target_predictor(model, su, cache, glm=False),
                      "blend": blend, "glm+glm": blend_glm(glm, su, fitted),
                      "glm+ewma": blend_glm(ewma, su, fitted)}
        P = {k: p.predict(X) for k, p in predictors.items()}
        reference = LogLikelihood().add(*aligned(
            np.broadcast_to(su.target.rates[order], X[st.warm:].shape), X[st.warm:]))
        scored = {k: score_stretch(p, X, st.warm, "strict", st.prime) for k, p in P.items()}
        row = {"recording": name, "checkpoint": checkpoint.name, "units": X.shape[1],
               "stretch_s": list(st.seconds), "weights": list(blend.weights_)}
        for k, s in scored.items():
            row[f"{k}_pr"] = s.hists["strict"].pr_auc
            row[f"{k}_bps"] = (s.loglik - reference.total) / max(reference.n_spikes, 1) / np.log(2)
        pairs = [(k, "glm") for k in ("model", "blend", "glm+glm", "glm+ewma")]
        pairs += [("blend", "glm+glm"), ("blend", "glm+ewma"), ("blend", "model"), ("blend", "ewma")]
        for a, b in pairs:
            for metric, short in (("pr_auc", "pr"), ("bits_per_spike", "bps")):
                d = paired_difference(scored[a].blocks, scored[b].blocks, metric)
                row[f"{a}-{b}_{short}"] = [d["diff"], d["ci95"]]
        if args.fidelity:
            row["fidelity"] = teacher_fidelity(model, rec, args.fidelity, args.seeds)
        row["s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
