"""Which units of a recording a model sees, and in which column order."""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .binning import train_units
from ..errors import SpikevizError
from .recording import Recording


SILENT = re.compile(r"pad\d+")   # the ids `train --pad` gives the silent units it adds


def with_silent_units(recording: Recording, n_units: int) -> Recording:
    """`recording` with silent units pad0, pad1... appended up to `n_units` (`train --pad`)."""
    extra = n_units - recording.n_units
    ids = np.array([str(u) for u in recording.unit_ids] + [f"pad{k}" for k in range(extra)])
    empty = tuple(np.empty(0, np.float64) for _ in range(extra))
    # Per-unit extras are dropped: they have no value for the added units.
    return Recording(recording.name, ids, recording.spike_times + empty, recording.duration_s,
                     recording.source)


def silent_units(unit_ids: Sequence[str]) -> int:
    """How many of `unit_ids`, at their end, are silent units `train --pad` added."""
    k = 0
    while k < len(unit_ids) and SILENT.fullmatch(str(unit_ids[-1 - k])):
        k += 1
    return k


def parse_unit_order(spec: str) -> tuple[str, int | None]:
    """("recorded" | "rate-rank" | "auto", None) or ("random", seed) from a policy string."""
    if spec in ("auto", "recorded", "rate-rank"):
        return spec, None
    if spec.startswith("random:"):
        try:
            return "random", int(spec.split(":", 1)[1])
        except ValueError:
            pass
    raise SpikevizError(f"unknown unit order {spec!r}: use recorded, random:SEED (e.g. random:0), "
                        f"rate-rank or auto")


def unit_permutation(policy: str, n_units: int, warmup: np.ndarray | None = None,
                     source_rates: np.ndarray | None = None) -> np.ndarray:
    """perm with model input column j = target column perm[j].

    recorded: identity. random:SEED: a seeded permutation (the paper's choice). rate-rank: the
    target column with the k-th highest spike count in `warmup` (T, N) goes where the source
    unit with the k-th highest `source_rates` was trained.
    """
    kind, seed = parse_unit_order(policy)
    if kind == "recorded":
        return np.arange(n_units)
    if kind == "random":
        return np.random.default_rng(seed).permutation(n_units)
    if kind == "rate-rank":
        if warmup is None or source_rates is None:
            raise SpikevizError("rate-rank needs the target's warm-up window and the source "
                                "session's unit rates")
        if len(source_rates) != n_units or warmup.shape[1] != n_units:
            raise SpikevizError(f"rate-rank maps units one to one: {len(source_rates)} source "
                                f"units, {warmup.shape[1]} target units")
        target_rank = np.argsort(-warmup.sum(0, dtype=np.int64), kind="stable")
        source_rank = np.argsort(-np.asarray(source_rates), kind="stable")
        perm = np.empty(n_units, np.int64)
        perm[source_rank] = target_rank
        return perm
    raise SpikevizError("unit order 'auto' must be resolved before permuting")


def ids_named(recording: Recording, names: Sequence[str]) -> list:
    """The recording's unit ids whose string forms are `names` (checkpoints store ids as strings)."""
    by_name = {str(u): u for u in recording.unit_ids.tolist()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SpikevizError(f"units {missing[:5]} of the checkpoint are not in {recording.name}")
    return [by_name[n] for n in names]


def target_units(model, recording: Recording, same: bool, n_units: int) -> list:
    """Units of `recording` a model sees: its own columns on its training data, else the most
    active ones of the training split (the model's unit count; at most `n_units` for a
    unit-agnostic model)."""
    meta, cfg = model.meta, model.config
    if same and meta.get("unit_ids"):
        return ids_named(recording, [str(u) for u in meta["unit_ids"]])
    if cfg.shared_units:
        return train_units(recording, min(n_units, recording.n_units))
    if recording.n_units < cfg.n_units:
        raise SpikevizError(f"{recording.n_units} units, but the model was trained on "
                            f"{cfg.n_units}: evaluate it on a recording with at least as many "
                            f"units, or use a unit-agnostic model (generalist, transfer)",
                            recording.source.get("path"))
    return train_units(recording, cfg.n_units)


def rates_for(n_units: int, rates: np.ndarray) -> np.ndarray:
    """`rates` as given for n_units of them, else their quantiles high to low (rank matching
    across unit counts, for transfer models trained on another number of units)."""
    if len(rates) == n_units:
        return rates
    q = np.linspace(0.0, 1.0, n_units)
    return np.quantile(np.sort(rates), 1.0 - q).astype(np.float32)
