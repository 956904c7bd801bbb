"""The results table: every checkpoint on every session it should be scored on, summaries per direction, and the README sections made from them."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import _atomic
from ..data.binning import SPLIT_NAME
from ..data.catalog import models_dir, sessions, shipped_checkpoints, short_domain
from ..errors import SpikevizError
from ..measures.scoring import json_safe
from ..models.checkpoint import load_model
from ..models.header import trained_on
from ..training.workers import dask_client
from .evaluate import evaluate_checkpoint
from .stretch import SECONDS, WARMUP_S

TABLE_FILES = ("table.md", "table.csv", "table.json")
# Where the runs behind the table live, beside the shipped checkpoints.
RUN_FOLDERS = ("seeds", "loso", "ablations")
README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")


def table_checkpoints(directory: str | Path | None = None) -> list[Path]:
    """Shipped checkpoints and the runs behind the table (seeds, left-out sessions, ablations)."""
    d = Path(directory) if directory else models_dir()
    runs = sorted(p for sub in RUN_FOLDERS for p in (d / sub).glob("*.safetensors")
                  if not p.name.endswith(".state.safetensors"))
    return shipped_checkpoints(d) + runs


def _config_name(meta: dict) -> str:
    """The preset, with its ablation ("generalist, population=False") and the recordings beyond
    the bundled sessions it learnt from ("generalist + 10 other recordings")."""
    changes = (meta.get("train_options") or {}).get("changes") or []
    bundled = {s.name for s in sessions()}
    others = len([t for t in trained_on(meta) if t not in bundled]) if meta.get("sessions") else 0
    return (meta.get("preset", "?") + "".join(f", {k}={v}" for k, v in changes)
            + (f" + {others} other recording{'s' if others > 1 else ''}" if others else ""))


def _kind(meta: dict, test: str, direction: str) -> str:
    trained = trained_on(meta)
    if len(trained) > 1 or meta.get("preset") == "generalist":
        return "seen" if test in trained else "zero-shot"
    if test in trained:
        return "same session"
    a, _, b = direction.partition("->")
    if "?" in (a, b):   # a model of a recording outside the catalogue: its domain is not known
        return "another recording"
    return "within domain" if a == b else "cross domain"


def _direction(result: dict) -> str:
    """"vitro->vivo" and the like, with "?" for a domain that is not known ("?->vivo")."""
    return result["direction"] or (f"{short_domain(result['source']['domain']) or '?'}->"
                                   f"{short_domain(result['domain']) or '?'}")


def _mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD (None for a single value)."""
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


def table_row(result: dict, meta: dict, test: str) -> dict:
    """One table cell from an evaluate_checkpoint result."""
    b, m, c = result["baselines"], result["model"], result["comparison"]
    trained = trained_on(meta)
    row = {"checkpoint": Path(result["checkpoint"]).name,
           "train": trained[0] if len(trained) == 1 else " + ".join(trained),
           "test_session": test, "direction": _direction(result),
           "kind": _kind(meta, test, _direction(result)), "config": _config_name(meta),
           "loss": result["loss"], "seed": meta.get("seed"), "seconds": result["stretch_s"][1]
           - result["stretch_s"][0], "base_rate": result["base_rate"],
           "model_pr": m["pr_auc"], "model_roc": m["roc_auc"], "model_bps": m["bits_per_spike"],
           "model_unit_roc": m["per_unit_roc_auc_median"]}
    for name, r in b.items():
        row |= {f"{name}_pr": r["pr_auc"], f"{name}_roc": r["roc_auc"],
                f"{name}_bps": r["bits_per_spike"]}
    ci = c.get("pr_auc_diff_ci95") or [None, None]
    return row | {"best_baseline": c["best_baseline"], "pr_diff": c["pr_auc_diff"],
                  "pr_diff_lo": ci[0], "pr_diff_hi": ci[1]}


@dataclass
class Table:
    """Every (checkpoint, test session) cell, and mean +/- SD over cells and seeds per group."""

    rows: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def baselines(self) -> list[str]:
        names = []
        for r in self.rows:
            names += [k[:-3] for k in r if k.endswith("_pr") and k not in ("model_pr",)
                      and k[:-3] not in names]
        return names

    @property
    def summary(self) -> list[dict]:
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            key = (r["kind"], r["direction"] or "?", r["config"], r["loss"])
            groups.setdefault(key, []).append(r)
        out = []
        for (kind, d, config, loss), rows in sorted(groups.items()):
            s = {"kind": kind, "direction": d, "config": config, "loss": loss, "cells": len(rows),
                 "seeds": len({r["seed"] for r in rows})}
            for col in ("model_pr", "model_roc", "model_bps", "base_rate", "pr_diff",
                        *(f"{b}_{m}" for b in self.baselines for m in ("pr", "roc", "bps"))):
                s[col + "_mean"], s[col + "_sd"] = _mean_sd([r.get(col) for r in rows])
            best = [r["best_baseline"] for r in rows if r["best_baseline"]]
            s["best_baseline"] = max(set(best), key=best.count) if best else None
            s["wins"] = sum(r["pr_diff"] is not None and r["pr_diff"] > 0 for r in rows)
            s["sure_wins"] = sum(r["pr_diff_lo"] is not None and r["pr_diff_lo"] > 0 for r in rows)
            s["sure_losses"] = sum(r["pr_diff_hi"] is not None and r["pr_diff_hi"] < 0
                                   for r in rows)
            out.append(s)
        return out

    def summary_markdown(self) -> str:
        """The per-group summary: model against its best baseline, PR-AUC, ROC-AUC, bits/spike."""
        lines = ["| kind | direction | model | loss | cells (seeds) | model PR | best baseline | "
                 "its PR | PR diff | CI > 0 / < 0 | model ROC | its ROC | model bits/spike | "
                 "its bits/spike |", "|" + "---|" * 14]
        for s in self.summary:
            b = s["best_baseline"]
            lines.append(
                f"| {s['kind']} | {s['direction']} | {s['config']} | {s['loss']} | "
                f"{s['cells']} ({s['seeds']}) | {_pm(s, 'model_pr', 4)} | {b or '-'} | "
                f"{_pm(s, f'{b}_pr', 4)} | {_pm(s, 'pr_diff', 4, sign=True)} | "
                f"{s['sure_wins']} / {s['sure_losses']} | {_pm(s, 'model_roc')} | "
                f"{_pm(s, f'{b}_roc')} | {_pm(s, 'model_bps', 2, sign=True)} | "
                f"{_pm(s, f'{b}_bps', 2, sign=True)} |")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        st = self.settings
        names = self.baselines
        head = (f"Protocol {st.get('protocol')} (P[t] scored against bin t+1); each test split's "
                f"first {st.get('seconds'):g} s after a {st.get('warmup_s'):g}-s warm-up; "
                f"split {st.get('split_fractions')}; AUCs pooled over units and bins; bits/spike "
                f"over each unit's mean rate in the target's train split. 'PR diff' is model - "
                f"best baseline (by PR-AUC) per cell; 'CI > 0 / < 0' counts the cells whose 95 % "
                f"block-bootstrap interval (blocks of 10 s, 1 s and more on short stretches) lies above / below 0. Mean ± SD over the "
                f"cells (sessions and seeds) of a group.")
        cells = ["| checkpoint | test session | kind | direction | seed | model PR | "
                 + " | ".join(f"{n} PR" for n in names) + " | model bits/spike | "
                 + " | ".join(f"{n} bits/spike" for n in names)
                 + " | best | PR diff [95 % CI] | model ROC | base rate |",
                 "|" + "---|" * (10 + 2 * len(names))]
        for r in self.rows:
            ci = ("" if r["pr_diff_lo"] is None
                  else f" [{r['pr_diff_lo']:+.4f}, {r['pr_diff_hi']:+.4f}]")
            cells.append(
                f"| {r['checkpoint']} | {r['test_session']} | {r['kind']} | {r['direction']} | "
                f"{r['seed']} | {_f(r['model_pr'], 4)} | "
                + " | ".join(_f(r.get(f"{n}_pr"), 4) for n in names)
                + f" | {_f(r['model_bps'], 3, True)} | "
                + " | ".join(_f(r.get(f"{n}_bps"), 3, True) for n in names)
                + f" | {r['best_baseline']} | {_f(r['pr_diff'], 4, True)}{ci} | "
                f"{_f(r['model_roc'])} | {_f(r['base_rate'], 4)} |")
        return "\n".join([head, "", self.summary_markdown(), *cells]) + "\n"

    def as_dict(self) -> dict:
        return json_safe({"settings": self.settings, "summary": self.summary, "rows": self.rows})

    def write(self, out_dir: str | Path, force: bool = True) -> list[Path]:
        """table.md, table.csv (a line a cell) and table.json in `out_dir`, each written atomically;
        existing ones are replaced only with `force`."""
        out_dir = Path(out_dir)
        paths = [out_dir / name for name in TABLE_FILES]
        if not force:
            for path in paths:
                if path.exists():
                    raise SpikevizError("exists already: pass --force to replace it", path)
        with _atomic.target(paths[0]) as tmp:
            tmp.write_text(self.markdown())
        with _atomic.target(paths[1]) as tmp:
            keys = list(dict.fromkeys(k for r in self.rows for k in r))
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(json_safe(self.rows))
        with _atomic.target(paths[2]) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=1))
        return paths

    def check_same_scoring(self, settings: dict) -> None:
        """Refuse cells scored other than this table's (protocol, stretch, threshold)."""
        same = ("protocol", "unit_order", "seconds", "warmup_s", "threshold")
        differ = [k for k in same if self.settings.get(k) != settings.get(k)]
        if differ:
            raise SpikevizError("cannot add cells scored another way to the table: "
                                + ", ".join(f"{k} {settings.get(k)!r} (the table's "
                                            f"{self.settings.get(k)!r})" for k in differ))

    def merged(self, new: "Table") -> "Table":
        """This table with `new`'s cells added: a checkpoint in both has only `new`'s cells. The
        two must have been scored the same way (protocol, stretch, threshold)."""
        self.check_same_scoring(new.settings)
        names = {r["checkpoint"] for r in new.rows}
        kept = {Path(c).name: c for c in self.settings.get("checkpoints", [])}
        kept |= {Path(c).name: c for c in new.settings.get("checkpoints", [])}
        return Table([r for r in self.rows if r["checkpoint"] not in names] + new.rows,
                     self.settings | {"checkpoints": list(kept.values())})

    @classmethod
    def read(cls, path: str | Path) -> "Table":
        """A table written by `write` (its table.json)."""
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["rows"], d["settings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpikevizError(f"not a spikeviz results table ({exc})", path) from exc


def _f(x, nd: int = 3, sign: bool = False) -> str:
    return "-" if x is None else f"{x:{'+' if sign else ''}.{nd}f}"


def _pm(s: dict, col: str, nd: int = 3, sign: bool = False) -> str:
    m, sd = s.get(col + "_mean"), s.get(col + "_sd")
    return "-" if m is None else _f(m, nd, sign) + ("" if sd is None else f" ± {sd:.{nd}f}")


def scoring_settings(*, seconds: float = SECONDS, warmup_s: float = WARMUP_S,
                     unit_order: str = "auto", protocol: str = "strict",
                     threshold: float | str = "youden") -> dict:
    """How a table's cells are scored (its settings, less the checkpoints): what cells added to
    a table must share with it."""
    return {"protocol": protocol, "unit_order": unit_order, "seconds": seconds,
            "warmup_s": warmup_s, "split": "test", "split_fractions": SPLIT_NAME,
            "threshold": threshold}


def build_table(checkpoints: Sequence[str | Path] | None = None, *, seconds: float = SECONDS,
                warmup_s: float = WARMUP_S, unit_order: str = "auto", protocol: str = "strict",
                threshold: float | str = "youden", baselines: Sequence[str] | None = None,
                jobs: int = 1, progress: Callable[[str], None] = lambda msg: None) -> Table:
    """Evaluate every checkpoint on the bundled sessions' test splits (the same stretch for all):
    one-recording models and generalists on every session, left-out runs (trained on some
    sessions, not all) only on the sessions they never saw. Generalists are scored alone (their
    own warm-up guard, `evaluate --without-glm`): the table compares how models were trained,
    not their blend with each target's GLM. `jobs` > 1 evaluates groups of checkpoints in that
    many processes (each fits its own baselines)."""
    paths = list(checkpoints) if checkpoints is not None else table_checkpoints()
    if not paths:
        raise SpikevizError(f"no checkpoints in {models_dir()}: train some (spikeviz train) or "
                            f"set $SPIKEVIZ_MODELS")
    table = Table(settings=scoring_settings(seconds=seconds, warmup_s=warmup_s,
                                            unit_order=unit_order, protocol=protocol,
                                            threshold=threshold)
                  | {"checkpoints": [str(p) for p in paths]})
    if jobs > 1 and len(paths) > 1:
        groups = [paths[k::jobs] for k in range(jobs)]
        options = dict(seconds=seconds, warmup_s=warmup_s, unit_order=unit_order,
                       protocol=protocol, threshold=threshold, baselines=baselines)
        with dask_client(workers=jobs) as client:
            parts = client.gather(client.map(_table_rows, groups, [options] * jobs, pure=False))
        by_checkpoint = {}
        for rows in parts:
            for r in rows:
                by_checkpoint.setdefault(r["checkpoint"], []).append(r)
        table.rows = [r for p in paths for r in by_checkpoint.get(Path(p).name, [])]
        return table
    cache: dict = {}
    targets = sessions()
    for path in paths:
        model = load_model(path)
        trained = set(trained_on(model.meta))
        left_out = 1 < len(trained) < len(targets)
        for test in targets:
            if left_out and test.name in trained:
                continue
            progress(f"{Path(path).name} on {test.name} ({seconds:g} s)")
            result = evaluate_checkpoint(model, test.load(), unit_order=unit_order,
                                         protocol=protocol, threshold=threshold, seconds=seconds,
                                         warmup_s=warmup_s, cache=cache, glm=False,
                                         **({} if baselines is None else {"baselines": baselines}))
            table.rows.append(table_row(result, model.meta, test.name))
    return table


def _table_rows(paths: list, options: dict) -> list[dict]:
    return build_table(paths, **options).rows


def replace_section(text: str, section: str, markers: tuple[str, str] = README_MARKERS) -> str:
    """`text` with what stands between the two markers replaced by `section`."""
    start, end = (re.escape(m) for m in markers)
    if not re.search(f"{start}.*?{end}", text, flags=re.S):
        raise SpikevizError(f"no {markers[0]} ... {markers[1]} section to replace")
    return re.sub(f"{start}.*?{end}", lambda _: f"{markers[0]}\n{section}{markers[1]}", text,
                  count=1, flags=re.S)


def update_readme(path: str | Path, table: Table) -> None:
    """Rewrite the results section of a Markdown file with the table's summary (atomically)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpikevizError(f"cannot read it ({exc.strerror})", path) from exc
    try:
        new = replace_section(text, table.summary_markdown())
    except SpikevizError as exc:
        raise SpikevizError(str(exc), path) from exc
    with _atomic.target(path) as tmp:
        tmp.write_text(new)
