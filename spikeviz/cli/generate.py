"""`spikeviz generate`: teacher-forced or free-running spike trains from a checkpoint, written as NWB or a table."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import SpikevizError
from . import add_data_options, check_writable, load_from_args


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
                      help="pooled threshold tuned on the calibration warm-up before --start "
                           "(at --start 0: the first minute of the data's training half)")
    p.add_argument("--draw", metavar="RULE",
                   help="draw rule: bernoulli (the default), pooled (the default with "
                        "--threshold or --preset), unit-density or lift; "
                        "--threshold is the rule's number: a probability (pooled), a multiple of "
                        "each unit's expected count (unit-density) or of its rate (lift)")
    p.add_argument("--seed", type=int, default=0, help="seed of Bernoulli sampling")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: generated against the real stretch (fidelity "
                        "report with a real-vs-real ceiling and a Poisson floor)")
    p.add_argument("--out", required=True,
                   help="output: .nwb, a spike-time table (.csv, .tsv, .parquet, .npz) or a "
                        "SpikeInterface sorting folder (.si, needs spikeviz[interop])")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..io import OUTPUT_SUFFIXES, write_recording
    from ..predict import DRAW_RULES, generate_recording

    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SpikevizError(f"unknown output type {out.suffix or '(none)'}: use one of "
                            f"{', '.join(OUTPUT_SUFFIXES)}", out)
    if out.is_dir() and out.suffix.lower() != ".si":
        raise SpikevizError("is a folder: give a file name", out)
    check_writable(out)
    if out.exists() and not args.force:
        raise SpikevizError("exists already: pass --force to replace it", out)
    if not (math.isfinite(args.seconds) and args.seconds > 0) or not (
            math.isfinite(args.start) and args.start >= 0):
        raise SpikevizError(f"--seconds must be positive and --start not negative, got "
                            f"{args.seconds} and {args.start}")
    if args.draw is not None and args.draw not in DRAW_RULES:
        raise SpikevizError(f"unknown --draw {args.draw!r}: use one of {', '.join(DRAW_RULES)}")
    if args.threshold is not None and args.draw in (None, "pooled") and not 0 <= args.threshold <= 1:
        raise SpikevizError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    if args.threshold is not None and not (math.isfinite(args.threshold) and args.threshold >= 0):
        raise SpikevizError(f"--threshold must not be negative, got {args.threshold}")
    if args.preset and args.draw not in (None, "pooled"):
        raise SpikevizError(f"--preset tunes a pooled threshold: it does not go with --draw "
                            f"{args.draw}")
    if args.seed < 0:
        raise SpikevizError(f"--seed must not be negative, got {args.seed}")
    model = load_model(args.checkpoint)
    recording = load_from_args(args)
    generated = generate_recording(model, recording, args.mode, args.seconds, args.start,
                                   args.threshold, args.preset, args.seed, draw=args.draw)
    try:
        write_recording(generated, out)
    except OSError as exc:
        raise SpikevizError(f"cannot write it ({exc.strerror or exc})", out) from exc
    made = generated.source["generated_by"]
    if args.json:
        from ..stats import recording_fidelity

        print(json.dumps({"out": str(out), "generated_by": made}
                         | recording_fidelity(recording, generated, args.start, args.seed)))
        return 0
    real = recording.slice(args.start, args.start + args.seconds) if args.mode == "teacher" else None
    print(f"{out}: {generated.n_spikes:,} spikes in {generated.duration_s:g} s x "
          f"{generated.n_units} units ({generated.rates_hz.mean():.2f} Hz a unit"
          + (f"; real data {real.select_units(list(generated.unit_ids)).rates_hz.mean():.2f} Hz"
             if real is not None else "") + ")"
          + (f", threshold {made['threshold']:.4g}" if made["threshold"] is not None else
             f", Bernoulli sampling, seed {args.seed}"))
    return 0
