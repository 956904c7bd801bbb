"""Fidelity table (issue 13): generated vs real, teacher and free, in every direction, beside a Poisson floor and a real-vs-real ceiling.

Each cell is what `spikeviz generate --checkpoint C --session S --mode M --start 60 --seconds 20
--json` reports: calibrated on 30-60 s of the target, generated over 60-80 s.
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor

SESSIONS = ("invivo_NYU-40_2021-04-14_001", "invitro_210511001_bh", "invitro_210511001_lh")
# Every checkpoint the dashboard offers across domains (the unit-agnostic generalists, trained on
# the train splits of all bundled sessions), the left-out ones that never saw the session, and one
# per-session model within its own session.
DIRECTIONS = [(c, s) for s in SESSIONS for c in (
    "generalist-focal", "generalist-dice", f"loso/generalist-focal-without-{s}-seed0",
    f"loso/generalist-dice-without-{s}-seed0")] + [("invitro_210511001_bh-focal", "invitro_210511001_bh")]
KEYS = ["count_ratio", "rate_spearman", "active_fraction", "isi_ks", "median_cv",
        "median_fano_100ms", "corr_similarity_10ms", "synchrony"]


def cell(job: tuple[str, str, str, float, float]) -> dict:
    import time

    import torch

    from spikeviz import load_model, load_session
    from spikeviz.data.catalog import models_dir
    from spikeviz.evaluation.pipeline import generate_window, generated_fidelity

    torch.set_num_threads(1)
    checkpoint, session, mode, start, seconds = job
    model = load_model(models_dir() / f"{checkpoint}.safetensors")
    rec = load_session(session)
    t = time.perf_counter()
    gen = generate_window(model, rec, (start, start + seconds), mode=mode)
    return {"checkpoint": checkpoint, "session": session, "mode": mode,
            "seconds": round(time.perf_counter() - t, 1),
            "calibration": gen.recording.source["generated_by"]["calibration"]
            } | generated_fidelity(gen, rec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--start", type=float, default=60.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="also write the cells as JSON here")
    args = p.parse_args()
    jobs = [(c, s, m, args.start, args.seconds) for c, s in DIRECTIONS for m in ("teacher", "free")]
    with ProcessPoolExecutor(args.workers) as pool:
        cells = list(pool.map(cell, jobs))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(cells, f)
    print("| checkpoint -> session | mode | who | " + " | ".join(KEYS) + " | count ratio per 10 s |")
    print("|---|---|---|" + "---|" * (len(KEYS) + 1))
    for c in cells:
        for who in ("model", "floor", "ceiling"):
            e = c[who]
            vals = ["-" if e is None or e[k] is None else f"{e[k]:.3f}" for k in KEYS]
            blocks = " ".join(f"{b:.2f}" for b in (e or {}).get("count_ratio_per_block", [])
                              if b is not None)
            print(f"| {c['checkpoint']} -> {c['session']} | {c['mode']} | {who} | "
                  + " | ".join(vals) + f" | {blocks} |")


if __name__ == "__main__":
    main()
