"""Population fidelity of the population-state model, leave-one-recording-out (issue "a population generator").

For each recording (the bundled sessions and ../shared/data/corpus): the population-state model
(spikeviz.models.states) is fitted on the recording's own train split (the 128 most active units,
as `spikeviz evaluate` picks them); then, from the real past before the test split (30-s
warm-up), it generates --free-s seconds free-running and teacher-forced (each bin's units drawn
jointly from one state filtered from the real past), for each seed. Each run is compared with
the real stretch it covers (spikeviz.measures.stats.fidelity_report): the rate-matched Poisson
floor and the real-vs-real ceiling (the stretch before) beside it. The ablation fits the same
model on the population's level alone (by="level"), which keeps synchrony but not
which units fire together. Each model's chain then adapts to the warm-up as `evaluate`, `generate`
and the page adapt it (PopulationStates.on_warmup; --no-warmup: the chain as fitted on the train
split). --refractory-ms sets the window of the units' recovery factor (0: none, the model before
it). Nothing fitted sees the scored bins.

Goals checked per row (metrics averaged over seeds): count-correlation similarity (20 ms) at
least half the ceiling's; population-rate KS (10 ms) no larger than the ceiling's; synchrony (10
ms, >= 5 % of units) as close to the real as the ceiling is, or closer than half the floor's gap.

`python benchmarks/bench_states.py [--seeds 0 1 2] [--free-s 30] [--refractory-ms 20]
[--no-warmup] [--only NAME ...]`; a JSON line per row, Markdown tables at the end.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench_stack import report
from spikeviz.models.states import REFRACTORY_MS

KEYS = ("corr_similarity_20ms", "pop_rate_ks_10ms", "sync_10ms_5pct", "count_ratio", "isi_ks")


def goals(m: dict, real: dict, floor: dict, ceiling: dict) -> dict:
    """Which population goals a generated run's (seed-averaged) metrics meet."""
    def near(key):
        gap = abs(m[key] - real[key])
        return gap <= abs(ceiling[key] - real[key]) or gap <= 0.5 * abs(floor[key] - real[key])
    return {"corr": m["corr_similarity_20ms"] >= 0.5 * ceiling["corr_similarity_20ms"],
            "ks": m["pop_rate_ks_10ms"] <= ceiling["pop_rate_ks_10ms"],
            "sync": near("sync_10ms_5pct")}


def row(rec, seeds: list[int], seconds: float, free_s: float, refractory_ms: float,
        warmup: bool = True) -> dict:
    from spikeviz.evaluation.stretch import setup
    from spikeviz.evaluation.pipeline import fidelity, reference_before
    from spikeviz.measures.likelihood import LogLikelihood
    from spikeviz.measures.scoring import score_stretch
    from spikeviz.models.states import PopulationStates

    su = setup(None, rec, seconds=seconds, warmup_s=30.0)
    st = su.stretch
    out = {"recording": rec.name, "units": st.X.shape[1], "seeds": seeds,
           "refractory_ms": refractory_ms, "warmup": warmup}
    Y = st.targets
    reference = LogLikelihood().add(Y, np.broadcast_to(su.target.rates, Y.shape))
    n = int(min(free_s, st.duration_s) * 1000.0 / st.bin_ms)
    ceiling = reference_before(rec, st)
    past = st.X[:st.warm + 1]
    for variant, kwargs in (("states", {}), ("level", {"by": "level"})):
        t = time.perf_counter()
        model = PopulationStates(refractory_ms=refractory_ms, **kwargs).fit(su.target.train)
        if warmup:
            model = model.on_warmup(st.X, st.prime, st.warm)
            out[f"{variant}_warmup"] = model.warmup_
        out[f"{variant}_fit_s"] = round(time.perf_counter() - t, 1)
        out[f"{variant}_n_states"] = model.n_states_
        if variant == "states" and model.recovery_ is not None:
            # The units' median recovery factor at each lag (1 = no suppression).
            out["recovery_median"] = np.round(np.median(model.recovery_, 0), 3).tolist()
        if variant == "states":
            s = score_stretch(model.predict(st.X), st.X, st.warm, "strict", st.prime)
            out["pr_auc"] = s.hists["strict"].pr_auc
            out["bits_per_spike"] = (s.loglik - reference.total) / reference.n_spikes / np.log(2)
        modes = {"free": lambda seed: model.simulate(past, n, seed=seed)}
        if variant == "states":
            modes["teacher"] = lambda seed: st.window_of(model.sample(st.X, seed=seed))[:n]
        for mode, make in modes.items():
            runs = [fidelity(st, make(seed), ceiling, seed=seed) for seed in seeds]
            name = f"{variant}_{mode}"
            out[name] = {k: float(np.mean([r["model"][k] for r in runs])) for k in KEYS}
            for col in ("real", "floor", "ceiling"):
                out[col] = {k: runs[0][col][k] for k in KEYS}
            out[f"{name}_goals"] = goals(out[name], out["real"], out["floor"], out["ceiling"])
    return out


def table(rows: list[dict]) -> str:
    ok = lambda r, name, g: "**" if r[f"{name}_goals"][g] else ""  # noqa: E731
    head = ("| recording | K | corr. sim. 20 ms: free / teacher / level free / floor / ceiling "
            "| pop.-rate KS 10 ms: free / teacher / level free / floor / ceiling "
            "| sync 10 ms >= 5 %: free / teacher / level free / floor / ceiling / real "
            "| count ratio free | ISI KS free / teacher / floor / ceiling |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = []
        for key, goal in (("corr_similarity_20ms", "corr"), ("pop_rate_ks_10ms", "ks"),
                          ("sync_10ms_5pct", "sync")):
            vals = [f"{ok(r, n, goal)}{r[n][key]:.3f}{ok(r, n, goal)}"
                    for n in ("states_free", "states_teacher", "level_free")]
            vals += [f"{r['floor'][key]:.3f}", f"{r['ceiling'][key]:.3f}"]
            if goal == "sync":
                vals.append(f"{r['real'][key]:.3f}")
            cells.append(" / ".join(vals))
        lines.append(f"| {r['recording']} | {r['states_n_states']} | " + " | ".join(cells)
                     + f" | {r['states_free']['count_ratio']:.2f} "
                       f"| {r['states_free']['isi_ks']:.3f} / {r['states_teacher']['isi_ks']:.3f} "
                       f"/ {r['floor']['isi_ks']:.3f} / {r['ceiling']['isi_ks']:.3f} |")
    met = {f"{n} {g}": sum(r[f"{n}_goals"][g] for r in rows)
           for n in ("states_free", "states_teacher", "level_free") for g in ("corr", "ks", "sync")}
    isi = {n: sum(r[n]["isi_ks"] <= r["floor"]["isi_ks"] for r in rows)
           for n in ("states_free", "states_teacher")}
    lines.append("")
    lines.append("Goals met (of %d): " % len(rows) + ", ".join(f"{k} {v}" for k, v in met.items()))
    lines.append("ISI KS at or under the floor's: " + ", ".join(f"{k} {v}" for k, v in isi.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--free-s", type=float, default=30.0)
    parser.add_argument("--refractory-ms", type=float, default=REFRACTORY_MS,
                        help="window of the units' recovery factor (0: none)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="the chain as fitted on the train split (no on_warmup)")
    parser.add_argument("--only", nargs="*", help="recordings whose name contains one of these")
    args = parser.parse_args()
    print(table(report(lambda rec: [row(rec, args.seeds, args.seconds, args.free_s,
                                        args.refractory_ms, not args.no_warmup)],
                       args.only)))


if __name__ == "__main__":
    main()
