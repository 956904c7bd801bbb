"""The table of models/README.md: test-split PR-AUC and ROC-AUC of each shipped checkpoint vs rate and EWMA."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import spikeviz
from spikeviz.baselines import EWMAPredictor, RatePredictor
from spikeviz.checkpoint import load_model
from spikeviz.metrics import pr_auc, roc_auc
from spikeviz.predictor import split_bounds
from spikeviz.training import scores_for_range

HERE = Path(__file__).resolve().parent
TRANSFER_BINS = 60_000   # transfer models predict one sequence per unit: scored on 60 s of test


def binned(session: str, seconds: float | None):
    rec = spikeviz.load_session(session)
    return spikeviz.bin_spikes(rec if seconds is None else rec.slice(0.0, seconds))


def score(model, b, train, lo, hi) -> dict:
    X = b.X
    P, Y = scores_for_range(model, X, lo, hi)
    E = EWMAPredictor(50.0, b.bin_ms).predict(X[:hi - 1])[lo - 1:]   # warm from the start
    R = RatePredictor().fit(X[train[0]:train[1]]).predict(Y)
    return {"bins": [lo, hi], "density": float(Y.mean()),
            **{f"{k}_{m}": float(f(Y, S)) for k, S in (("model", P), ("ewma", E), ("rate", R))
               for m, f in (("pr", pr_auc), ("roc", roc_auc))}}


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for path in sorted(HERE.glob("*.safetensors")):
        if path.name.endswith(".state.safetensors"):
            continue
        model = load_model(path)
        meta = model.meta
        b = binned(meta["session"], meta.get("seconds"))
        lo, hi = meta["split"]["test"]
        transfer = model.config.shared_units
        if transfer:
            hi = min(hi, lo + TRANSFER_BINS)
        row = {"model": path.name, "train_s": meta["train_seconds"], "epochs": meta["epochs"],
               "best_epoch": meta["best_epoch"], "within": score(model, b, meta["split"]["train"],
                                                                lo, hi)}
        if transfer:  # the other domain's session, never seen in training
            other = ("invivo_NYU-40_2021-04-14_001" if meta["domain"] == "in vitro"
                     else "invitro_210511001_bh")
            ob = binned(other, 1000.0 if other.startswith("invivo") else None)
            split = split_bounds(ob.n_bins)
            olo = split["test"][0]
            row["cross"] = {"session": other, **score(model, ob, split["train"], olo,
                                                      olo + TRANSFER_BINS)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    (HERE / "results.json").write_text(json.dumps(rows, indent=1))
    print("| checkpoint | train time | epochs (best) | test bins | density | model PR | EWMA PR "
          "| rate PR | model ROC | EWMA ROC | rate ROC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for tag, s in (("", r["within"]), (" → " + r.get("cross", {}).get("session", ""),
                                           r.get("cross"))):
            if s is None:
                continue
            print(f"| {r['model']}{tag} | {r['train_s']:.0f} s | {r['epochs']} ({r['best_epoch']}) "
                  f"| {s['bins'][0]:,}-{s['bins'][1]:,} | {s['density']:.4f} "
                  f"| **{s['model_pr']:.4f}** | {s['ewma_pr']:.4f} | {s['rate_pr']:.4f} "
                  f"| {s['model_roc']:.3f} | {s['ewma_roc']:.3f} | {s['rate_roc']:.3f} |")


if __name__ == "__main__":
    main()
