"""Benchmark: free-running generation (fused loop for `fast` and `generalist`, KV cache for `transfer`) vs recomputing the context every bin.

Goal (issue 13): the `fast` preset >= 30,000 bins/s on 2 cores and >= 30x the recompute loop.
Each figure is the median of --repeats timings, the loops alternating, so that a busy moment of a
shared machine does not decide it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from spikeviz.models.build import build_model

from spikeviz.models.model import SpikeTransformer, preset_config
from spikeviz.generation.predict import generate


def recompute_rate(model: SpikeTransformer, prompt: np.ndarray, n_bins: int, seed: int) -> float:
    """Bins/s of the same sampling loop with a full forward pass over the last context bins per bin."""
    cfg = model.config
    C = cfg.context
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(prompt[-C:].astype(np.float32))
    decay = model._decay
    tr = torch.zeros(len(cfg.trace_taus), x.shape[1])
    traces = []
    for row in x:                       # traces of the prompt, updated as generation goes
        tr = decay * tr + (1 - decay) * row
        traces.append(tr)
    trs = torch.stack(traces)
    with torch.inference_mode():
        t = time.perf_counter()
        for _ in range(n_bins):
            p = model.probabilities(model(x[None], trs[None]))[0, -1]
            new = (torch.rand(x.shape[1], generator=gen) < p).float()
            tr = decay * tr + (1 - decay) * new
            x = torch.cat((x[1:], new[None]))
            trs = torch.cat((trs[1:], tr[None]))
        return n_bins / (time.perf_counter() - t)


def eager_rate(model: SpikeTransformer, prompt: np.ndarray, n_bins: int, seed: int) -> float:
    """Bins/s of the eager torch loop: one model.step per bin through the KV cache."""
    state = model.start(prompt.shape[1])
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for row in torch.from_numpy(prompt[-model.config.context:].astype(np.float32)):
            logits = model.step(row, state)
        t = time.perf_counter()
        for _ in range(n_bins):
            logits = model.step(torch.bernoulli(model.probabilities(logits), generator=gen), state)
        return n_bins / (time.perf_counter() - t)


def fused_rate(model: SpikeTransformer, prompt: np.ndarray, n_bins: int, seed: int) -> float:
    """Bins/s of `generate` free-running (the fused loop, or the KV cache where none exists)."""
    t = time.perf_counter()
    generate(model, prompt, "free", seed=seed, n_bins=n_bins)
    return n_bins / (time.perf_counter() - t)


def bench(preset: str, units: int, n_bins: int, n_recompute: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(preset_config(preset, units)).eval()
    model.meta = {"bin_ms": 1.0}
    prompt = (np.random.default_rng(0).random((2 * model.config.context, units)) < 0.018
              ).astype(np.uint8)
    generate(model, prompt, "free", n_bins=200)           # warm-up (and the fused loop's compile)
    runs = [(fused_rate(model, prompt, n_bins, seed), recompute_rate(model, prompt, n_recompute, seed),
             eager_rate(model, prompt, max(n_recompute, n_bins // 10), seed))
            for seed in range(1, repeats + 1)]
    kv, full, eager = (statistics.median(r) for r in zip(*runs))
    return {"preset": preset, "units": units, "context": model.config.context,
            "params": model.n_params(), "bins_per_s": round(kv), "eager_kv_bins_per_s": round(eager),
            "recompute_bins_per_s": round(full), "speedup": round(kv / full, 1),
            "speedup_over_eager": round(kv / eager, 1), "repeats": repeats,
            "bins_per_s_runs": [round(r[0]) for r in runs]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bins", type=int, default=20_000, help="bins generated with the KV cache")
    p.add_argument("--recompute-bins", type=int, default=300)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timings per loop; medians are reported")
    p.add_argument("--presets", nargs="+", default=["fast", "transfer", "generalist"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench(preset, args.units, args.bins, args.recompute_bins, args.repeats)
               for preset in args.presets]
    for r in results[1:]:
        print(json.dumps(r))
    print(json.dumps(results[0] | {"threads": args.threads, "other": results[1:]}))


if __name__ == "__main__":
    main()
