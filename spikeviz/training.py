"""Training a spike transformer: chronological split, epochs, validation early stopping, exact resume."""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .binning import BinnedSpikes, bin_spikes
from .checkpoint import checked_config, read_tensors, save_checkpoint, write_tensors
from .errors import SpikevizError
from .losses import make_loss
from .metrics import pr_auc, roc_auc
from .model import ModelConfig, SpikeTransformer, compute_traces, preset_config
from .predict import scores_for_range
from .predictor import split_bounds
from .recording import Recording

# Per preset: windows per batch (transfer windows hold one sequence per unit, hence fewer), and
# the most batches an epoch runs (transfer sees 128 sequences a window: a sample of them is plenty).
BATCH = {"paper": 2, "fast": 16, "transfer": 4}
MAX_STEPS = {"paper": None, "fast": None, "transfer": 60}
# Validation bins scored each epoch, at most: transfer predicts one sequence per unit (slower).
VALID_BINS = {"paper": 100_000, "fast": 100_000, "transfer": 30_000}


@dataclass(frozen=True)
class TrainOptions:
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


def fit_calibration(P: np.ndarray, Y: np.ndarray, max_cells: int = 2_000_000) -> dict[str, float]:
    """Platt scaling p -> sigmoid(scale * logit(p) + shift), fitted by logistic regression."""
    from sklearn.linear_model import LogisticRegression

    p, y = P.ravel(), Y.ravel()
    if p.size > max_cells:   # a fixed subsample keeps it cheap and deterministic
        idx = np.random.default_rng(0).choice(p.size, max_cells, replace=False)
        p, y = p[idx], y[idx]
    if y.min() == y.max():
        return {"scale": 1.0, "shift": 0.0}
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    fit = LogisticRegression(C=1e6).fit(np.log(p / (1 - p))[:, None], y)
    scale, shift = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    return {"scale": scale, "shift": shift} if scale > 0 else {"scale": 1.0, "shift": 0.0}


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
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"], "n_state": len(sd["state"])}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if world <= 1:
            return cls(device=device)
        owns = not dist.is_initialized()
        if owns:
            if cuda:
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device, owns)

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's values on every rank (so every rank takes the same early-stopping decision)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return t.tolist()

    def close(self) -> None:
        if self.owns_group:
            dist.barrier()
            dist.destroy_process_group()


def train(binned: BinnedSpikes, out: str | Path, opts: TrainOptions, data_meta: dict[str, Any],
          resume: bool = False, force: bool = False, progress: bool = True, log: bool = True
          ) -> dict[str, Any]:
    """Train on the first 50 % of `binned`, stop early on validation PR-AUC, checkpoint every epoch.

    `out` receives the best weights so far with their metadata; `state_path(out)` the current
    weights, optimizer and RNG states, so `resume=True` continues exactly where training stopped.
    `progress` shows a tqdm bar per epoch, `log` a line per epoch. Returns the checkpoint metadata.
    Under `torchrun --nproc-per-node=N` it trains with DistributedDataParallel: each batch is
    split across the N processes, rank 0 validates and writes the checkpoint.
    """
    ddp = Distributed.from_env()
    try:
        return _train(binned, Path(out), opts, data_meta, resume, force, progress and ddp.main,
                      log and ddp.main, ddp)
    finally:
        ddp.close()


def _train(binned: BinnedSpikes, out: Path, opts: TrainOptions, data_meta: dict[str, Any],
           resume: bool, force: bool, progress: bool, log: bool, ddp: Distributed
           ) -> dict[str, Any]:
    X = binned.X
    T, N = X.shape
    split = split_bounds(T)
    (a, b), (va, vb) = split["train"], split["valid"]
    vb = min(vb, va + min(opts.max_valid_bins, VALID_BINS[opts.preset]))
    cfg = preset_config(opts.preset, N)
    C = cfg.context
    if b - a < C + 1:
        raise SpikevizError(f"the training split has {b - a} bins, fewer than one window "
                            f"({C + 1} bins for the {opts.preset} preset): use more data")
    args = {"preset": opts.preset, "loss": opts.loss, "seed": opts.seed, "lr": opts.lr,
            "batch_size": opts.batch_size or BATCH[opts.preset], "n_bins": T, "n_units": N,
            "bin_ms": binned.bin_ms, "content_hash": data_meta.get("content_hash")}
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
        torch.manual_seed(opts.seed)
        rng = np.random.default_rng(opts.seed)
        model = SpikeTransformer(cfg)
        # Start at the training rates (per unit, or the mean for transfer): no epoch spent on it.
        rates = X[a:b].mean(0, dtype=np.float64).clip(1e-6, 1 - 1e-6)
        with torch.no_grad():
            model.head.bias.copy_(torch.from_numpy(
                np.log(rates / (1 - rates)) if not cfg.shared_units
                else np.log([rates.mean() / (1 - rates.mean())])))
        best_model = None
        state = {"epoch": 0, "step": 0, "best": None, "bad_epochs": 0, "history": [],
                 "train_s": 0.0}
    model.meta = {"bin_ms": binned.bin_ms}
    model.to(ddp.device)
    net = DistributedDataParallel(model) if ddp.world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    if resume:
        _restore_optimizer(opt, tensors, state["optimizer"])

    X_train = X[a:b]
    traces = _train_traces(X_train, cfg.trace_taus)
    B = args["batch_size"]
    meta = dict(data_meta, n_units=N, bin_ms=binned.bin_ms, loss=opts.loss, seed=opts.seed,
                preset=opts.preset, split={k: list(v) for k, v in split.items()},
                split_fractions="train 0-50 %, test 50-75 %, valid 75-100 % (chronological)",
                valid_scored=[va, vb], train_options=args)
    if resume:
        # The state holds the best model and its metadata: a checkpoint lost or left one epoch
        # behind by a kill between the two writes is rewritten before training goes on.
        meta = state["meta"] | meta
        if ddp.main:
            save_checkpoint(best_model, out, meta)
    epoch, step = state["epoch"], state["step"]
    while epoch < opts.epochs and state["bad_epochs"] < opts.patience:
        t0 = time.perf_counter()
        # Non-overlapping windows of C+1 bins at a random phase, in random order.
        phase = int(rng.integers(C + 1))
        starts = np.arange(phase, len(X_train) - C, C + 1)
        starts = starts[rng.permutation(len(starts))][:(MAX_STEPS[opts.preset] or len(starts)) * B]
        # Every rank draws the same windows (same seed) and trains on its share of each batch;
        # a last batch too small to give every rank a window is dropped.
        if 0 < len(starts) % B < ddp.world:
            starts = starts[:len(starts) - len(starts) % B]
        model.train()
        lr_epoch = opts.lr * opts.lr_decay ** epoch
        bar = tqdm(range(0, len(starts), B), desc=f"epoch {epoch + 1}/{opts.epochs}",
                   disable=not progress, leave=False, unit="batch")
        running = None
        last_pr = state["history"][-1]["pr_auc"] if state["history"] else float("nan")
        for i in bar:
            idx = starts[i:i + B]
            mine = idx[ddp.rank::ddp.world]
            w = np.stack([X_train[s:s + C + 1] for s in mine]).astype(np.float32)
            x = torch.from_numpy(w[:, :-1]).to(ddp.device)
            y = torch.from_numpy(w[:, 1:]).to(ddp.device)
            tr = torch.from_numpy(np.stack([traces[s:s + C] for s in mine]).astype(np.float32))
            for g in opt.param_groups:
                g["lr"] = lr_epoch * min(1.0, (step + 1) / opts.warmup_steps)
            loss = loss_fn(net(x, tr.to(ddp.device)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            rate = (i + len(idx)) * C / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{running:.4f}", val_pr=f"{last_pr:.4f}", bins_s=f"{rate:,.0f}")
        bar.close()
        model.eval()
        if ddp.main:
            P, Y = scores_for_range(model, X, va, vb)
            valid = pooled_auc(P, Y)
        keys = ("pr_auc", "roc_auc", "base_rate")
        valid = dict(zip(keys, ddp.broadcast([valid[k] for k in keys] if ddp.main else [0.0] * 3)))
        epoch += 1
        state["train_s"] += time.perf_counter() - t0
        state["history"].append({"epoch": epoch, "loss": running, **valid,
                                 "seconds": time.perf_counter() - t0})
        improved = state["best"] is None or (valid["pr_auc"] > state["best"]["pr_auc"])
        if improved:  # a frozen copy: training goes on mutating `model`
            state["best"] = {"epoch": epoch, **valid}
            state["bad_epochs"] = 0
            best_model = copy.deepcopy(model).cpu()
            if ddp.main:
                meta["calibration"] = fit_calibration(P, Y)
        else:
            state["bad_epochs"] += 1
        if log:
            tqdm.write(f"epoch {epoch}: loss {running:.4f}, valid PR-AUC {valid['pr_auc']:.4f}, "
                       f"ROC-AUC {valid['roc_auc']:.4f}{' (best)' if improved else ''}")
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
    return meta


def _resumed(spath: Path, cfg: ModelConfig, args: dict[str, Any], out: Path
             ) -> tuple[SpikeTransformer, SpikeTransformer, dict[str, torch.Tensor], dict]:
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
        model = SpikeTransformer(stored)
        model.load_state_dict(weights)
        models.append(model)
    if "rng.torch" not in tensors or not isinstance(state.get("meta"), dict):
        raise SpikevizError("the training state is incomplete: train again without --resume", spath)
    return models[0], models[1], tensors, state


def train_recording(recording: Recording, out: str | Path, opts: TrainOptions,
                    seconds: float | None = None, bin_ms: float = 1.0, n_units: int = 128,
                    session: str | None = None, domain: str | None = None, **kwargs: Any
                    ) -> dict[str, Any]:
    """Bin `recording` (its first `seconds` only, if given) and `train` on it.

    The checkpoint records the whole recording's content hash, the bundled `session` name and
    `domain` when known, and the chosen unit ids. `kwargs` go to `train`.
    """
    content_hash = recording.content_hash()
    if seconds is not None:
        if not seconds > 0:
            raise SpikevizError(f"--seconds must be positive, got {seconds}")
        recording = recording.slice(0.0, seconds)
    binned = bin_spikes(recording, bin_ms=bin_ms, n_units=n_units)
    data_meta = {"data": recording.name, "data_path": recording.source.get("path"),
                 "session": session, "domain": domain, "content_hash": content_hash,
                 "seconds": seconds, "duration_s": recording.duration_s,
                 "unit_ids": [str(u) for u in binned.unit_ids]}
    return train(binned, out, opts, data_meta, **kwargs)
