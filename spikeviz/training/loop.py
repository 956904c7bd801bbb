"""Training a spike transformer: chronological split, epochs, validation early stopping, exact resume."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.catalog import resolve_checkpoint
from ..data.binning import SPLIT_NAME, BinnedSpikes, bin_spikes, split_bounds, train_units
from ..generation.calibration import fit_platt
from .distributed import Distributed
from ..models.checkpoint import checked_config, read_tensors, save_checkpoint, write_tensors
from ..errors import SpikevizError
from ..models.losses import make_loss
from ..measures.metrics import pr_auc, roc_auc
from ..models.build import build_model
from ..models.model import ModelConfig, compute_traces, preset_config
from ..generation.predict import scores_for_range
from ..data.recording import Recording
from ..models.checkpoint import check_data, load_model

# Per preset: windows per batch (transfer windows hold one sequence per unit, hence fewer), the
# most batches an epoch runs per recording (transfer sees 128 sequences a window: a sample is
# plenty; the generalist sees several recordings, each drawn the same number of windows).
BATCH = {"paper": 2, "fast": 16, "transfer": 4, "generalist": 8}
MAX_STEPS = {"paper": None, "fast": None, "transfer": 60, "generalist": 60}
# Validation bins scored each epoch per recording, at most.
VALID_BINS = {"paper": 100_000, "fast": 100_000, "transfer": 30_000, "generalist": 60_000}


# --init starts from trained weights: a third of the from-scratch rate. 30 epochs at most, as
# from scratch: early stopping (patience 5) ends most fine-tunings sooner; 10 stopped Jun0514 and
# Oct1514 while they still improved (docs/corpus_generalist.md, "30 epochs at most").
FINE_TUNE_LR, FINE_TUNE_EPOCHS = 1e-3, 30


@dataclass(frozen=True)
class TrainOptions:
    """How to train. `init` fine-tunes a checkpoint (its config, weights and preset) instead of
    starting from the preset: a path, or a shipped checkpoint's name, resolved when training
    starts as `--init` is; `changes` override preset config fields (the ablations)."""

    preset: str = "fast"
    loss: str = "focal"
    epochs: int = 30
    seed: int = 0
    lr: float = 3e-3
    lr_decay: float = 0.93  # per epoch, so a schedule never depends on how many epochs are asked
    warmup_steps: int = 20
    batch_size: int | None = None
    patience: int = 5
    max_valid_bins: int = 100_000
    weight_decay: float = 0.01
    init: str | None = None
    changes: tuple[tuple[str, Any], ...] = ()


# Called after every batch with (epoch, epochs, batch, batches); returning False stops training
# (the checkpoint keeps the best epoch so far).
Callback = Callable[[int, int, int, int], bool]


def state_path(out: str | Path) -> Path:
    """Where the resume state of checkpoint `out` lives: beside it, `<stem>.state.safetensors`."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + ".state.safetensors")


def pooled_auc(P: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Pooled PR-AUC (average precision) and ROC-AUC over all (bin, unit) cells."""
    if Y.min() == Y.max():
        return {"pr_auc": float("nan"), "roc_auc": float("nan"), "base_rate": float(Y.mean())}
    return {"pr_auc": float(pr_auc(Y, P)), "roc_auc": float(roc_auc(Y, P)),
            "base_rate": float(Y.mean())}


def _train_traces(X: np.ndarray, taus: tuple[float, ...], piece: int = 100_000) -> np.ndarray:
    # float16 halves the memory of (T, K, N) traces; they are rates in [0, 1] read through a log.
    out = np.empty((X.shape[0], len(taus), X.shape[1]), dtype=np.float16)
    last = None
    for a in range(0, X.shape[0], piece):
        tr = compute_traces(X[a:a + piece], taus, last)
        out[a:a + piece], last = tr, tr[-1]
    return out


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v.cpu() for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"], "n_state": len(sd["state"])}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def train(data: BinnedSpikes | Sequence[BinnedSpikes], out: str | Path, opts: TrainOptions,
          data_meta: dict[str, Any], resume: bool = False, force: bool = False,
          progress: bool = True, log: bool = True, callback: Callback | None = None
          ) -> dict[str, Any]:
    """Train on the first 50 % of each recording in `data`, stop early on validation, checkpoint
    every epoch.

    Several recordings (unit-agnostic presets only) are trained on together: every epoch draws the
    same number of windows from each, and the validation score is the mean over recordings of
    PR-AUC / spike density (their densities differ 20-fold). `out` receives the best weights so far
    with their metadata; `state_path(out)` the current weights, optimizer and RNG states, so
    `resume=True` continues exactly where training stopped. `progress` shows a tqdm bar per epoch,
    `log` a line per epoch, `callback` is told of every batch and can stop training. Returns the
    checkpoint metadata. Under `torchrun --nproc-per-node=N` it trains with
    DistributedDataParallel: each batch is split across the N processes, rank 0 validates and writes.
    """
    datasets = [data] if isinstance(data, BinnedSpikes) else list(data)
    if not datasets:
        raise SpikevizError("nothing to train on")
    if opts.init:   # as `spikeviz train --init` does: a path from here, else a shipped name
        opts = replace(opts, init=str(resolve_checkpoint(opts.init)))
    ddp = Distributed.from_env()
    try:
        return _train(datasets, Path(out), opts, data_meta, resume, force, progress and ddp.main,
                      log and ddp.main, ddp, callback)
    finally:
        ddp.close()


def _initial_model(opts: TrainOptions, datasets: list[BinnedSpikes]) -> torch.nn.Module:
    """The preset's fresh model (head bias at the training rates), or the `init` checkpoint's."""
    N = datasets[0].n_units
    if opts.init:
        model = load_model(opts.init)
        for d in datasets:
            check_data(model, d.n_units, d.bin_ms, opts.init)
        model.meta, model.calibration = {}, (1.0, 0.0)
        return model.train()
    cfg = preset_config(opts.preset, N, **dict(opts.changes))
    if not cfg.shared_units and len(datasets) > 1:
        raise SpikevizError(f"the {opts.preset} preset is for one recording: train several "
                            f"together with a unit-agnostic preset (generalist, transfer)")
    model = build_model(cfg)
    if cfg.kind == "transformer":
        # Start at the training rates (per unit, or the mean for transfer): no epoch spent on it.
        rates = np.concatenate([d.X[slice(*split_bounds(d.n_bins)["train"])].mean(
            0, dtype=np.float64) for d in datasets]).clip(1e-6, 1 - 1e-6)
        with torch.no_grad():
            model.head.bias.copy_(torch.from_numpy(
                np.log(rates / (1 - rates)) if not cfg.shared_units
                else np.log([rates.mean() / (1 - rates.mean())])))
    return model


def _validate(model, datasets: list[BinnedSpikes], bounds: list[tuple[int, int]]
              ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Validation scores (per recording, and their mean PR-AUC / density as `score`), and the
    pooled predictions and labels the calibration is fitted on."""
    per, Ps, Ys = [], [], []
    for d, (va, vb) in zip(datasets, bounds):
        P, Y = scores_for_range(model, d.X, va, vb)
        per.append(pooled_auc(P, Y))
        Ps.append(P.ravel())
        Ys.append(Y.ravel())
    lifts = [v["pr_auc"] / v["base_rate"] for v in per if v["base_rate"] > 0]
    valid = {k: float(np.mean([v[k] for v in per])) for k in ("pr_auc", "roc_auc", "base_rate")}
    valid["score"] = float(np.mean(lifts)) if lifts else float("nan")
    if len(per) > 1:
        valid["per_recording"] = per
    return valid, np.concatenate(Ps), np.concatenate(Ys)


def _train(datasets: list[BinnedSpikes], out: Path, opts: TrainOptions, data_meta: dict[str, Any],
           resume: bool, force: bool, progress: bool, log: bool, ddp: Distributed,
           callback: Callback | None) -> dict[str, Any]:
    torch.manual_seed(opts.seed)   # the fresh weights; a resumed run restores its RNG below
    model = _initial_model(opts, datasets)
    cfg = model.config
    preset, C = cfg.preset, cfg.context
    splits = [split_bounds(d.n_bins) for d in datasets]
    train_bounds = [sp["train"] for sp in splits]
    valid_cap = min(opts.max_valid_bins, VALID_BINS[preset])
    valid_bounds = [(va, min(vb, va + valid_cap)) for va, vb in (sp["valid"] for sp in splits)]
    short = min(b - a for a, b in train_bounds)
    if short < C + 1:
        raise SpikevizError(f"the training split has {short} bins, fewer than one window "
                            f"({C + 1} bins for the {preset} preset): use more data")
    args = {"preset": preset, "loss": opts.loss, "seed": opts.seed, "lr": opts.lr,
            "batch_size": opts.batch_size or BATCH[preset],
            "n_bins": sum(d.n_bins for d in datasets), "n_units": cfg.n_units,
            "bin_ms": datasets[0].bin_ms, "content_hash": data_meta.get("content_hash"),
            "init": opts.init, "changes": [list(c) for c in opts.changes]}
    spath = state_path(out)
    loss_fn = make_loss(opts.loss)
    if resume:
        model, best_model, tensors, state = _resumed(spath, cfg, args, out)
        torch.set_rng_state(tensors["rng.torch"])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
    else:
        if out.exists() and not force and ddp.main:
            raise SpikevizError("exists already: pass --force to replace it or --resume to "
                                "continue its training", out)
        rng = np.random.default_rng(opts.seed)
        best_model = None
        state = {"epoch": 0, "step": 0, "best": None, "bad_epochs": 0, "history": [],
                 "train_s": 0.0}
    model.meta = {"bin_ms": datasets[0].bin_ms}
    model.to(ddp.device)
    net = DistributedDataParallel(model) if ddp.world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    if resume:
        _restore_optimizer(opt, tensors, state["optimizer"])

    X_train = [d.X[a:b] for d, (a, b) in zip(datasets, train_bounds)]
    traces = [_train_traces(x, cfg.trace_taus) for x in X_train]
    B = args["batch_size"]
    split = splits[0] if len(datasets) == 1 else None
    meta = dict(data_meta, n_units=cfg.n_units, bin_ms=datasets[0].bin_ms, loss=opts.loss,
                seed=opts.seed, preset=preset, split={k: list(v) for k, v in splits[0].items()}
                if split else [{k: list(v) for k, v in sp.items()} for sp in splits],
                split_fractions=SPLIT_NAME, valid_scored=valid_bounds[0] if split
                else valid_bounds, train_options=args)
    if resume:
        # The state holds the best model and its metadata: a checkpoint lost or left one epoch
        # behind by a kill between the two writes is rewritten before training goes on.
        meta = state["meta"] | meta
        if ddp.main:
            save_checkpoint(best_model, out, meta)
    epoch, step = state["epoch"], state["step"]
    cancelled = False
    while epoch < opts.epochs and state["bad_epochs"] < opts.patience and not cancelled:
        t0 = time.perf_counter()
        batches = _epoch_batches(X_train, C, B, MAX_STEPS[preset], ddp.world, rng)
        model.train()
        lr_epoch = opts.lr * opts.lr_decay ** epoch
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{opts.epochs}", disable=not progress,
                   leave=False, unit="batch")
        running = None
        # The bar shows the figure the epoch line prints (PR-AUC), not the score that picks the
        # best epoch (its lift over chance), and labels each one.
        last = f"{state['history'][-1]['pr_auc']:.4f}" if state["history"] else "-"
        for i, (k, idx) in enumerate(bar):
            mine = idx[ddp.rank::ddp.world]
            w = np.stack([X_train[k][s:s + C + 1] for s in mine]).astype(np.float32)
            x = torch.from_numpy(w[:, :-1]).to(ddp.device)
            y = torch.from_numpy(w[:, 1:]).to(ddp.device)
            tr = torch.from_numpy(np.stack([traces[k][s:s + C] for s in mine]).astype(np.float32))
            for g in opt.param_groups:
                g["lr"] = lr_epoch * min(1.0, (step + 1) / opts.warmup_steps)
            loss = loss_fn(net(x, tr.to(ddp.device)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            rate = (i + 1) * B * C / (time.perf_counter() - t0)
            bar.set_postfix({f"train {opts.loss} loss": f"{running:.4f}", "valid PR-AUC": last,
                             "bins/s": f"{rate:,.0f}"})
            if callback is not None and callback(epoch, opts.epochs, i + 1, len(batches)) is False:
                cancelled = True
                break
        bar.close()
        if cancelled:
            break
        model.eval()
        if ddp.main:
            valid, P, Y = _validate(model, datasets, valid_bounds)
        keys = ("score", "pr_auc", "roc_auc", "base_rate")
        shared = ddp.broadcast([valid[k] for k in keys] if ddp.main else [0.0] * len(keys))
        valid = (valid if ddp.main else {}) | dict(zip(keys, shared))
        epoch += 1
        state["train_s"] += time.perf_counter() - t0
        state["history"].append({"epoch": epoch, "loss": running, **valid,
                                 "seconds": time.perf_counter() - t0})
        improved = state["best"] is None or (valid["score"] > state["best"]["score"])
        if improved:  # a frozen copy: training goes on mutating `model`
            state["best"] = {"epoch": epoch, **valid}
            state["bad_epochs"] = 0
            best_model = copy.deepcopy(model).cpu()
            if ddp.main:
                platt = fit_platt(P, Y)
                meta["calibration"] = {"scale": float(platt.scale), "shift": float(platt.shift)}
        else:
            state["bad_epochs"] += 1
        if log:
            tqdm.write(f"epoch {epoch}: train {opts.loss} loss {running:.4f}, valid PR-AUC "
                       f"{valid['pr_auc']:.4f} (chance {valid['base_rate']:.4f}), ROC-AUC "
                       f"{valid['roc_auc']:.4f}{' (best)' if improved else ''}")
        meta.update(epochs=epoch, best_epoch=state["best"]["epoch"], valid=state["best"],
                    history=state["history"], train_seconds=round(state["train_s"], 1),
                    processes=ddp.world)
        if not ddp.main:
            continue
        # State first: whatever a kill interrupts, the state can rebuild the checkpoint.
        opt_tensors, opt_meta = _optimizer_tensors(opt)
        state.update(epoch=epoch, step=step, args=args, config=cfg.to_dict(), meta=meta,
                     numpy_rng=rng.bit_generator.state, optimizer=opt_meta)
        write_tensors(spath, {**{f"model.{k}": v.cpu() for k, v in model.state_dict().items()},
                              **{f"best.{k}": v for k, v in best_model.state_dict().items()},
                              **opt_tensors, "rng.torch": torch.get_rng_state()}, state)
        save_checkpoint(best_model, out, meta)
    if cancelled:
        meta["cancelled"] = True
    return meta


def _epoch_batches(X_train: list[np.ndarray], C: int, B: int, max_steps: int | None, world: int,
                   rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(recording, window starts) of an epoch's batches: per recording, non-overlapping windows of
    C+1 bins at a random phase in random order (at most max_steps batches), batches shuffled."""
    batches = []
    for k, x in enumerate(X_train):
        phase = int(rng.integers(C + 1))
        starts = np.arange(phase, len(x) - C, C + 1)
        starts = starts[rng.permutation(len(starts))][:(max_steps or len(starts)) * B]
        # Every rank draws the same windows (same seed) and trains on its share of each batch;
        # a last batch too small to give every rank a window is dropped.
        if 0 < len(starts) % B < world:
            starts = starts[:len(starts) - len(starts) % B]
        batches += [(k, starts[i:i + B]) for i in range(0, len(starts), B)]
    if len(X_train) > 1:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _resumed(spath: Path, cfg: ModelConfig, args: dict[str, Any], out: Path
             ) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, torch.Tensor], dict]:
    """The current and best models and the state stored beside checkpoint `out`, refused unless
    they are sound and were trained with the same settings and data (`args`)."""
    tensors, state = read_tensors(spath) if spath.exists() else (None, None)
    if state is None:
        raise SpikevizError(f"nothing to resume: no training state ({spath.name}) beside it", out)
    changed = {k: (state.get("args", {}).get(k), v) for k, v in args.items()
               if not isinstance(state.get("args"), dict) or state["args"].get(k) != v}
    if changed:
        raise SpikevizError(f"cannot resume with other settings or data: {changed} "
                            f"(stored, now)", spath)
    models = []
    for prefix in ("model.", "best."):
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        stored = checked_config(state, weights, spath)   # never trust the state's own config
        if stored.to_dict() != cfg.to_dict():
            raise SpikevizError("the training state was made with another model config: "
                                "train again without --resume", spath)
        model = build_model(stored)
        model.load_state_dict(weights)
        models.append(model)
    if "rng.torch" not in tensors or not isinstance(state.get("meta"), dict):
        raise SpikevizError("the training state is incomplete: train again without --resume", spath)
    return models[0], models[1], tensors, state


def train_recordings(recordings: Sequence[Recording], out: str | Path, opts: TrainOptions,
                     seconds: float | None = None, bin_ms: float = 1.0, n_units: int = 128,
                     sessions: Sequence[str | None] | None = None,
                     domains: Sequence[str | None] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Bin each recording (its first `seconds` only, if given) and `train` on them together.

    Units: each recording's `n_units` most active in its training split (all of them when it has
    fewer and the model is unit-agnostic). The checkpoint records the content hashes, bundled
    session names and domains when known, and (one recording) the chosen unit ids. `kwargs` go to
    `train`.
    """
    if seconds is not None and not seconds > 0:
        raise SpikevizError(f"--seconds must be positive, got {seconds}")
    sessions = list(sessions or [None] * len(recordings))
    domains = list(domains or [None] * len(recordings))
    hashes, binned = [], []
    shared = opts.init is not None or preset_config(opts.preset, n_units).shared_units
    for rec in recordings:
        hashes.append(rec.content_hash())
        if seconds is not None:
            rec = rec.slice(0.0, seconds)
        n = min(n_units, rec.n_units) if shared else n_units
        binned.append(bin_spikes(rec, bin_ms=bin_ms, n_units=n, select=train_units(rec, n)))
    one = len(recordings) == 1
    rec = recordings[0]
    data_meta = {"data": rec.name if one else " + ".join(r.name for r in recordings),
                 "data_path": rec.source.get("path") if one else None,
                 "session": sessions[0] if one else None,
                 "domain": domains[0] if len(set(domains)) == 1 else None,
                 "content_hash": hashes[0] if one else None, "seconds": seconds,
                 "duration_s": rec.duration_s if one else None,
                 "unit_ids": [str(u) for u in binned[0].unit_ids] if one else None}
    if not one:
        data_meta |= {"sessions": sessions, "domains": domains, "content_hashes": hashes}
    return train(binned, out, opts, {k: v for k, v in data_meta.items() if v is not None}
                 | {"domain": data_meta["domain"]}, **kwargs)


def train_recording(recording: Recording, out: str | Path, opts: TrainOptions,
                    seconds: float | None = None, bin_ms: float = 1.0, n_units: int = 128,
                    session: str | None = None, domain: str | None = None, **kwargs: Any
                    ) -> dict[str, Any]:
    """`train_recordings` on one recording, its bundled `session` name and `domain` if known."""
    return train_recordings([recording], out, opts, seconds, bin_ms, n_units, [session], [domain],
                            **kwargs)
