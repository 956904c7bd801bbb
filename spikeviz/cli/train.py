"""`spikeviz train`: train a spike transformer on one recording and write a safetensors checkpoint."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import SpikevizError
from . import add_data_options, check_not_input, load_from_args, note, split_text

UNITS = 128   # the paper's unit count: a model's default width


def add_parser(sub) -> None:
    from ..models.losses import LOSSES
    from ..models.model import PRESETS
    from ..training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR, TrainOptions

    p = sub.add_parser("train", help="train a model on a recording",
                       description=f"Train a causal spike transformer on a chronological split "
                                   f"of the bins ({split_text()}); early stopping on validation "
                                   f"PR-AUC. --resume continues --out's training: repeat the "
                                   f"original options; --epochs counts all epochs, not extra ones.")
    p.add_argument("--data", help="a recording file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--loss", choices=LOSSES,
                   help="training loss: focal and Dice counter the rarity of spikes (required, "
                        "except with --init: the checkpoint's)")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="model size: paper (the article's, context 15,625 bins), fast (context "
                        "256 with spike traces), transfer (one sequence per unit: any unit "
                        "count), generalist (any recording; see --init) (default: fast; with "
                        "--init the checkpoint's)")
    p.add_argument("--epochs", type=int,
                   help=f"total epochs at most (training stops after --patience epochs "
                        f"without a better validation score), with --resume too: not extra ones "
                        f"(default 30 from scratch, {FINE_TUNE_EPOCHS} with --init)")
    p.add_argument("--seconds", type=float, help="use only the first S seconds of the recording")
    p.add_argument("--bin-ms", type=float,
                   help="bin size in ms (default: 1; with --init the checkpoint's)")
    p.add_argument("--units", type=int,
                   help=f"number of units, the most active ones (default: {UNITS}, or all of a "
                        f"recording with fewer)")
    p.add_argument("--pad", action="store_true",
                   help="add silent units to a recording with fewer than --units, so the model "
                        "has exactly --units (e.g. to fine-tune a 128-unit model); evaluate and "
                        "generate then take the recording as it is")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and window draws")
    p.add_argument("--lr", type=float,
                   help=f"peak learning rate (default {TrainOptions.lr:g}; {FINE_TUNE_LR:g} with "
                        f"--init)")
    p.add_argument("--batch-size", type=int, help="windows per batch (default per preset)")
    p.add_argument("--patience", type=int, default=5,
                   help="epochs without a better validation PR-AUC before stopping")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune this checkpoint (a path, or a shipped one by name, e.g. "
                        "models/generalist-focal.safetensors) on the recording's train split; "
                        "its weights, preset, loss, bin size and batch size are inherited")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--resume", action="store_true",
                   help="continue the training of --out where it stopped (same options)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.catalog import find_session, resolve_checkpoint
    from ..data.units import with_silent_units
    from ..training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR, TrainOptions, train_recording

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise SpikevizError("checkpoints are safetensors files: name it *.safetensors", out)
    for name in ("epochs", "units", "patience", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpikevizError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("seconds", "bin_ms", "lr"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SpikevizError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    check_output(out, args.resume, args.force)
    check_not_input(out, args.data, args.init and resolve_checkpoint(args.init))
    init = inherit_from(args) if args.init else None   # before the recording is read
    if args.loss is None:
        raise SpikevizError("give --loss (dice, focal or bce), or --init CHECKPOINT to fine-tune "
                            "with its loss")
    preset, bin_ms = args.preset or "fast", args.bin_ms or 1.0
    recording = load_from_args(args)
    bundled = find_session(args.session or args.data)
    n_units = args.units or UNITS
    if recording.n_units < n_units:
        if args.pad:
            recording = with_silent_units(recording, n_units)
        elif args.units is None:
            n_units = recording.n_units
            note(f"training on all {n_units} units of {recording.name}, fewer than the default "
                 f"{UNITS} (--units N --pad adds silent units)")
    elif recording.n_units > n_units:
        note(f"training on the {n_units} most active of the {recording.n_units} units of "
             f"{recording.name} (--units N changes it)")
    if args.seconds and args.seconds > recording.duration_s:
        note(f"{recording.name} lasts {recording.duration_s:g} s: training on all of it, not "
             f"--seconds {args.seconds:g}")
    if not torch.cuda.is_available():   # on CPU, refuse before the OS kills it
        check_memory(preset, n_units, min(args.seconds or math.inf, recording.duration_s),
                     bin_ms, args.batch_size)
    epochs = args.epochs or (FINE_TUNE_EPOCHS if init else 30)
    opts = TrainOptions(preset=preset, loss=args.loss, epochs=epochs, seed=args.seed,
                        patience=args.patience, batch_size=args.batch_size, init=init,
                        lr=FINE_TUNE_LR if init and args.lr is None else
                        args.lr or TrainOptions.lr)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    meta = train_recording(recording, out, opts, seconds=args.seconds, bin_ms=bin_ms,
                           n_units=n_units, session=bundled.name if bundled else None,
                           domain=bundled.domain if bundled else None, resume=args.resume,
                           force=args.force, progress=not args.quiet)
    best = meta["valid"]
    if args.resume and meta["epochs"] > epochs:
        note(f"{out.name} had trained {meta['epochs']} epochs already, more than --epochs {epochs}: "
             f"nothing more trained, its best epoch kept (--epochs is the total)")
    print(f"{out}: {meta['epochs']} epochs in {meta['train_seconds']:.0f} s; best epoch "
          f"{meta['best_epoch']}, validation PR-AUC {best['pr_auc']:.4f}, ROC-AUC "
          f"{best['roc_auc']:.4f} (spike density {best['base_rate']:.4f})")
    return 0


def inherit_from(args: argparse.Namespace) -> str:
    """The --init checkpoint, resolved as --checkpoint is (a path from here, or a shipped one),
    after filling the options it decides: its preset, and its loss, bin size and batch size
    unless given. One line on stderr says what was inherited and what is a fine-tuning default."""
    import sys

    from ..data.catalog import resolve_checkpoint
    from ..models.checkpoint import load_model
    from ..models.losses import LOSSES
    from ..training.loop import FINE_TUNE_EPOCHS, FINE_TUNE_LR

    path = resolve_checkpoint(args.init)
    model = load_model(path)   # refused here, before the recording is read, if unsound
    meta, preset = model.meta, model.config.preset
    if args.preset not in (None, preset):
        raise SpikevizError(f"--preset {args.preset}, but this is a {preset} checkpoint: "
                            f"fine-tuning keeps its preset (leave --preset out)", path)
    args.preset = preset
    batch = (meta.get("train_options") or {}).get("batch_size")
    stored = {"loss": meta.get("loss") if meta.get("loss") in LOSSES else None,
              "bin_ms": meta.get("bin_ms", 1.0),
              "batch_size": batch if isinstance(batch, int) and batch >= 1 else None}
    # The bin size is not offered as a change: the weights only fit data binned as they were.
    said = {"loss": ("loss {}", "--loss"), "bin_ms": ("{:g}-ms bins", None),
            "batch_size": ("batch size {}", "--batch-size")}
    inherited = []
    for name, value in stored.items():
        if getattr(args, name) is None and value is not None:
            setattr(args, name, value)
            inherited.append((said[name][0].format(value), said[name][1]))
    defaults = [(f"learning rate {FINE_TUNE_LR:g}", "--lr")] * (args.lr is None) + [
        (f"{FINE_TUNE_EPOCHS} epochs", "--epochs")] * (args.epochs is None)
    line = f"fine-tuning {path}: preset {preset}"
    for what, items in (("from the checkpoint", inherited), ("for fine-tuning", defaults)):
        if items:
            line += (f"; {', '.join(text for text, _ in items)} {what} "
                     f"({', '.join(option for _, option in items if option)} to change)")
    print(line, file=sys.stderr)
    return str(path)


def check_output(out: Path, resume: bool, force: bool) -> None:
    """Before any data is read: refuse to replace a checkpoint without --force, and with --resume
    check that its training state is a sound safetensors file (never unpickled)."""
    from ..models.checkpoint import read_tensors
    from ..training.loop import state_path

    from . import check_writable

    if out.is_dir():
        raise SpikevizError("is a folder: give a *.safetensors file name", out)
    check_writable(out)
    if not resume:
        if out.exists() and not force:
            raise SpikevizError("exists already: pass --force to replace it or --resume to "
                                "continue its training", out)
        return
    state = state_path(out)
    if not state.exists():
        raise SpikevizError(f"nothing to resume: no training state ({state.name}) beside it", out)
    read_tensors(state)   # a sound safetensors file (never unpickled); training checks the rest


def check_memory(preset: str, n_units: int, seconds: float, bin_ms: float,
                 batch_size: int | None) -> None:
    """One-line refusal of a training whose estimated peak exceeds the available memory."""
    from ..data.binning import n_bins_of
    from ..training.memory import available_bytes, check_fits, estimate_training

    n_bins = n_bins_of(seconds, bin_ms)
    check_fits(estimate_training(preset, n_units, n_bins, batch_size), available_bytes(),
               n_units, n_bins)
