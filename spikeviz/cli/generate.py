"""`spikeviz generate`: teacher-forced or free-running spike trains from a checkpoint, written as NWB or a table."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from datetime import datetime
from pathlib import Path

from ..errors import SpikevizError
from ..data.recording import Recording
from . import add_data_options, add_without_glm, check_not_input, check_writable, load_from_args, note


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate spike trains with a trained model",
                       description="Generate spikes from a checkpoint: teacher-forced (each bin "
                                   "drawn from the real past) or free-running (the model's own "
                                   "draws fed back). Default draw: Bernoulli sampling.")
    generator = p.add_mutually_exclusive_group(required=True)
    generator.add_argument("--checkpoint",
                           help="a spikeviz .safetensors checkpoint, or a shipped one by name")
    generator.add_argument("--model", metavar="NAME",
                           help="instead of a checkpoint, a population model fitted on the "
                                "data's own train split: states (a hidden population state "
                                "drives every unit, its units drawn jointly; free runs keep "
                                "bursts and correlations and cannot run away)")
    p.add_argument("--data", help="a recording file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--mode", choices=("teacher", "free"), default="teacher",
                   help="teacher: each bin from the real past; free: the model's own draws "
                        "fed back")
    p.add_argument("--seconds", type=float, default=10.0, help="length to generate (s)")
    p.add_argument("--start", type=float,
                   help="where in the recording (s): teacher generates over [start, start+S), "
                        "free continues the real past before start (default: the start of the "
                        "test split). Output times count from --start")
    draw = p.add_mutually_exclusive_group()
    draw.add_argument("--threshold", type=float, help="spike where p >= T (instead of sampling)")
    draw.add_argument("--threshold-rule", choices=("youden", "max-f1", "density"),
                      help="pooled threshold tuned on the calibration warm-up before --start "
                           "(at --start 0: the first minute of the data's training half)")
    p.add_argument("--draw", metavar="RULE",
                   help="draw rule: bernoulli (the default), pooled (the default with "
                        "--threshold or --threshold-rule), unit-density or lift; --threshold is "
                        "the rule's number: a probability (pooled), a multiple of each unit's "
                        "expected count (unit-density) or of its rate (lift)")
    p.add_argument("--seed", type=int, default=0, help="seed of Bernoulli sampling")
    p.add_argument("--independent-draws", action="store_true",
                   help="Bernoulli sampling (teacher-forced or free) draws each unit on its own; by "
                        "default a bin's units are drawn jointly, each at its own rate, "
                        "with shared slow factors fitted on the warm-up to the data's 20-ms "
                        "count correlations (the trains' provenance says how)")
    add_without_glm(p)
    p.add_argument("--units", type=int,
                   help="units to generate: the most active of the train split, as `evaluate` "
                        "and the dashboard pick them (a model's own units on its training data; "
                        "default 128, or all of a recording with fewer)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: generated against the real stretch (fidelity "
                        "report with a real-vs-real ceiling and a Poisson floor)")
    p.add_argument("--out", required=True,
                   help="output: .nwb, a spike-time table (.csv, .tsv, .parquet, .npz; a CSV/TSV "
                        "gets its units, duration and provenance in <out>.json beside it) or a "
                        "SpikeInterface sorting folder (.si, needs spikeviz[interop])")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    nwb = p.add_argument_group("NWB metadata", "for .nwb output, when the data does not carry it "
                               "(an NWB source's own subject and session start are kept)")
    nwb.add_argument("--subject-id", help="the subject's id (default: unknown)")
    nwb.add_argument("--species", type=matching(SPECIES, "a Latin binomial (Mus musculus) or an "
                                                         "NCBI taxonomy link"),
                     help="Latin binomial (Mus musculus) or an NCBI taxonomy link "
                          "(default: Metazoa, an unknown animal)")
    nwb.add_argument("--sex", choices=("M", "F", "O", "U"), help="NWB's code (default: U, unknown)")
    nwb.add_argument("--age", type=matching(AGE, "an ISO 8601 duration such as P90D or P60D/P90D"),
                     help="ISO 8601 duration, e.g. P90D, or a range P60D/P90D "
                          "(default: P0D/, unknown)")
    nwb.add_argument("--session-start", type=iso_time, metavar="ISO_TIME",
                     help="when the recording session began, e.g. 2024-05-11T10:30:00+02:00 "
                          "(default: the time of writing)")
    p.set_defaults(run=run)


# The forms NWB Inspector accepts (a file with another form fails its critical checks).
SPECIES = r"[A-Z][a-z]* [a-z]+|http://purl\.obolibrary\.org/obo/NCBITaxon_\d+"
_DURATION = r"P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
AGE = rf"{_DURATION}(/({_DURATION})?)?|/{_DURATION}"


def matching(pattern: str, what: str):
    """An argparse type accepting only text that matches `pattern` in full."""
    def check(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return text
    return check


def iso_time(text: str) -> datetime:
    """--session-start: an ISO 8601 date and time (local time when no offset is given)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. "
                                         f"2024-05-11T10:30:00+02:00)") from None
    return when if when.tzinfo else when.astimezone()


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import resolve_checkpoint
    from ..data.io import OUTPUT_SUFFIXES, write_recording
    from ..data.io.table import sidecar_path
    from ..evaluation.pipeline import (FITTED_GENERATORS, generate_fitted, generate_window,
                                       generated_fidelity, start_of_test_split)
    from ..evaluation.stretch import N_UNITS
    from ..generation.predict import DRAW_RULES
    from ..models.checkpoint import load_model

    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SpikevizError(f"unknown output type {out.suffix or '(none)'}: use one of "
                            f"{', '.join(OUTPUT_SUFFIXES)}", out)
    if out.is_dir() and out.suffix.lower() != ".si":
        raise SpikevizError("is a folder: give a file name", out)
    check_writable(out)
    check_not_input(out, args.data, args.checkpoint and resolve_checkpoint(args.checkpoint))
    for path in (out, sidecar_path(out)) if out.suffix.lower() in (".csv", ".tsv") else (out,):
        if path.exists() and not args.force:
            raise SpikevizError("exists already: pass --force to replace it", path)
    if not (math.isfinite(args.seconds) and args.seconds > 0) or not (
            args.start is None or math.isfinite(args.start) and args.start >= 0):
        raise SpikevizError(f"--seconds must be positive and --start not negative, got "
                            f"{args.seconds} and {args.start}")
    if args.draw is not None and args.draw not in DRAW_RULES:
        raise SpikevizError(f"unknown --draw {args.draw!r}: use one of {', '.join(DRAW_RULES)}")
    if args.threshold is not None and args.draw in (None, "pooled") and not 0 <= args.threshold <= 1:
        raise SpikevizError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    if args.threshold is not None and not (math.isfinite(args.threshold) and args.threshold >= 0):
        raise SpikevizError(f"--threshold must not be negative, got {args.threshold}")
    if args.threshold_rule and args.draw not in (None, "pooled"):
        raise SpikevizError(f"--threshold-rule tunes a pooled threshold: it does not go with "
                            f"--draw {args.draw}")
    if args.seed < 0 or args.units is not None and args.units < 1:
        raise SpikevizError(f"--seed must not be negative and --units positive, got {args.seed} "
                            f"and {args.units}")
    draw = args.draw or ("pooled" if args.threshold is not None or args.threshold_rule
                         else "bernoulli")
    if args.independent_draws and (args.model or draw != "bernoulli"):
        raise SpikevizError("--independent-draws applies to Bernoulli sampling from a "
                            "checkpoint: threshold rules draw each unit on its own, and --model "
                            "states draws a bin's units from its own state")
    if args.model is not None:
        if args.model not in FITTED_GENERATORS:
            raise SpikevizError(f"unknown --model {args.model!r}: use one of "
                                f"{', '.join(FITTED_GENERATORS)}")
        if args.mode == "free" and draw != "bernoulli":
            raise SpikevizError(f"a free run of --model {args.model} draws with its own "
                                f"Bernoulli rule: --draw, --threshold and --threshold-rule "
                                f"apply to teacher-forced trains")
        recording = load_from_args(args)
        start = args.start if args.start is not None else start_of_test_split(recording, 1.0)
        result = generate_fitted(args.model, recording, (start, start + args.seconds),
                                 mode=args.mode, draw=draw, level=args.threshold,
                                 rule=args.threshold_rule, seed=args.seed, n_units=args.units or N_UNITS)
    else:
        model = load_model(resolve_checkpoint(args.checkpoint))
        recording = load_from_args(args)
        start = args.start if args.start is not None else start_of_test_split(
            recording, float(model.meta.get("bin_ms", 1.0)))
        result = generate_window(model, recording, (start, start + args.seconds),
                                 mode=args.mode, draw=draw, level=args.threshold,
                                 rule=args.threshold_rule, seed=args.seed, n_units=args.units or N_UNITS,
                                 checkpoint=args.checkpoint,   # its name, as the page names it
                                 glm=not args.without_glm, joint=not args.independent_draws)
    generated, stretch = result.recording, result.setup.model_stretch
    for line in adjustments(recording, generated, stretch, start, args.seconds, args.units):
        note(line)
    nwb = {}
    if out.suffix.lower() == ".nwb":
        from ..data.io.nwb import session_metadata

        # The trains imitate the data's subject and session: its NWB metadata comes along.
        kept = {k: recording.source[k] for k in ("subject", "session_start_time")
                if k in recording.source}
        generated = dataclasses.replace(generated, source=generated.source | kept)
        nwb = {"subject": {"subject_id": args.subject_id, "species": args.species,
                           "sex": args.sex, "age": args.age}, "session_start": args.session_start}
        defaulted = session_metadata(generated, **nwb)[2]
        if defaulted:
            now = " (the session start as the time of writing)" if "--session-start" in defaulted \
                else ""
            note(f"{out.name}: the data does not say its {', '.join(o[2:] for o in defaulted)}: "
                 f"written as unknown{now}; set with {', '.join(defaulted)}")
    elif any(v is not None for v in (args.subject_id, args.species, args.sex, args.age,
                                      args.session_start)):
        raise SpikevizError("--subject-id, --species, --sex, --age and --session-start only "
                            "apply to .nwb output", out)
    try:
        write_recording(generated, out, **nwb)
    except OSError as exc:
        raise SpikevizError(f"cannot write it ({exc.strerror or exc})", out) from exc
    made = generated.source["generated_by"]
    if args.json:
        print(json.dumps({"out": str(out), "generated_by": made}
                         | generated_fidelity(result, recording, args.seed)))
        return 0
    real = recording.slice(stretch.start_s, stretch.start_s + generated.duration_s) \
        .select_units(list(generated.unit_ids)) if args.mode == "teacher" else None
    print(f"{out}: {generated.n_spikes:,} spikes in {generated.duration_s:g} s x "
          f"{generated.n_units} units from {stretch.start_s:g} s (times count from there); "
          f"{rates(generated)}" + (f"; real data {rates(real)}" if real is not None else "")
          + (f"; threshold {made['threshold']:.4g}" if made["threshold"] is not None else
             f"; Bernoulli sampling, seed {args.seed}" + (
                 ", a bin's units drawn jointly" if made.get("joint_draws") else "")
             if draw == "bernoulli" else
             f"; {draw} at {made['draw_level']}"))
    return 0


def adjustments(recording: Recording, generated: Recording, stretch, start: float,
                seconds: float, units: int | None = None) -> list[str]:
    """One line for each way the generated trains differ from what was asked, naming the option
    that changes it."""
    lines = []
    if generated.n_units < recording.n_units:
        lines.append(f"generated the {generated.n_units} most active of the {recording.n_units} "
                     f"units of {recording.name} (their train split), as evaluate and the "
                     f"dashboard pick them: --units to change")
    elif units and generated.n_units < units:
        lines.append(f"generated all {generated.n_units} units of {recording.name}, fewer than "
                     f"--units {units}")
    stop, bin_s = stretch.start_s + stretch.duration_s, stretch.bin_ms / 1000.0
    # Within a bin is the bins' rounding (a 3-ms bin does not tile 5 s), not a moved window.
    if abs(stretch.start_s - start) >= bin_s or abs(stop - (start + seconds)) >= bin_s:
        lines.append(f"generated over [{stretch.start_s:g}, {stop:g}) s, not [{start:g}, "
                     f"{start + seconds:g}) s: the window needs the 30-s warm-up before it and "
                     f"ends with the recording ({recording.duration_s:g} s): --start and "
                     f"--seconds to change")
    return lines


def rates(recording: Recording) -> str:
    """Active units and the mean and max unit rate: a mean alone hides one unit at 700 Hz."""
    r = recording.rates_hz
    return (f"{int((recording.spike_counts > 0).sum())} active units, {r.mean():.2f} Hz a unit "
            f"(max {r.max():.1f} Hz)")
