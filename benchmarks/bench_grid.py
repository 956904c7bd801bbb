"""Grid wall time with 1 vs 2 Dask workers on the bundled sessions, and peak memory; last line JSON.

Usage: python benchmarks/bench_grid.py [--seconds 120] [--epochs 1] [--eval-seconds 20]
Each run starts from an empty cache, so every cell is computed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import PeakRSS  # noqa: E402

from spikeviz.evaluation.grid import GridSpec, default_sessions, run_grid  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval-seconds", type=float, default=20.0)
    ap.add_argument("--losses", default="focal")
    args = ap.parse_args()
    spec = GridSpec(sessions=default_sessions(), losses=tuple(args.losses.split(",")),
                    epochs=args.epochs, seconds=args.seconds, eval_seconds=args.eval_seconds)
    out = {"sessions": list(spec.sessions), "losses": list(spec.losses), "seconds": args.seconds,
           "epochs": args.epochs, "cells": len(spec.sessions) ** 2 * len(spec.losses)}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp, PeakRSS() as mem:
            t0 = time.perf_counter()
            result = run_grid(spec, tmp, workers=workers)
            wall = time.perf_counter() - t0
        assert result["cached"] == 0
        out[f"wall_s_{workers}_worker"] = round(wall, 1)
        out[f"peak_rss_mb_{workers}_worker"] = round(mem.peak_mb)
        print(f"{workers} worker(s): {wall:.1f} s, peak RSS {mem.peak_mb:.0f} MB", flush=True)
    out["speedup_2_vs_1"] = round(out["wall_s_1_worker"] / out["wall_s_2_worker"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
