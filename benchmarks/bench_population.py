"""Population statistics (issue "bursts, synchrony and correlations"): their speed on a page's window,
and where the shipped generalist stands between the Poisson floor and the real-vs-real ceiling.

1. Speed: spikeviz.measures.population's statistics of a real and a generated 60-s window of 128 units and
   their distances, as each fidelity entry of the dashboard computes them (one BLAS thread, as the
   server sets it: dashboard/app.py), median of --repeats.
2. Fidelity: for each bundled session and a few ../shared/data/corpus recordings, what
   `spikeviz generate --checkpoint generalist-focal --mode teacher|free --seconds S --json` reports
   from the start of the test split (calibrated on the 30 s before it): each statistic of the real
   stretch, the rate-matched Poisson floor, the teacher-forced and free-running trains, and the
   real-vs-real ceiling (the neighbouring stretch of the same length).

`python benchmarks/bench_population.py` (about 2 minutes on 1 core); a table per recording, then
one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

SESSIONS = ("invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"  # ../shared
CORPUS_FILES = ("aplysia_Jun0214da01.csv", "rat_ca1_lineartrack.csv")
KEYS = ("count_ratio", "isi_ks", "corr_similarity_10ms", "corr_similarity_20ms", "mean_corr_20ms",
        "pop_rate_ks_10ms", "pop_rate_w1_10ms", "pop_rate_q95_hz", "pop_rate_q99_hz", "pop_rate_q99.9_hz",
        "synchrony", "sync_1ms_2pct", "sync_1ms_5pct", "sync_1ms_10pct", "sync_10ms_2pct",
        "sync_10ms_5pct", "sync_10ms_10pct", "pop_acf_time_ms", "pop_acf_mad", "count_tv_1ms")
COLUMNS = (("real", "real"), ("floor", "floor (Poisson)"), ("teacher", "teacher-forced"),
           ("free", "free-running"), ("ceiling", "ceiling (real vs real)"))


def page_speed(repeats: int) -> float:
    """Median ms of population statistics and distances for a real and a generated 60-s window."""
    from threadpoolctl import threadpool_limits

    import spikeviz
    from spikeviz.measures.population import population_distances, population_stats

    X = spikeviz.bin_spikes(spikeviz.load_session(SESSIONS[0]), start_s=300.0, stop_s=360.0).X
    rng = np.random.default_rng(0)
    G = (rng.random(X.shape, dtype=np.float32) < X.mean(0)).astype(np.uint8)
    assert X.shape == (60_000, 128)
    times = []
    with threadpool_limits(1, user_api="blas"):
        for _ in range(repeats):
            t = time.perf_counter()
            population_distances(population_stats(X), population_stats(G))
            times.append(1000.0 * (time.perf_counter() - t))
    return statistics.median(times)


def recordings():
    """(name, recording) of the bundled sessions and the corpus files that are present."""
    import spikeviz

    for name in SESSIONS:
        yield name, spikeviz.load_session(name)
    for name in CORPUS_FILES:
        if (CORPUS / name).exists():
            yield name.removesuffix(".csv"), spikeviz.load_recording(CORPUS / name, format="table")


def fidelity(name: str, recording, model, seconds: float) -> dict:
    """The generate --json report of each mode, and how long generating took."""
    from spikeviz.evaluation.pipeline import generate_window, generated_fidelity, start_of_test_split

    start = start_of_test_split(recording, 1.0)
    seconds = min(seconds, recording.duration_s - start)
    out = {"name": name, "units": recording.n_units, "start_s": start, "seconds": seconds}
    for mode in ("teacher", "free"):
        t = time.perf_counter()
        generated = generate_window(model, recording, (start, start + seconds), mode=mode)
        out[f"{mode}_s"] = time.perf_counter() - t
        out[mode] = generated_fidelity(generated, recording)
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def columns(cell: dict) -> dict[str, dict]:
    """The table's entries: the floor and ceiling are the same for both modes (same stretch, seed)."""
    r = cell["teacher"]
    return {"real": r["real"], "floor": r["floor"], "teacher": r["model"], "free": cell["free"]["model"],
            "ceiling": r["ceiling"] or {}}


def table(cell: dict) -> str:
    entries = columns(cell)
    where = "before" if cell["teacher"]["ceiling_stretch_s"] else "none"
    lines = [f"\n{cell['name']}: {cell['units']} units, {cell['seconds']:g} s from {cell['start_s']:.1f} s "
             f"(ceiling: the stretch {where}); generated in {cell['teacher_s']:.0f} s (teacher), "
             f"{cell['free_s']:.0f} s (free)",
             "| statistic | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {key} | " + " | ".join(_fmt(entries[who].get(key)) for who, _ in COLUMNS) + " |"
              for key in KEYS]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="generated stretch per recording")
    p.add_argument("--repeats", type=int, default=20, help="timings of the page-speed figure")
    p.add_argument("--out", help="also write the reports as JSON here")
    args = p.parse_args()

    import torch

    from spikeviz import load_model
    from spikeviz.data.catalog import models_dir

    torch.set_num_threads(1)
    page_ms = page_speed(args.repeats)
    print(f"page speed: population statistics + distances of a real and a generated 60-s window of "
          f"128 units: {page_ms:.1f} ms (median of {args.repeats}, one BLAS thread)")
    model = load_model(models_dir() / "generalist-focal.safetensors")
    cells = []
    for name, recording in recordings():
        cells.append(fidelity(name, recording, model, args.seconds))
        print(table(cells[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(cells))
    print(json.dumps({"page_ms": round(page_ms, 1), "recordings": {
        c["name"]: {key: {who: e.get(key) for who, e in columns(c).items()} for key in KEYS} for c in cells}}))


if __name__ == "__main__":
    main()
