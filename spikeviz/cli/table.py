"""`spikeviz table`: the paper's tables from the bundled sessions and the shipped models."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import SpikevizError
from . import add_baselines


def add_parser(sub) -> None:
    p = sub.add_parser(
        "table", help="the results table: every shipped model and run on the bundled sessions",
        description="Evaluate every shipped checkpoint (models/*.safetensors, or $SPIKEVIZ_MODELS) "
                    "and the runs behind them (models/seeds, loso, ablations) on the test split "
                    "of the bundled sessions, all on the same stretch: the first --seconds after "
                    "the 30-s warm-up. Each cell has the model, every baseline, bits/spike and the "
                    "model - best baseline PR-AUC difference with its block-bootstrap interval; "
                    "groups give mean +/- SD over sessions and seeds.")
    p.add_argument("--out", help="write table.md, table.csv and table.json to this folder")
    p.add_argument("--seconds", type=float, default=200.0,
                   help="evaluated seconds of each test split")
    p.add_argument("--unit-order", default="auto",
                   help="recorded, random:SEED, rate-rank or auto (recorded on a model's own "
                        "session, rate-rank elsewhere)")
    p.add_argument("--protocol", choices=("strict", "reference"), default="strict",
                   help="strict (causal) or reference (the paper's leaky same-bin scoring)")
    p.add_argument("--checkpoint", action="append",
                   help="evaluate these checkpoints instead of the shipped ones (repeatable)")
    p.add_argument("--jobs", type=int, default=1,
                   help="evaluate checkpoints in this many processes (default 1)")
    p.add_argument("--force", action="store_true", help="replace existing table files in --out")
    p.add_argument("--add", action="store_true",
                   help="score only the --checkpoint ones and add their cells to the table in "
                        "--out (cells of the same checkpoint replaced; the others kept), instead "
                        "of scoring every checkpoint again")
    p.add_argument("--readme", action="append", default=[], metavar="FILE",
                   help="also rewrite the results section of this Markdown file (between "
                        "<!-- results:start --> and <!-- results:end -->; repeatable)")
    add_baselines(p)
    p.add_argument("--json", action="store_true", help="print the table as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import resolve_checkpoint
    from ..evaluation.report import (TABLE_FILES, Table, build_table, scoring_settings,
                                     update_readme)

    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise SpikevizError(f"--seconds must be positive and finite, got {args.seconds}")
    if args.jobs < 1:
        raise SpikevizError(f"--jobs must be at least 1, got {args.jobs}")
    if args.add and not (args.out and args.checkpoint):
        raise SpikevizError("--add needs --out (the table to add to) and --checkpoint (what to add)")
    old = Table.read(Path(args.out) / "table.json") if args.add else None
    if old is not None:   # checked before minutes of work, not after
        old.check_same_scoring(scoring_settings(seconds=args.seconds, unit_order=args.unit_order,
                                                protocol=args.protocol))
    if args.out and not args.force and not args.add:
        for name in TABLE_FILES:   # checked before minutes of work, not after
            if (Path(args.out) / name).exists():
                raise SpikevizError("exists already: pass --force to replace it",
                                    Path(args.out) / name)
    checkpoints = [str(resolve_checkpoint(c)) for c in args.checkpoint] if args.checkpoint else None
    table = build_table(checkpoints, seconds=args.seconds, unit_order=args.unit_order,
                        protocol=args.protocol, jobs=args.jobs, baselines=args.baselines,
                        progress=(lambda m: None) if args.quiet else
                        (lambda m: print(f"evaluating {m}", file=sys.stderr, flush=True)))
    if old is not None:
        table = old.merged(table)
    if args.out:
        for path in table.write(args.out, force=args.force or args.add):
            print(f"wrote {path}", file=sys.stderr)
    for path in args.readme:
        update_readme(path, table)
        print(f"updated {path}", file=sys.stderr)
    print(json.dumps(table.as_dict()) if args.json else table.markdown(), end="\n" if args.json else "")
    return 0
