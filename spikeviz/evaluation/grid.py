"""The (train session x test session x loss) grid on dask.distributed, each cell cached by content hash."""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dask.distributed import as_completed

from .. import _atomic
from .._version import __version__
from ..errors import SpikevizError
from ..data.recording import Recording
from ..data.store import Cache, content_key
from ..data.catalog import find_session, open_recording, sessions
from ..models.baselines import ALL_BASELINES, PREDICTORS
from ..training.loop import TrainOptions, train_recording
from ..training.workers import dask_client
from .evaluate import evaluate_checkpoint


@dataclass(frozen=True)
class GridSpec:
    """What the grid trains and evaluates; every field enters the cells' content hashes."""

    sessions: tuple[str, ...]
    losses: tuple[str, ...] = ("dice", "focal")
    preset: str = "fast"
    epochs: int = 3
    seconds: float | None = None
    seed: int = 0
    eval_seconds: float = 200.0
    baselines: tuple[str, ...] = ALL_BASELINES   # scored beside each model (spikeviz evaluate's)

    def __post_init__(self) -> None:
        if not self.sessions:
            raise SpikevizError("the grid needs at least one session")
        if self.epochs < 1:
            raise SpikevizError(f"epochs must be at least 1, got {self.epochs}")
        if self.seconds is not None and not self.seconds > 0:
            raise SpikevizError(f"seconds must be positive, got {self.seconds}")
        unknown = [b for b in self.baselines if b not in PREDICTORS]
        if unknown:
            raise SpikevizError(f"unknown baselines {unknown}: use {', '.join(PREDICTORS)}")


def load_session_or_path(spec: str) -> tuple[Recording, str | None]:
    """A bundled session by name, or a recording file/folder; also the catalog domain if bundled."""
    found = find_session(spec)
    return open_recording(spec), found.domain if found else None


def _first(recording: Recording, seconds: float | None) -> Recording:
    return recording if seconds is None else recording.slice(0.0, seconds)


def _one_thread() -> None:
    # One task per worker thread: torch's own thread pool would oversubscribe the cores.
    import torch

    torch.set_num_threads(1)


def train_cell(session: str, loss: str, spec: GridSpec, cache_dir: str) -> dict[str, Any]:
    """Train one (session, loss) model, or reuse it: returns the cached checkpoint's path."""
    _one_thread()
    cache = Cache(cache_dir)
    recording, domain = load_session_or_path(session)
    key = content_key("train", recording.content_hash(), loss, spec.preset, spec.epochs,
                      spec.seconds, spec.seed, __version__)
    found = cache.get_file(key, "model.safetensors")
    if found is None:
        with tempfile.TemporaryDirectory(dir=cache.root) as tmp:
            out = Path(tmp) / "model.safetensors"
            opts = TrainOptions(preset=spec.preset, loss=loss, epochs=spec.epochs, seed=spec.seed)
            train_recording(recording, out, opts, seconds=spec.seconds, domain=domain,
                            session=session if domain else None, progress=False, log=False)
            found = cache.put_file(key, "model.safetensors", out)
        cached = False
    else:
        cached = True
    return {"session": session, "loss": loss, "checkpoint": str(found), "key": key, "cached": cached}


def eval_cell(trained: dict[str, Any], test_session: str, spec: GridSpec, cache_dir: str
              ) -> dict[str, Any]:
    """Evaluate one trained model and the baselines on one test session, or reuse the result."""
    _one_thread()
    cache = Cache(cache_dir)
    recording, _ = load_session_or_path(test_session)
    recording = _first(recording, spec.seconds)
    key = content_key("eval", trained["key"], recording.content_hash(), spec.eval_seconds,
                      list(spec.baselines), __version__)
    result = cache.get_json(key)
    cached = result is not None
    if not cached:
        result = evaluate_checkpoint(trained["checkpoint"], recording, seconds=spec.eval_seconds,
                                     baselines=spec.baselines)
        cache.put_json(key, result)
    return {"train_session": trained["session"], "test_session": test_session,
            "loss": trained["loss"], "direction": result.get("direction"),
            "unit_order": result.get("unit_order"), "base_rate": result.get("base_rate"),
            "model": result["model"], "baselines": result["baselines"],
            "checkpoint": trained["checkpoint"], "cached": cached and trained["cached"]}


def run_grid(spec: GridSpec, out_dir: str | Path, scheduler: str = "local", workers: int = 2,
             progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Run every training and evaluation of `spec` on Dask; results land in `out_dir`.

    One task per (train session, loss) training and one per (model, test session) evaluation,
    each depending on its training. Finished cells are reused from `out_dir/cache` by content
    hash, so a rerun or an interrupted run only computes what is missing.
    """
    out_dir = Path(out_dir)
    cache_dir = str((out_dir / "cache").resolve())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for s in spec.sessions:   # bad input is one clear error here, not a failed task on a worker
        load_session_or_path(s)
    with dask_client(scheduler, workers) as client:
        trained = {(s, loss): client.submit(train_cell, s, loss, spec, cache_dir, pure=False,
                                            key=f"train-{content_key(s, loss, asdict(spec))}")
                   for s in spec.sessions for loss in spec.losses}
        evals = [client.submit(eval_cell, fut, test, spec, cache_dir, pure=False,
                               key=f"eval-{content_key(s, loss, test, asdict(spec))}")
                 for (s, loss), fut in trained.items() for test in spec.sessions]
        cells = []
        for fut in as_completed(evals):
            cell = fut.result()
            cells.append(cell)
            progress(f"{len(cells)}/{len(evals)} {cell['train_session']} -> "
                     f"{cell['test_session']} ({cell['loss']}){' cached' if cell['cached'] else ''}")
    order = {s: i for i, s in enumerate(spec.sessions)}
    cells.sort(key=lambda c: (order[c["train_session"]], order[c["test_session"]], c["loss"]))
    summary = {"spec": asdict(spec), "scheduler": scheduler,
               "workers": workers if scheduler == "local" else None,
               "wall_s": round(time.perf_counter() - t0, 2), "cells": cells,
               "cached": sum(c["cached"] for c in cells)}
    with _atomic.target(out_dir / "grid.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def default_sessions() -> tuple[str, ...]:
    return tuple(s.name for s in sessions())


def parse_list(text: str | None, default: Sequence[str]) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else tuple(default)
