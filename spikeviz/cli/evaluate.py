"""`spikeviz evaluate`: score a checkpoint against the baselines on a recording's held-out stretch."""
from __future__ import annotations

import argparse
import json
import math
import sys

from ..errors import SpikevizError
from . import (HelpFormatter, add_data_options, add_baselines, add_without_glm, load_from_args,
               note)

EPILOG = """\
Units: on the checkpoint's own training recording its own columns; on any other recording the
most active units (selection "rate": the 128 most active for a 128-unit model, --units for a
transfer-preset model), so recordings with more units work as they are.
Unit order (no neuron correspondence between sessions): recorded, random:SEED (the paper's
choice), rate-rank (target units ranked by spike count in the warm-up window, mapped to the
source units of the same rank on the source's train split), or auto (default: recorded on the
training recording, rate-rank elsewhere). The resolved order is printed with every result.
Protocols: strict (default) scores P[t] against X[t+1], one step ahead; reference reproduces the
paper code's same-bin scoring (P[t] against X[t]), which is leaky: both are reported, the chosen
one first.
Stretch: the first --seconds (default 200) of the split, preceded by a 30-s warm-up of real past
that ranks units (rate-rank) and, after 10 s of priming, tunes threshold presets: nothing scored
is used for tuning.
Baselines (rate, EWMA tau 50 ms, pooled GLM) are fitted on the source's train split, like the
model, and see the same unit order.
Speed on 2 CPU cores: a fast-preset model scores about 20,000 bins a second, a transfer-preset
one (a sequence per unit) several hundred: give it --seconds 20."""


class EpilogFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the epilog's lines kept as written."""


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint and the baselines on a recording",
                       description="Score a checkpoint's next-bin predictions (ROC-AUC, PR-AUC, "
                                   "per-unit AUCs, operating point) next to the rate, EWMA and GLM "
                                   "baselines.",
                       epilog=EPILOG, formatter_class=EpilogFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a spikeviz .safetensors checkpoint, or a shipped one by name")
    p.add_argument("--data", help="a recording file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--split", choices=("test", "valid", "all"), default="test",
                   help="chronological split to evaluate")
    p.add_argument("--unit-order", default="auto",
                   help="recorded, random:SEED, rate-rank or auto (see below)")
    p.add_argument("--protocol", choices=("strict", "reference"), default="strict",
                   help="strict (causal) or reference (the paper's leaky same-bin scoring)")
    draw = p.add_mutually_exclusive_group()
    draw.add_argument("--threshold", help="operating point: spike where p >= T, T in [0, 1]")
    draw.add_argument("--threshold-rule", choices=("youden", "max-f1", "density"), default="youden",
                      help="operating point tuned on the warm-up: youden (FPR <= 0.005), max-f1, "
                           "or density (as many predicted as real spikes)")
    p.add_argument("--seconds", type=float, default=200.0,
                   help="evaluate the first S seconds of the split (0: all of it)")
    p.add_argument("--units", type=int,
                   help="units for a unit-agnostic model (generalist, transfer): the most active "
                        "(default 128, or all of a recording with fewer)")
    add_baselines(p)
    add_without_glm(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import resolve_checkpoint
    from ..evaluation.evaluate import evaluate_checkpoint
    from ..evaluation.stretch import N_UNITS

    if not (math.isfinite(args.seconds) and args.seconds >= 0):
        raise SpikevizError(f"--seconds must be positive and finite (0 for the whole split), got "
                            f"{args.seconds}")
    if args.units is not None and args.units < 1:
        raise SpikevizError(f"--units must be at least 1, got {args.units}")
    recording = load_from_args(args)
    r = evaluate_checkpoint(str(resolve_checkpoint(args.checkpoint)), recording, split=args.split,
                            unit_order=args.unit_order, protocol=args.protocol,
                            threshold=args.threshold if args.threshold is not None
                            else args.threshold_rule, seconds=args.seconds or None,
                            n_units=args.units or N_UNITS, baselines=args.baselines,
                            glm=not args.without_glm,
                            progress=lambda stage: print(f"evaluating: {stage}", file=sys.stderr,
                                                         flush=True))
    say_fitted(r, recording.n_units, args)
    if args.json:
        print(json.dumps(r))
        return 0
    m = r["model"]
    print(f"{r['checkpoint']} ({r['preset']}, {r['loss']}) on {r['data_name']}")
    print(f"  direction     {r['direction'] or 'unknown'}  (source {r['source']['name']})")
    print(f"  stretch       {r['split']} {r['stretch_s'][0]:g}-{r['stretch_s'][1]:g} s after a "
          f"{r['warmup_s']:g}-s warm-up, {r['n_units']} units, spike density "
          f"{r['base_rate']:.4f}")
    print(f"  protocol      {r['protocol']}{' (leaky)' if r['leaky'] else ''}, unit order "
          f"{r['unit_order']}")
    if r["glm_blend"]:
        a, b, d, _ = r["glm_blend"]["weights"]
        print(f"  model         the generalist blended with glm-coupled: weights {a:.2f} on the model, "
              f"{b:.2f} on the GLM's own terms and {d:.2f} on its partners', fitted on the warm-up "
              f"(--without-glm: alone)")
    print(f"  {'':14}{'ROC-AUC':>9}{'PR-AUC':>9}{'unit ROC':>10}{'bits/spike':>12}")
    print(f"  {'chance':14}{0.5:9.3f}{r['chance']['pr_auc']:9.4f}")
    for name, s in [("model", m)] + list(r["baselines"].items()):
        unit, bps = s["per_unit_roc_auc_median"], s["bits_per_spike"]
        print(f"  {name:14}{s['roc_auc']:9.3f}{s['pr_auc']:9.4f}"
              f"{'' if unit is None else f'{unit:10.3f}'}"
              f"{'' if bps is None else f'{bps:+12.3f}'}")
    c = r["comparison"]
    if c["best_baseline"]:
        ci = c.get("pr_auc_diff_ci95")
        block_s = (r["stretch_s"][1] - r["stretch_s"][0]) / c["blocks"]
        print(f"  model - {c['best_baseline']} (best baseline) PR-AUC {c['pr_auc_diff']:+.4f}"
              + (f", 95 % interval [{ci[0]:+.4f}, {ci[1]:+.4f}] ({c['blocks']} blocks of "
                 f"{block_s:.3g} s)" if ci else f", no interval: {c['no_interval']}"))
    other = "reference" if r["protocol"] == "strict" else "strict"
    o = r["protocols"][other]["model"]
    print(f"  {other + ' model':14}{o['roc_auc']:9.3f}{o['pr_auc']:9.4f}"
          f"{'  (leaky)' if other == 'reference' else ''}")
    thr = "none (predicts no spike)" if m["threshold"] is None else f"{m['threshold']:.4g}"
    print(f"  threshold     {thr}: {r['threshold_rule']}")
    print(f"  at threshold  precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
          f"F1 {m['f1']:.3f}, FPR {m['fpr']:.4f}, {m['predicted_spikes']:,} predicted vs "
          f"{m['real_spikes']:,} real spikes")
    return 0


def say_fitted(r: dict, recorded_units: int, args: argparse.Namespace) -> None:
    """One note for each thing the evaluation changed to fit the data: units left out, a stretch
    shorter than asked."""
    n = r["n_units"]
    if n < recorded_units and r["unit_selection"] == "the checkpoint's own units":
        note(f"scored the {n} units the checkpoint was trained on, of the {recorded_units} of "
             f"{r['data_name']}")
    elif n < recorded_units:
        why = ("--units N changes it" if not r["model_needs_unit_order"]
               else f"the model has {n} columns; a generalist takes --units N")
        note(f"scored the {n} most active of the {recorded_units} units of {r['data_name']} "
             f"({why})")
    if args.units and n < args.units and not r["model_needs_unit_order"]:
        note(f"scored all {n} units of {r['data_name']}, fewer than --units {args.units}")
    scored = r["stretch_s"][1] - r["stretch_s"][0]
    if args.seconds and scored < args.seconds - r["bin_ms"] / 500.0:
        note(f"scored {scored:g} s, not --seconds {args.seconds:g}: all of the {r['split']} split "
             f"after a {r['warmup_s']:g}-s warm-up (--split all scores more)")
