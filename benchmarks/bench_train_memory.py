"""Estimated (spikeviz.training.memory) against measured peak memory of training, per preset; last line JSON.

    .venv/bin/python benchmarks/bench_train_memory.py [--quick]

Each configuration trains one epoch in a fresh process (1 torch thread) and reports the process's
peak resident memory (ru_maxrss) next to its resident memory before training plus the estimate.
The paper preset's context (15,625 bins) needs tens of GB on CPU: it is measured at shorter
contexts, which exercise the same O(context^2) attention term.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VITRO, VIVO = "invitro_210511001_bh", "invivo_NYU-40_2021-04-14_001"
# (preset, session, seconds, batch size, context override)
CONFIGS = [("fast", VITRO, None, None, None), ("transfer", VITRO, 120, None, None),
           ("paper", VITRO, 60, 2, 1024), ("paper", VITRO, 60, 2, 2048),
           ("paper", VITRO, 60, 1, 3072), ("fast", VIVO, None, None, None)]

CHILD = r"""
import json, resource, sys, tempfile
import psutil, torch
import spikeviz.models.model as model
preset, session, seconds, batch, context = json.loads(sys.argv[1])
if context:   # the same model at a shorter context
    model.PRESETS[preset] = dict(model.PRESETS[preset], context=context)
from spikeviz.data.binning import n_bins_of
from spikeviz.data.catalog import load_session
from spikeviz.training.memory import estimate_training
from spikeviz.training.loop import TrainOptions, train_recording
torch.set_num_threads(1)
rec = load_session(session)
n_bins = n_bins_of(min(seconds or rec.duration_s, rec.duration_s), 1.0)
base = psutil.Process().memory_info().rss
est = estimate_training(preset, 128, n_bins, batch, context)
with tempfile.TemporaryDirectory() as tmp:
    train_recording(rec, f"{tmp}/m.safetensors", TrainOptions(preset=preset, epochs=1,
                    batch_size=batch), seconds=seconds, progress=False, log=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "estimate": base + est.total, "attention": est.attention,
                  "peak": peak}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip the 1-hour in vivo session")
    p.add_argument("--presets", default="fast,transfer,paper", help="comma-separated presets")
    p.add_argument("--session", help="only the configurations on this bundled session")
    args = p.parse_args()
    rows = []
    for cfg in CONFIGS[:-1] if args.quick else CONFIGS:
        if cfg[0] not in args.presets.split(",") or args.session not in (None, cfg[1]):
            continue
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        preset, session, seconds, batch, context = cfg
        row = {"preset": preset, "session": session, "seconds": seconds, "batch": batch,
               "context": context, "estimate_gb": round(r["estimate"] / 1e9, 2),
               "peak_gb": round(r["peak"] / 1e9, 2), "base_gb": round(r["base"] / 1e9, 2),
               "ratio": round(r["estimate"] / r["peak"], 2)}
        rows.append(row)
        print(f"{preset:9s} {session[:20]:20s} {seconds or 'all'!s:>4} s  batch {batch or '-'!s:>2}"
              f"  context {context or '-'!s:>5}:  estimate {row['estimate_gb']:5.2f} GB, "
              f"peak {row['peak_gb']:5.2f} GB (process before training {row['base_gb']:.2f} GB), "
              f"estimate/peak {row['ratio']:.2f}", flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
