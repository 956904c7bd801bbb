"""Benchmark (issue "Learn from many labs"): a generalist trained on the bundled sessions plus the
corpus (../shared/data/corpus), judged K-fold by recording, against the bundled-only generalist and
the baselines fitted on each target.

    python benchmarks/bench_corpus_generalist.py [--folds 3] [--seconds 400] [--epochs 15]
        [--fold-minutes 16] [--eval-seconds 200] [--seed 0] [--out DIR] [--only-fold K ...]

The 13 recordings (3 bundled sessions, 9 Aplysia, 1 rat CA1) are dealt into --folds folds, lab by
lab (bundled in vitro, bundled in vivo, rat, Aplysia) so each fold holds a share of every lab. For
each fold a generalist (preset "generalist", focal loss, spikeviz.training.loop.train_recordings)
is trained on every other fold's recordings, each capped to its first --seconds (train split its
first 50 %, validation the next 25 %), for at most --epochs epochs and --fold-minutes of training
(then the best epoch so far is kept). Each held-out recording is then scored zero-shot with
spikeviz.evaluation.evaluate.evaluate_checkpoint (test split, up to --eval-seconds after the
30-s warm-up the guard is refitted on; strict protocol) by:
  - the fold generalist (bundled + corpus, never saw it);
  - the bundled-only generalist that never saw it: models/generalist-focal.safetensors for a
    corpus recording, models/loso/generalist-focal-without-<session>-seed0 for a bundled one;
  - the baselines glm-coupled and ewma, fitted on the target's own train split.
Per row: PR-AUC and bits/spike, the ratio of PR-AUC to glm-coupled, the paired difference
model - glm-coupled with its 95 % block-bootstrap interval, and whether the model is below EWMA.
One JSON line per row as it is scored, a Markdown table at the end. Fold checkpoints go to --out
(default a temporary folder), never to models/.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SESSIONS = ("invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001")
CORPUS = ROOT.parent / "shared" / "data" / "corpus"  # ../shared
BASELINES = ("glm-coupled", "ewma")


def catalog() -> list[dict]:
    """Every recording: name, where it is read from, lab and domain."""
    out = [dict(name=s, source=s, lab="bundled " + ("in vivo" if "invivo" in s else "in vitro"),
                domain="in vivo" if "invivo" in s else "in vitro", session=s) for s in SESSIONS]
    for p in sorted(CORPUS.glob("*.csv")):
        rat = p.stem.startswith("rat")
        out.append(dict(name=p.stem, source=str(p), lab="rat CA1" if rat else "Aplysia",
                        domain="in vivo" if rat else "in vitro", session=None))
    if len(out) == len(SESSIONS):
        raise SystemExit(f"no corpus recordings in {CORPUS}: this benchmark needs ../shared")
    return out


def folds(entries: list[dict], k: int) -> list[list[dict]]:
    """Deal the recordings into k folds lab by lab, the dealer's position carried over between
    labs, so every fold gets a share of each lab and the folds' sizes differ by one at most."""
    order = ("bundled in vitro", "bundled in vivo", "rat CA1", "Aplysia")
    out, i = [[] for _ in range(k)], 0
    for lab in order:
        for e in (e for e in entries if e["lab"] == lab):
            out[i % k].append(e)
            i += 1
    return out


def load(entry: dict):
    import spikeviz
    from spikeviz.data.catalog import open_recording

    return spikeviz.load_session(entry["source"]) if entry["session"] else \
        open_recording(entry["source"])


def train_fold(train: list[dict], out: Path, args) -> dict:
    from spikeviz.training.loop import TrainOptions, train_recordings

    t0 = time.perf_counter()
    limit = args.fold_minutes * 60.0
    meta = train_recordings([load(e) for e in train], out,
                            TrainOptions(preset="generalist", loss="focal", seed=args.seed,
                                         epochs=args.epochs),
                            seconds=args.seconds, sessions=[e["session"] for e in train],
                            domains=[e["domain"] for e in train], force=True, progress=False,
                            log=True, callback=lambda *_: time.perf_counter() - t0 < limit)
    return {"train_s": round(time.perf_counter() - t0, 1), "epochs": meta["epochs"],
            "best_epoch": meta["best_epoch"], "valid_score": meta["valid"].get("score"),
            "cancelled": bool(meta.get("cancelled"))}


def bundled_only(entry: dict) -> Path:
    models = ROOT / "models"
    if entry["session"]:
        return models / "loso" / f"generalist-focal-without-{entry['session']}-seed0.safetensors"
    return models / "generalist-focal.safetensors"


def score(checkpoint: Path, rec, args, cache: dict) -> dict:
    """The checkpoint's PR-AUC and bits/spike, and model - glm-coupled with its interval."""
    from spikeviz.evaluation.evaluate import evaluate_checkpoint

    # The generalist alone (`evaluate --without-glm`): bench_glm_blend.py scores the blend.
    kw = dict(seconds=args.eval_seconds, cache=cache, glm=False)
    r = evaluate_checkpoint(checkpoint, rec, baselines=BASELINES, **kw)
    if r["comparison"]["best_baseline"] != "glm-coupled":   # compared with the best: ask again
        r = evaluate_checkpoint(checkpoint, rec, baselines=("glm-coupled",), **kw) | {
            "baselines": r["baselines"]}
    c = r["comparison"]
    return {"pr": r["model"]["pr_auc"], "bps": r["model"]["bits_per_spike"],
            "diff": c["pr_auc_diff"], "ci95": c["pr_auc_diff_ci95"],
            "bps_diff": c["bits_per_spike_diff"], "bps_ci95": c["bits_per_spike_diff_ci95"],
            "guard": r["guard"], "baselines": r["baselines"], "n_units": r["n_units"],
            "stretch_s": r["stretch_s"]}


def row(entry: dict, fold: int, checkpoint: Path, args) -> dict:
    rec = load(entry)
    cache: dict = {}
    t0 = time.perf_counter()
    fold_r = score(checkpoint, rec, args, cache)
    base_r = score(bundled_only(entry), rec, args, cache)
    b = fold_r["baselines"]
    glm, ewma = b["glm-coupled"]["pr_auc"], b["ewma"]["pr_auc"]
    out = {"recording": entry["name"], "lab": entry["lab"], "fold": fold,
           "units": fold_r["n_units"], "stretch_s": fold_r["stretch_s"],
           "glm_pr": glm, "glm_bps": b["glm-coupled"]["bits_per_spike"],
           "ewma_pr": ewma, "ewma_bps": b["ewma"]["bits_per_spike"],
           "bundled_only_checkpoint": bundled_only(entry).name}
    for key, r in (("corpus", fold_r), ("bundled", base_r)):
        out |= {f"{key}_pr": r["pr"], f"{key}_bps": r["bps"], f"{key}_ratio": r["pr"] / glm,
                f"{key}_diff": r["diff"], f"{key}_ci95": r["ci95"],
                f"{key}_bps_diff": r["bps_diff"], f"{key}_bps_ci95": r["bps_ci95"],
                f"{key}_below_ewma": r["pr"] < ewma, f"{key}_guard": r["guard"]}
    out["score_s"] = round(time.perf_counter() - t0, 1)
    return out


def table(rows: list[dict]) -> str:
    head = ("| recording | lab | fold | units | glm-coupled PR | ewma PR | corpus gen. PR | ratio "
            "| diff vs glm [95 %] | < ewma | bundled-only PR | ratio | diff vs glm [95 %] | < ewma "
            "| glm b/s | corpus b/s | bundled b/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def ci(d, c):
        return f"{d:+.4f} " + ("(no interval)" if c is None else f"[{c[0]:+.4f}, {c[1]:+.4f}]")

    for r in rows:
        lines.append(
            f"| {r['recording']} | {r['lab']} | {r['fold']} | {r['units']} | {r['glm_pr']:.4f} "
            f"| {r['ewma_pr']:.4f} | {r['corpus_pr']:.4f} | {r['corpus_ratio']:.2f} "
            f"| {ci(r['corpus_diff'], r['corpus_ci95'])} | {'yes' if r['corpus_below_ewma'] else 'no'} "
            f"| {r['bundled_pr']:.4f} | {r['bundled_ratio']:.2f} "
            f"| {ci(r['bundled_diff'], r['bundled_ci95'])} | {'yes' if r['bundled_below_ewma'] else 'no'} "
            f"| {r['glm_bps']:+.3f} | {r['corpus_bps']:+.3f} | {r['bundled_bps']:+.3f} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    import numpy as np

    lines = ["", "| group | n | corpus gen. ratio (median, min) | >= 0.9x | bundled-only ratio "
             "(median, min) | >= 0.9x |", "|---|---|---|---|---|---|"]
    groups = {"all": rows}
    for lab in dict.fromkeys(r["lab"] for r in rows):
        groups[lab] = [r for r in rows if r["lab"] == lab]
    for name, rs in groups.items():
        cells = []
        for key in ("corpus", "bundled"):
            x = np.array([r[f"{key}_ratio"] for r in rs])
            cells += [f"{np.median(x):.2f}, {x.min():.2f}", f"{int((x >= 0.9).sum())}/{len(x)}"]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=400.0,
                    help="train on the first SECONDS of each recording (its first 50 %%)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--fold-minutes", type=float, default=16.0,
                    help="stop a fold's training after this long (the best epoch is kept)")
    ap.add_argument("--eval-seconds", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", help="folder for the fold checkpoints (default: a temporary one)")
    ap.add_argument("--only-fold", type=int, nargs="*", help="run only these folds (0-based)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    tmp = None if args.out else tempfile.TemporaryDirectory()
    out_dir = Path(args.out or tmp.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    dealt = folds(catalog(), args.folds)
    t_all = time.perf_counter()
    rows, fold_log = [], []
    for k, held in enumerate(dealt):
        if args.only_fold is not None and k not in args.only_fold:
            continue
        train = [e for j, f in enumerate(dealt) if j != k for e in f]
        ckpt = out_dir / f"generalist-focal-corpus-fold{k}of{args.folds}-seed{args.seed}.safetensors"
        log = {"fold": k, "held_out": [e["name"] for e in held],
               "trained_on": [e["name"] for e in train]}
        log |= train_fold(train, ckpt, args)
        fold_log.append(log)
        print(json.dumps(log), flush=True)
        for e in held:
            rows.append(row(e, k, ckpt, args))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(rows)} recordings in {time.perf_counter() - t_all:.0f} s; folds: "
          + "; ".join(f"fold {f['fold']}: {f['train_s']:.0f} s, {f['epochs']} epochs "
                      f"(best {f['best_epoch']})" for f in fold_log) + "\n")
    print(table(rows))
    print(summary(rows))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
