"""Peak training memory estimated from the preset, batch, context and unit count, checked before training."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import SpikevizError
from ..data.binning import SPLIT_FRACTIONS
from ..models.model import PRESETS
from .loop import BATCH

GB = 1e9
# Float32 tensors a training step keeps per (sequence, position, model feature) and per attention
# score; measured on CPU with benchmarks/bench_train_memory.py (docs/memory.md).
ACTIVATIONS_PER_FEATURE = 16
# Training with dropout runs attention on the math path: it keeps the (L x L) scores, their softmax
# and the dropout mask for backward; without dropout the fused kernel keeps O(L) per head.
SCORES_KEPT = 4
# Modules that training imports after the check (scikit-learn for calibration, metrics).
LIBRARIES = 100_000_000
# Headroom over the estimate (measured peaks were within 3 % of it): better refused than killed.
MARGIN = 1.1


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training needs on top of the running process, by part."""

    data: int        # binned spikes and the training split's traces, kept throughout
    filtering: int   # float64 temporaries while traces are filtered (before steps, in validation)
    step: int        # one batch's activations, attention scores included
    attention: int   # the attention scores alone (part of `step`)
    model: int       # weights, gradients and AdamW moments
    preset: str
    batch_size: int
    context: int

    @property
    def total(self) -> int:
        # Filtering and steps take turns: the peak holds the larger of the two.
        return LIBRARIES + self.data + self.model + max(self.filtering, self.step)


def estimate_training(preset: str, n_units: int, n_bins: int, batch_size: int | None = None,
                      context: int | None = None) -> MemoryEstimate:
    """Memory of `spikeviz train` for `n_bins` bins of `n_units` units, beyond the process itself.

    Attention costs O(context^2) per head and sequence when dropout is on (the paper preset),
    O(context) otherwise; transfer-preset batches hold one sequence per unit.
    """
    p = PRESETS[preset]
    B = batch_size or BATCH[preset]
    L = context or p["context"]
    K = len(p.get("trace_taus", ()))
    d, ff, H = p["d_model"], p["d_ff"], p["n_heads"]
    seqs = B * n_units if p.get("shared_units") else B
    train_bins = int(n_bins * (SPLIT_FRACTIONS["train"][1] - SPLIT_FRACTIONS["train"][0]))
    data = n_bins * n_units + train_bins * K * n_units * 2          # uint8 X, float16 traces
    # training._train_traces filters 100,000 bins at a time: float32 out, float64 in and out.
    filtering = min(train_bins, 100_000) * n_units * (4 * K + 24) if K else 0
    feats = 2 * (1 + K) if p.get("shared_units") else (1 + K) * n_units
    attention = SCORES_KEPT * seqs * H * L * L * 4 if p["dropout"] > 0 else 2 * seqs * H * L * 4
    per_layer = ACTIVATIONS_PER_FEATURE * seqs * L * (d + ff // 2) * 4 + attention
    io = 4 * B * L * n_units * (4 + 2 * K) + 3 * seqs * L * feats * 4
    step = p["n_layers"] * per_layer + io
    params = feats * d + p["n_layers"] * (4 * d * d + 2 * d * ff) + d * n_units
    return MemoryEstimate(int(data), int(filtering), int(step), int(p["n_layers"] * attention),
                          16 * params, preset, B, L)


def available_bytes() -> int:
    """Memory the system can still give this process (MemAvailable), via psutil or /proc/meminfo."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_fits(estimate: MemoryEstimate, available: int, n_units: int, n_bins: int) -> None:
    """Refuse, in one line with the estimate and what to change, a training that would not fit."""
    if estimate.total * MARGIN <= available:
        return
    smaller = next((b for b in range(estimate.batch_size - 1, 0, -1)
                    if estimate_training(estimate.preset, n_units, n_bins, b,
                                         estimate.context).total * MARGIN <= available), None)
    advice = (f"use --batch-size {smaller}" if smaller else
              "use --preset fast (context 256) or train on a GPU" if estimate.preset == "paper"
              else "use --seconds to train on less data, or fewer --units")
    attention = (f", attention {estimate.attention / GB:.1f} GB for context {estimate.context:,}"
                 f" x batch {estimate.batch_size}" if estimate.attention > 0.1 * GB else "")
    raise SpikevizError(f"training would need about {estimate.total / GB:.1f} GB (data "
                        f"{estimate.data / GB:.1f} GB{attention}) but {available / GB:.1f} GB are "
                        f"available: {advice}")
