"""Train every checkpoint spikeviz ships: generalists (all sessions, leave-one-session-out, ablations)
and the per-session paper-recipe models (`fast`), each configuration with seeds 0, 1 and 2.

    python models/train_all.py [--jobs 2] [--only REGEX] [--deadline SECONDS] [--out models]

`generalist-focal-corpus` also learns from the ten corpus recordings of two other labs
(../shared/data/corpus: Aplysia pedal ganglion, rat CA1; MIT-licensed, not shipped in data/), each
cut to its first 400 s as docs/corpus_generalist.md judged the recipe leave-recordings-out; it is
skipped when ../shared is not there.

Runs the trainings on a local Dask cluster (spikeviz.training.workers: one process and one torch
thread a training, sharing the GPU if there is one).
Finished checkpoints are skipped; one cut off (its resume state beside it) continues.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dask.distributed import as_completed  # noqa: E402

from spikeviz.training.workers import dask_client  # noqa: E402

BH, LH, VIVO = "invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001"
SESSIONS = (BH, LH, VIVO)
SEEDS = (0, 1, 2)
# The in vivo session is 3,541 s: its per-session models train on the first 1000 s, as before.
SECONDS = {VIVO: 1000.0}
# The recordings of two other labs (../shared/data/README.md has their sources and licences).
CORPUS = ROOT.parent / "shared" / "data" / "corpus"
ABLATIONS = {"context1": (("context", 1),), "nopop": (("population", False),),
             "nonorm": (("normalize", False),)}


def _name(stem: str, seed: int) -> str:
    return f"{stem}.safetensors" if seed == 0 else f"seeds/{stem}-seed{seed}.safetensors"


def jobs() -> list[dict]:
    """(file, sessions, options) of every checkpoint, seed 0 first, generalists first."""
    out = []
    for loss in ("focal", "dice"):
        for seed in SEEDS:
            out.append(dict(file=_name(f"generalist-{loss}", seed), sessions=SESSIONS,
                            preset="generalist", loss=loss, seed=seed, epochs=15))
    # The recipe docs/corpus_generalist.md judged K-fold by recording, trained on all 13.
    out.append(dict(file="generalist-focal-corpus.safetensors", sessions=SESSIONS, corpus=True,
                    preset="generalist", loss="focal", seed=0, epochs=20, seconds=400.0))
    for held in SESSIONS:
        rest = tuple(s for s in SESSIONS if s != held)
        for loss, seeds in (("focal", SEEDS), ("dice", (0,))):
            for seed in seeds:
                out.append(dict(file=f"loso/generalist-{loss}-without-{held}-seed{seed}"
                                     f".safetensors", sessions=rest, preset="generalist",
                                loss=loss, seed=seed, epochs=15))
        for name, changes in ABLATIONS.items():
            # Context 1: as many bins a batch as the others, in 2-bin windows.
            out.append(dict(file=f"ablations/generalist-focal-{name}-without-{held}.safetensors",
                            sessions=rest, preset="generalist", loss="focal", seed=0, epochs=15,
                            changes=changes, batch_size=2048 if name == "context1" else None))
    for seed in SEEDS:
        for s in SESSIONS:
            for loss in ("focal", "dice"):
                out.append(dict(file=_name(f"{s}-{loss}", seed), sessions=(s,), preset="fast",
                                loss=loss, seed=seed, epochs=15, seconds=SECONDS.get(s)))
    # Seed 0 of everything first: a deadline then cuts only extra seeds.
    return sorted(out, key=lambda j: j["seed"] > 0)


def run(job: dict, out_dir: str, max_epochs: int | None = None) -> dict:
    import torch

    from spikeviz.data.catalog import open_recording, session
    from spikeviz.training.loop import TrainOptions, state_path, train_recordings

    torch.set_num_threads(1)
    path = Path(out_dir) / job["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    resume = state_path(path).exists()   # a training cut off earlier continues where it stopped
    t0 = time.time()
    found = [session(s) for s in job["sessions"]]
    recordings = [s.load() for s in found]
    names, domains = [s.name for s in found], [s.domain for s in found]
    if job.get("corpus"):
        for p in sorted(CORPUS.glob("*.csv")):
            recordings.append(open_recording(p))
            names.append(None)   # not a bundled session: named by the checkpoint's "data"
            domains.append("in vivo" if p.stem.startswith("rat") else "in vitro")
    opts = TrainOptions(preset=job["preset"], loss=job["loss"], seed=job["seed"],
                        epochs=min(job["epochs"], max_epochs or job["epochs"]),
                        batch_size=job.get("batch_size"), changes=tuple(job.get("changes", ())))
    meta = train_recordings(recordings, path, opts, seconds=job.get("seconds"),
                            sessions=names, domains=domains,
                            force=True, resume=resume, progress=False, log=False)
    state_path(path).unlink(missing_ok=True)
    return {"file": job["file"], "seconds": round(time.time() - t0, 1), "epochs": meta["epochs"],
            "best_epoch": meta["best_epoch"], "valid": meta["valid"].get("score")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2,
                    help="parallel trainings, each with one CPU thread (and the GPU if there is one)")
    ap.add_argument("--only", help="train only the files matching this regular expression")
    ap.add_argument("--deadline", type=float, help="start no training after this many seconds")
    ap.add_argument("--out", default=str(ROOT / "models"), help="folder (default models/)")
    ap.add_argument("--max-epochs", type=int, help="cap every training's epochs (a smoke test)")
    args = ap.parse_args()
    from spikeviz.training.loop import state_path

    def done(job: dict) -> bool:
        path = Path(args.out) / job["file"]
        return path.exists() and not state_path(path).exists()

    todo = [j for j in jobs() if (not args.only or re.search(args.only, j["file"]))
            and not done(j)]
    if any(j.get("corpus") for j in todo) and not any(CORPUS.glob("*.csv")):
        print(f"no corpus recordings in {CORPUS}: generalist-focal-corpus is skipped", file=sys.stderr)
        todo = [j for j in todo if not j.get("corpus")]
    t0 = time.time()
    log = []
    with dask_client(workers=args.jobs) as client:
        futures = {client.submit(run, j, args.out, args.max_epochs, pure=False): j for j in todo}
        try:
            for fut in as_completed(futures, timeout=args.deadline):
                try:
                    log.append(fut.result())
                    print(json.dumps(log[-1]), flush=True)
                except Exception as exc:   # one failed training must not lose the others
                    print(json.dumps({"file": futures[fut]["file"], "error": repr(exc)}), flush=True)
        except TimeoutError:   # cut off: each keeps its resume state for the next run
            for fut, job in futures.items():
                if not fut.done():
                    fut.cancel()
                    print(json.dumps({"file": job["file"], "error": "deadline"}), flush=True)
    print(f"{len(log)} of {len(todo)} trainings in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
