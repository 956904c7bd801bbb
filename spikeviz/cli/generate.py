"""`spikeviz generate`: teacher-forced or free-running spike trains from a checkpoint, written as NWB or a table."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ..errors import SpikevizError
from . import add_data_options, load_from_args

THRESHOLD_BINS = 60_000   # the stretch of training data a threshold preset is tuned on (1 min at 1 ms)


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate spike trains with a trained model",
                       description="Generate spikes from a checkpoint: teacher-forced (each bin "
                                   "drawn from the real past) or free-running (the model's own "
                                   "draws fed back). Default draw: Bernoulli sampling.")
    p.add_argument("--checkpoint", required=True, help="a spikeviz .safetensors checkpoint")
    p.add_argument("--data", help="a recording file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--mode", choices=("teacher", "free"), default="teacher")
    p.add_argument("--seconds", type=float, default=10.0, help="length to generate (default 10)")
    p.add_argument("--start", type=float, default=0.0,
                   help="where in the recording (s): teacher generates over [start, start+S), "
                        "free continues the real past before start")
    draw = p.add_mutually_exclusive_group()
    draw.add_argument("--threshold", type=float, help="spike where p >= T (instead of sampling)")
    draw.add_argument("--preset", choices=("youden", "max-f1", "density"),
                      help="threshold tuned on the first minute of the data's training half")
    p.add_argument("--seed", type=int, default=0, help="seed of Bernoulli sampling")
    p.add_argument("--out", required=True, help="output .nwb, .csv, .parquet or .npz")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..binning import bin_spikes
    from ..checkpoint import check_data, load_model
    from ..io.nwb import write_nwb
    from ..io.table import SUFFIXES, write_table
    from ..predict import generate
    from ..predictor import split_bounds
    from ..recording import Recording
    from ..training import scores_for_range

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix != ".nwb" and suffix not in SUFFIXES:
        raise SpikevizError(f"unknown output type {suffix or '(none)'}: use .nwb or one of "
                            f"{', '.join(SUFFIXES)}", out)
    if out.is_dir():
        raise SpikevizError("is a folder: give a file name", out)
    _writable_folder(out)
    if out.exists() and not args.force:
        raise SpikevizError("exists already: pass --force to replace it", out)
    if not (math.isfinite(args.seconds) and args.seconds > 0) or not (
            math.isfinite(args.start) and args.start >= 0):
        raise SpikevizError(f"--seconds must be positive and --start not negative, got "
                            f"{args.seconds} and {args.start}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise SpikevizError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    if args.seed < 0:
        raise SpikevizError(f"--seed must not be negative, got {args.seed}")
    model = load_model(args.checkpoint)
    recording = load_from_args(args)
    where = recording.source.get("path")
    bin_ms = float(model.meta.get("bin_ms", 1.0))
    n_units = recording.n_units if model.config.shared_units else model.config.n_units
    check_data(model, recording.n_units if recording.n_units < n_units else n_units, bin_ms, where)
    binned = bin_spikes(recording, bin_ms=bin_ms, n_units=n_units)
    X = binned.X
    lo = int(round(args.start * 1000.0 / bin_ms))
    n = int(round(args.seconds * 1000.0 / bin_ms))
    if lo >= len(X) or (args.mode == "teacher" and lo + n > len(X)):
        raise SpikevizError(f"[{args.start:g}, {args.start + args.seconds:g}) s is not inside the "
                            f"recording ({recording.duration_s:g} s)", where)

    threshold = args.threshold
    if args.preset:
        from ..metrics import threshold_preset

        a, b = split_bounds(len(X))["train"]
        P, Y = scores_for_range(model, X, a, min(b, a + THRESHOLD_BINS))
        threshold = float(threshold_preset(Y, P, args.preset))
    warmup = model.config.context + int(4 * max(model.config.trace_taus, default=0))
    w = max(0, lo - warmup)
    if args.mode == "teacher":
        # Row r of G is bin w + r + 1; keep the bins of [lo, lo + n) (bin 0 has no past).
        G = generate(model, X[w:lo + n - 1], "teacher", threshold=threshold, seed=args.seed)
        first = max(lo, 1)
        bins = np.zeros((n, X.shape[1]), dtype=np.uint8)
        bins[first - lo:] = G[first - w - 1:]
    else:
        bins = generate(model, X[w:lo], "free", threshold=threshold, seed=args.seed, n_bins=n)
    trains = tuple(np.flatnonzero(bins[:, j]) * (bin_ms / 1000.0) for j in range(bins.shape[1]))
    generated = Recording(f"{recording.name}-{args.mode}", binned.unit_ids, trains,
                          n * bin_ms / 1000.0,
                          {"format": "generated", "checkpoint": str(args.checkpoint),
                           "mode": args.mode, "start_s": args.start, "seed": args.seed,
                           "threshold": threshold})
    description = (f"spikeviz {args.mode} generation by {Path(args.checkpoint).name} from "
                   f"{recording.name} at {args.start:g} s, "
                   + (f"threshold {threshold:.4g}" if threshold is not None
                      else f"Bernoulli sampling, seed {args.seed}"))
    try:
        if suffix == ".nwb":
            write_nwb(generated, out, description=description)
        else:
            write_table(generated, out)
    except OSError as exc:
        raise SpikevizError(f"cannot write it ({exc.strerror or exc})", out) from exc
    rate = bins.mean() * 1000.0 / bin_ms
    print(f"{out}: {bins.sum():,} spikes in {n * bin_ms / 1000.0:g} s x {bins.shape[1]} units "
          f"({rate:.2f} Hz a unit; real data {X[lo:lo + n].mean() * 1000.0 / bin_ms:.2f} Hz)"
          + (f", threshold {threshold:.4g}" if threshold is not None else ""))
    return 0


def _writable_folder(out: Path) -> None:
    """Refuse an output whose folder cannot be created or written, before any work is done."""
    import os

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpikevizError(f"cannot create its folder ({exc.strerror or exc})", out) from exc
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise SpikevizError(f"its folder {out.parent} is not writable", out)
