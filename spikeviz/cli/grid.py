"""`spikeviz grid`: train and evaluate every (train session, test session, loss) cell on Dask."""
from __future__ import annotations

import argparse
import json

from . import add_baselines


def add_parser(sub) -> None:
    p = sub.add_parser("grid", help="the train x test x loss grid on a Dask cluster",
                       description="Train one model per (session, loss) and evaluate it, with the "
                                   "baselines, on every session: one Dask task per training and per "
                                   "evaluation. Finished cells are cached in DIR by content hash.")
    p.add_argument("--sessions", help="comma-separated bundled session names or paths "
                                      "(default: every bundled session)")
    p.add_argument("--losses", default="dice,focal", help="comma-separated training losses")
    p.add_argument("--preset", default="fast", choices=("paper", "fast", "transfer"),
                   help="model size (as in spikeviz train)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per training")
    p.add_argument("--seconds", type=float, help="use only the first S seconds of each session")
    p.add_argument("--eval-seconds", type=float, default=200.0,
                   help="cap on the evaluated stretch of each test split (s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every training")
    add_baselines(p, "beside each model")
    p.add_argument("--scheduler", default="local",
                   help="'local' (a local cluster) or a scheduler address tcp://HOST:PORT")
    p.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
    p.add_argument("--out", required=True, help="results folder (grid.json and the cache)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SpikevizError
    from ..evaluation.grid import GridSpec, default_sessions, parse_list, run_grid

    if args.workers < 1:
        raise SpikevizError(f"--workers must be at least 1, got {args.workers}")
    spec = GridSpec(sessions=parse_list(args.sessions, default_sessions()),
                    losses=parse_list(args.losses, ()), preset=args.preset, epochs=args.epochs,
                    seconds=args.seconds, seed=args.seed, eval_seconds=args.eval_seconds,
                    baselines=args.baselines)
    result = run_grid(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                      progress=(lambda msg: None) if args.json else print)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(result['cells'])} cells ({result['cached']} from cache) in {result['wall_s']} s; "
          f"results in {args.out}/grid.json")
    for c in result["cells"]:
        print(cell_line(c))
    return 0


def cell_line(cell: dict) -> str:
    """A grid cell in one line: the model's AUCs, beside them the best of the baselines this grid
    ran (by PR-AUC, as evaluate compares them)."""
    m, best = cell["model"], cell["comparison"].get("best_baseline")
    beside = f" ({best} {cell['baselines'][best]['pr_auc']:.4f})" if best else ""
    return (f"  {cell['train_session']} -> {cell['test_session']} [{cell['loss']}]: PR-AUC "
            f"{m['pr_auc']:.4f}{beside}, ROC-AUC {m['roc_auc']:.4f}")
