"""The generalist's free runs, a bin's units drawn jointly or independently, against the Poisson
floor and the real-vs-real ceiling on the 13 recordings, over several seeds (issue #27).

    python benchmarks/bench_free_population.py [--recordings NAME,...] [--seconds 30] [--seeds 3]

Each recording is run by a generalist that never saw it (bench_glm_blend.targets): free from the
start of its test split for --seconds, as `spikeviz generate --mode free` runs it (with and
without `--independent-draws`; the same stretch, guard, start and closed-loop fit: the pipeline's
free_start and free_trains), once per seed. Prints one JSON line a recording (each statistic per
way and seed, with the report's real, floor and ceiling), then a summary line: per way and seed,
on how many recordings the 20-ms correlation similarity reaches half the ceiling, the 10-ms
population rate's KS distance is at or under the ceiling's and the ISI KS distance at or under
the floor's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_glm_blend import POPULATION, targets  # noqa: E402

from spikeviz.evaluation.evaluate import for_target  # noqa: E402
from spikeviz.evaluation.pipeline import (fidelity, free_start, free_trains,  # noqa: E402
                                          reference_before, start_of_test_split)
from spikeviz.evaluation.stretch import setup  # noqa: E402
from spikeviz.models.checkpoint import load_model  # noqa: E402

WAYS = {"joint": True, "independent": False}


def goals(report: dict) -> dict:
    """Which of the population goals one run's fidelity report meets."""
    model, floor, ceiling = report["model"], report["floor"], report.get("ceiling") or {}

    def at_most(k: str, other: dict) -> bool | None:
        return None if other.get(k) is None else bool(model[k] <= other[k])
    top = ceiling.get("corr_similarity_20ms")
    return {"corr_half_ceiling": None if top is None
            else bool(model["corr_similarity_20ms"] >= 0.5 * top),
            "pop_rate_ks_le_ceiling": at_most("pop_rate_ks_10ms", ceiling),
            "isi_ks_le_floor": at_most("isi_ks", floor)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", help="comma-separated names (default: all 13)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    tally: dict[str, dict[str, int]] = {}
    for name, load, checkpoint in targets(args.recordings.split(",") if args.recordings else None):
        t0 = time.perf_counter()
        rec, model = load(), load_model(checkpoint)
        start = start_of_test_split(rec, 1.0)
        st = setup(model, rec, window_s=(start, start + args.seconds)).model_stretch
        adapted = for_target(model, st.X, st)
        reference = reference_before(rec, st)
        row = {"recording": name, "checkpoint": checkpoint.name, "units": st.X.shape[1]}
        for way, joint in WAYS.items():
            begun = free_start(adapted, st, joint)
            row[f"{way}.copula"] = None if begun[1] is None else begun[1].to_dict()
            for seed in range(args.seeds):
                bins, _, _ = free_trains(adapted, st, len(st.targets), seed, joint=joint, start=begun)
                report = fidelity(st, bins, reference)
                row[f"{way}.{seed}"] = {k: report["model"].get(k) for k in POPULATION}
                for goal, met in goals(report).items():
                    key = f"{way}.{seed}.{goal}"
                    tally.setdefault(key, {"met": 0, "of": 0})
                    tally[key]["met"] += bool(met)
                    tally[key]["of"] += met is not None
        for who in ("real", "floor", "ceiling"):
            row[who] = {k: (report.get(who) or {}).get(k) for k in POPULATION}
        row["s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
    print(json.dumps({"summary": tally}), flush=True)


if __name__ == "__main__":
    main()
