"""Result tables: the current evaluation per predictor, and the cross-session table shipped with the models."""
from __future__ import annotations

import json
from typing import Callable

import pandas as pd

from ..data.catalog import models_dir, sessions
from ..data.catalog import shipped_checkpoints
from ..evaluation.report import build_table
from ..data.store import Cache, content_key
from .compute import Evaluation
from .frames import Frame

TABLE_FILES = ("table.json",)   # `spikeviz table --out models` writes it next to the checkpoints
TABLE_SECONDS = 60.0            # evaluated seconds per cell when the dashboard builds the table
MISSING = ("No cross-session table yet: ship one with `spikeviz table --out models`, or press "
           f"*Compute the table* (every checkpoint on every session, {TABLE_SECONDS:g} s each: "
           "minutes on 2 cores; cached on disk afterwards).")


def current_metrics(ev: Evaluation | None, frame: Frame | None = None) -> pd.DataFrame:
    """Every predictor on the evaluated window: AUCs with chance, F1 at its own presets and at the
    chosen threshold for the generator."""
    # "oracle": the best threshold chosen on the scored bins themselves, for comparison only.
    columns = ["predictor", "role", "ROC-AUC", "PR-AUC", "PR chance", "F1 max (oracle)",
               "F1 density match (oracle)", "F1 at threshold"]
    if ev is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for name, h in ev.hists.items():
        is_gen = name == ev.generator.name
        rows.append([name, "generator" if is_gen else "baseline", h.roc_auc, h.pr_auc, h.base_rate,
                     h.operating_point(h.threshold("max-f1")).f1,
                     h.operating_point(h.threshold("density")).f1,
                     frame.op.f1 if is_gen and frame is not None else None])
    return pd.DataFrame(rows, columns=columns).round(4)


def _cache_key() -> str:
    """Names the table by the checkpoints it covers (name, size, time) and its settings."""
    stamps = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shipped_checkpoints()]
    return content_key("dashboard-cross-session-table", stamps, TABLE_SECONDS)


def cross_session_table() -> dict | None:
    """The table shipped next to the models (`spikeviz table --out models`), else the one this
    dashboard computed for the same checkpoints; None when there is neither."""
    for name in TABLE_FILES:
        path = models_dir() / name
        if path.is_file():
            return json.loads(path.read_text())
    return Cache(memo=True).get_json(_cache_key()) if shipped_checkpoints() else None


def build_cross_session_table(progress: Callable[[float, str], None]) -> dict:
    """Every shipped checkpoint on every bundled session (first TABLE_SECONDS of each test split),
    stored in the spikeviz cache so it is computed once."""
    paths = shipped_checkpoints()
    cells = max(1, len(paths) * len(sessions()))
    done = iter(range(cells))
    table = build_table(paths, seconds=TABLE_SECONDS,
                        progress=lambda m: progress(next(done, cells - 1) / cells, f"table: {m}"))
    result = table.as_dict()
    Cache(memo=True).put_json(_cache_key(), result)
    return result


def table_frames(table: dict | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per direction and loss, one row per cell) as data frames."""
    if not table:
        return pd.DataFrame(), pd.DataFrame()
    return pd.DataFrame(table.get("summary", [])).round(4), pd.DataFrame(table.get("rows", [])).round(4)
