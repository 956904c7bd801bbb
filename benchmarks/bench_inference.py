"""Benchmark: teacher-forced predict_next over 10 minutes of 1-ms bins vs a naive one-forward-per-bin window."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from spikeviz.models.model import SpikeTransformer, compute_traces, preset_config
from spikeviz.generation.predict import predict_next, windows


def forward_flops(cfg, n_units: int, L: int) -> float:
    """Matmul FLOPs of one forward pass over a window of L bins (causal attention counted half)."""
    d, K = cfg.d_model, len(cfg.trace_taus)
    rows = n_units if cfg.shared_units else 1
    f_in = 2 * (1 + K) if cfg.shared_units else (1 + K) * n_units
    n_out = 1 if cfg.shared_units else n_units
    per_token = 2 * f_in * d + 2 * d * n_out + cfg.n_layers * (
        2 * d * 3 * d + 2 * d * d + 4 * d * cfg.d_ff)
    attention = cfg.n_layers * 2 * 2 * d * L * (L + 1) / 2
    return rows * (L * per_token + attention)


def matmul_flops_per_s(n: int = 1024, repeat: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n ** 3 * repeat / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="fast", choices=("fast", "transfer", "paper"))
    p.add_argument("--bins", type=int, default=600_000)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--naive-bins", type=int, default=200, help="bins the naive method is timed on")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SpikeTransformer(preset_config(args.preset, args.units)).eval()
    model.meta = {"bin_ms": 1.0}
    cfg = model.config
    # Synthetic spikes at the in vitro density (1.8 %): speed does not depend on content.
    X = (np.random.default_rng(0).random((args.bins, args.units)) < 0.018).astype(np.uint8)

    matmul = matmul_flops_per_s()
    t = time.perf_counter()
    predict_next(model, X)
    ours = time.perf_counter() - t
    L = min(cfg.context, args.bins)
    flops = len(windows(args.bins, cfg.context)) * forward_flops(cfg, args.units, L)

    # Naive: one forward pass over the last `context` bins for every bin (traces precomputed and
    # not timed, which favours the naive method), timed on a subsample and extrapolated.
    tr = compute_traces(X[:L + args.naive_bins], cfg.trace_taus)
    xs = torch.from_numpy(X[:L + args.naive_bins].astype(np.float32))
    trs = torch.from_numpy(tr)
    with torch.inference_mode():
        t = time.perf_counter()
        for i in range(L, L + args.naive_bins):
            model.probabilities(model(xs[None, i - L + 1:i + 1], trs[None, i - L + 1:i + 1]))
        naive = (time.perf_counter() - t) / args.naive_bins * args.bins
    result = {
        "preset": args.preset, "bins": args.bins, "units": args.units, "threads": args.threads,
        "seconds": round(ours, 2), "bins_per_s": round(args.bins / ours),
        "naive_bins_per_s": round(args.bins / naive, 1),
        "naive_note": f"timed on {args.naive_bins} bins and extrapolated",
        "speedup": round(naive / ours, 1),
        "flop_per_s": round(flops / ours / 1e9, 2) * 1e9,
        "matmul_flop_per_s": round(matmul / 1e9, 2) * 1e9,
        "flop_fraction": round(flops / ours / matmul, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
