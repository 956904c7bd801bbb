"""`spikeviz train`: train a spike transformer on one recording and write a safetensors checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SpikevizError
from . import add_data_options, load_from_args


def add_parser(sub) -> None:
    from ..losses import LOSSES
    from ..model import PRESETS

    p = sub.add_parser("train", help="train a model on a recording",
                       description="Train a causal spike transformer: first 50 %% of the bins train, "
                                   "next 25 %% test, last 25 %% validation (early stopping).")
    p.add_argument("--data", help="a recording file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--loss", choices=LOSSES, required=True)
    p.add_argument("--preset", choices=tuple(PRESETS), default="fast")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seconds", type=float, help="use only the first S seconds of the recording")
    p.add_argument("--bin-ms", type=float, default=1.0, help="bin size in ms (default 1)")
    p.add_argument("--units", type=int, default=128,
                   help="number of units, the most active ones (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, help="windows per batch (default per preset)")
    p.add_argument("--patience", type=int, default=5,
                   help="epochs without a better validation PR-AUC before stopping")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue the training of --out")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..catalog import bundled_session, session
    from ..training import TrainOptions, train_recording

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise SpikevizError("checkpoints are safetensors files: name it *.safetensors", out)
    for name in ("epochs", "units", "patience"):
        if getattr(args, name) < 1:
            raise SpikevizError(f"--{name} must be at least 1, got {getattr(args, name)}")
    recording = load_from_args(args)
    bundled = session(args.session) if args.session else (
        bundled_session(args.data) if args.data else None)
    opts = TrainOptions(preset=args.preset, loss=args.loss, epochs=args.epochs, seed=args.seed,
                        patience=args.patience, batch_size=args.batch_size,
                        **({"lr": args.lr} if args.lr else {}))
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = train_recording(recording, out, opts, seconds=args.seconds, bin_ms=args.bin_ms,
                           n_units=args.units, session=bundled.name if bundled else None,
                           domain=bundled.domain if bundled else None, resume=args.resume,
                           force=args.force, progress=not args.quiet)
    best = meta["valid"]
    print(f"{out}: {meta['epochs']} epochs in {meta['train_seconds']:.0f} s; best epoch "
          f"{meta['best_epoch']}, validation PR-AUC {best['pr_auc']:.4f}, ROC-AUC "
          f"{best['roc_auc']:.4f} (spike density {best['base_rate']:.4f})")
    return 0
