"""The population stack against the coupled GLM, leave-one-recording-out (issue "a population generator").

For each recording (the bundled sessions and ../shared/data/corpus) and seed: the coupled GLM and
the stack (spikeviz.models.stack) are fitted on the recording's own train split, exactly as
`spikeviz evaluate` fits its baselines (evaluation.setup: the 128 most active units of the train
split); both score the test split (up to --seconds after a 30-s warm-up) under the strict
protocol. Printed per row: PR-AUC and bits/spike of both, their ratio, the paired difference with
its 95 % block-bootstrap interval, the stack's guard (its share of the residual, chosen on the
held-out training bins, then again on the warm-up), fit time; then the population fidelity
(fidelity_report: count-correlation similarity, population-rate KS, synchrony) of the stack's
teacher-forced and free-running trains over --free-s, next to the Poisson floor and the
real-vs-real ceiling. Nothing fitted sees the scored bins.

`python benchmarks/bench_stack.py [--seeds 0 1] [--only NAME ...]`; a JSON line per row, a
Markdown table at the end.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SESSIONS = ("invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"  # ../shared
POPULATION = ("corr_similarity_20ms", "pop_rate_ks_10ms", "sync_10ms_5pct", "count_ratio")


def recordings(only: list[str] | None):
    import spikeviz
    from spikeviz.data.catalog import open_recording

    names = list(SESSIONS) + sorted(str(p) for p in CORPUS.glob("*.csv"))
    for name in names:
        if only and not any(o in name for o in only):
            continue
        yield open_recording(name) if name.endswith(".csv") else spikeviz.load_session(name)


def row(rec, seed: int, seconds: float, free_s: float) -> dict:
    from spikeviz.evaluation.stretch import setup
    from spikeviz.evaluation.pipeline import fidelity, reference_before
    from spikeviz.measures.likelihood import LogLikelihood
    from spikeviz.measures.scoring import score_stretch
    from spikeviz.measures.uncertainty import paired_difference
    from spikeviz.models.glm import CoupledGLMPredictor
    from spikeviz.models.stack import StackPredictor

    su = setup(None, rec, seconds=seconds, warmup_s=30.0)
    st, train = su.stretch, su.target.train
    Y = st.targets
    reference = LogLikelihood().add(Y, np.broadcast_to(su.target.rates, Y.shape))
    out = {"recording": rec.name, "seed": seed, "units": st.X.shape[1],
           "scored_s": st.duration_s}
    scored, P_stack = {}, None
    for name, make in (("glm-coupled", lambda: CoupledGLMPredictor(seed=seed)),
                       ("stack", lambda: StackPredictor(seed=seed))):
        t = time.perf_counter()
        predictor = make().fit(train)
        if name == "stack":   # its guard chosen again on the warm-up, as `spikeviz evaluate` does
            out["guard_held_out"] = predictor.alpha_
            predictor = predictor.on_warmup(st.X, st.prime, st.warm)
        out[f"{name}_fit_s"] = round(time.perf_counter() - t, 1)
        P = predictor.predict(st.X)
        s = scored[name] = score_stretch(P, st.X, st.warm, "strict", st.prime)
        out[f"{name}_pr"] = s.hists["strict"].pr_auc
        out[f"{name}_bps"] = (s.loglik - reference.total) / reference.n_spikes / np.log(2)
        if name == "stack":
            stack, P_stack = predictor, P
    out["guard"] = stack.alpha_
    for metric, key in (("pr_auc", "pr"), ("bits_per_spike", "bps")):
        d = paired_difference(scored["stack"].blocks, scored["glm-coupled"].blocks, metric, seed=seed)
        out[f"{key}_diff"], out[f"{key}_ci95"], out["blocks"] = d["diff"], d["ci95"], d["n_blocks"]
        out[f"{key}_ratio"] = out[f"stack_{key}"] / out[f"glm-coupled_{key}"]
    n = int(min(free_s, st.duration_s) * 1000.0 / st.bin_ms)
    rng = np.random.default_rng(seed)
    teacher = (rng.random((n, st.X.shape[1]), dtype=np.float32)
               < st.window_of(P_stack)[:n]).astype(np.uint8)
    t = time.perf_counter()
    free = stack.simulate(st.X[:st.warm + 1], n, seed=seed)
    out["free_ms_per_bin"] = round(1000.0 * (time.perf_counter() - t) / n, 3)
    ceiling = reference_before(rec, st)
    for mode, G in (("teacher", teacher), ("free", free)):
        f = fidelity(st, G, ceiling, seed=seed)
        for key in POPULATION:
            out[f"{mode}_{key}"] = f["model"].get(key)
            for col in ("real", "floor", "ceiling"):
                out[f"{col}_{key}"] = (f[col] or {}).get(key)
    return out


def table(rows: list[dict]) -> str:
    head = ("| recording | seed | glm-coupled PR | stack PR | ratio | PR diff [95 %] | glm-coupled b/s "
            "| stack b/s | ratio | b/s diff [95 %] | guard: held out / warm-up | fit s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    ci = lambda c: "no interval" if c is None else f"[{c[0]:+.4f}, {c[1]:+.4f}]"  # noqa: E731
    for r in rows:
        # A guard of 0 is the GLM itself: its difference is exactly 0, not an interval of width 0.
        same = r["guard"] == 0
        pr = "0 (the GLM)" if same else f"{r['pr_diff']:+.4f} {ci(r['pr_ci95'])}"
        bps = "0 (the GLM)" if same else f"{r['bps_diff']:+.3f} {ci(r['bps_ci95'])}"
        lines.append(f"| {r['recording']} | {r['seed']} | {r['glm-coupled_pr']:.4f} | {r['stack_pr']:.4f} "
                     f"| {r['pr_ratio']:.3f} | {pr} | {r['glm-coupled_bps']:+.3f} | {r['stack_bps']:+.3f} "
                     f"| {r['bps_ratio']:.3f} | {bps} | {r['guard_held_out']:g} / {r['guard']:g} "
                     f"| {r['stack_fit_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--free-s", type=float, default=30.0)
    parser.add_argument("--only", nargs="*", help="recordings whose name contains one of these")
    args = parser.parse_args()
    print(table(report(lambda rec: [row(rec, seed, args.seconds, args.free_s)
                                    for seed in args.seeds], args.only)))


def report(rows_of, only: list[str] | None) -> list[dict]:
    """rows_of(recording) for each recording (--only), each row printed as a JSON line."""
    rows = []
    for rec in recordings(only):
        for r in rows_of(rec):
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


if __name__ == "__main__":
    main()
