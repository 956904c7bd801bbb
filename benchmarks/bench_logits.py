"""Benchmark: the one logistic solver (spikeviz.models.logistic.fit_logistic) against the code it
replaced, on the three fits it does: Platt scaling (fit_platt), a generalist's guard (fit_guard)
and the target calibration (fit_target_calibration: a shared temperature, then per-unit offsets).

The OLD solvers are copied below from commit a2fcb87 as the baseline: Platt and the guard by
scikit-learn, the calibration by its own Newton loops (_fit_shared, _fit_offsets). Old and new
run on the same inputs in one process, interleaved, best of --repeats.

Inputs: --source synthetic (default; sizes of the real warm-up: 2,000,000 cells for Platt and the
shared fit, 30,000 x 128 for the offsets, 400,000 x 2 for the guard) or --source real: the inputs
the pipeline hands these fits on the warm-up of --session with --model (generate_recording,
1 s), caught on their way in; Platt runs on that calibration's probabilities and spikes.

Prints one line per fit (best wall s old and new, new/old, best process CPU s: the BLAS
calls may use more than one thread; max |parameter difference|), then one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from spikeviz.generation import adapt as adapt_mod
from spikeviz.generation.adapt import fit_guard
from spikeviz.generation.calibration import (OFFSET_PRIOR_SD, TEMPERATURE_RANGE, fit_platt,
                                             fit_target_calibration)

MAX_CELLS = 2_000_000   # a2fcb87's subsample of the shared fit (now SHARED_FIT_CELLS a class)


# ----- OLD (commit a2fcb87), the baseline: copied unchanged but for names ------------------------

def _old_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def old_fit_shared(z, y):
    mu, sd = float(z.mean()), float(z.std()) or 1.0
    zs = (z - mu) / sd
    m = y.mean()

    def nll(ab):
        u = ab[0] * zs + ab[1]
        return float(np.logaddexp(0.0, u).sum() - y @ u)

    ab = np.array([0.0, np.log(m / (1 - m))])
    f = nll(ab)
    for _ in range(50):
        p = _old_sigmoid(ab[0] * zs + ab[1])
        r, w = y - p, p * (1 - p)
        wz = w * zs
        H = np.array([[wz @ zs, wz.sum()], [wz.sum(), w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, [r @ zs, r.sum()])
        for _ in range(30):
            f_new = nll(ab + step)
            if f_new <= f:
                break
            step = step / 2
        else:
            break
        ab, f = ab + step, f_new
        if np.abs(step).max() < 1e-8:
            break
    return float(ab[0] / sd), float(ab[1] - ab[0] * mu / sd)


def old_fit_offsets(base, counts, b):
    prec = 1.0 / OFFSET_PRIOR_SD ** 2
    d = np.zeros(base.shape[1])
    for _ in range(50):
        p = _old_sigmoid(base + b + d)
        w = (p * (1 - p)).sum(0)
        g_b, g = counts.sum() - p.sum(), counts - p.sum(0) - prec * d
        h = w + prec
        db = (g_b - (w * g / h).sum()) / max((w * prec / h).sum(), 1e-12)
        dd = np.clip((g - w * db) / h, -2, 2)
        db = float(np.clip(db, -2, 2))
        b, d = b + db, d + dd
        if max(abs(db), np.abs(dd).max()) < 1e-6:
            break
    return b + d


def old_target_calibration(logits, Y):
    """fit_target_calibration of a2fcb87, its (temperature, offsets) only."""
    z = np.asarray(logits, np.float64)
    counts = Y.sum(0, dtype=np.float64)
    zf, yf = z.ravel(), Y.ravel().astype(np.float64)
    if zf.size > MAX_CELLS:
        idx = np.random.default_rng(0).choice(zf.size, MAX_CELLS, replace=False)
        zf, yf = zf[idx], yf[idx]
    a, b = old_fit_shared(zf, yf)
    lo, hi = TEMPERATURE_RANGE
    a = float(np.clip(a, 1 / hi, 1 / lo))
    return 1.0 / a, old_fit_offsets(a * z, counts, b)


def old_platt(P, Y, max_cells=2_000_000):
    from sklearn.linear_model import LogisticRegression

    p, y = P.ravel(), Y.ravel()
    if p.size > max_cells:
        idx = np.random.default_rng(0).choice(p.size, max_cells, replace=False)
        p, y = p[idx], y[idx]
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    fit = LogisticRegression(C=1e6).fit(np.log(p / (1 - p))[:, None], y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def old_guard(base, corr, Y, max_cells=400_000, seed=0):
    from sklearn.linear_model import LogisticRegression

    b, c, y = base.ravel(), corr.ravel(), Y.ravel().astype(bool)
    n_pos = int(y.sum())
    q_neg = min(1.0, max(1, max_cells - n_pos) / (y.size - n_pos))
    keep = y | (np.random.default_rng(seed).random(y.size) < q_neg)
    F_ = np.stack((b[keep], c[keep]), axis=1).astype(np.float64)
    fit = LogisticRegression(C=1e4, max_iter=500).fit(F_, y[keep])
    g0, g1 = (float(v) for v in fit.coef_[0])
    return g0, g1, float(fit.intercept_[0] + np.log(q_neg))


# ----- inputs -------------------------------------------------------------------------------------

def synthetic(seed: int) -> dict:
    """Warm-up-like inputs: miscalibrated logits (the spikes follow 0.8 z + unit offsets),
    units whose rates span two decades, a few nearly silent."""
    rng = np.random.default_rng(seed)
    T, N = 30_000, 128
    unit = rng.normal(-1.0, 1.0, N)
    unit[:4] = -6.0
    z = rng.normal(-4.0, 1.3, (T, N)) + unit
    Y = (rng.random((T, N)) < 1 / (1 + np.exp(-(0.8 * z + 0.5 + rng.normal(0, 0.4, N))))
         ).astype(np.uint8)
    n = 400_000 * 8   # the guard's cells before its subsample (every spike, 400,000 in all)
    base = rng.normal(-4.0, 1.5, n)
    corr = rng.normal(0.0, 0.7, n) + 0.3 * base
    Yg = (rng.random(n) < 1 / (1 + np.exp(-(1.3 * base + 0.7 * corr + 0.4)))).astype(np.uint8)
    zp = z.ravel()[:2_000_000]
    return {"calibration": (z, Y), "guard": (base, corr, Yg),
            "platt": (1 / (1 + np.exp(-zp)), Y.ravel()[:2_000_000])}


def real(session: str, model_path: str) -> dict:
    """The inputs the pipeline hands fit_guard and fit_target_calibration on a real warm-up."""
    from spikeviz.data.catalog import load_session
    from spikeviz.evaluation import pipeline
    from spikeviz.models.checkpoint import load_model

    caught = {}

    def catch(name, fn):
        def wrapped(*args, **kw):
            caught[name] = args
            return fn(*args, **kw)
        return wrapped

    adapt_mod.fit_guard = catch("guard", fit_guard)
    pipeline.fit_target_calibration = catch("calibration", fit_target_calibration)
    try:
        pipeline.generate_recording(load_model(model_path), load_session(session), seconds=1.0)
    finally:
        adapt_mod.fit_guard = fit_guard
        pipeline.fit_target_calibration = fit_target_calibration
    z, Y = caught["calibration"]
    (base, corr), Yg = caught["guard"][:2]
    return {"calibration": (z, Y), "guard": (base, corr, Yg),
            "platt": (1 / (1 + np.exp(-np.asarray(z, np.float64))), Y)}


# ----- old against new ----------------------------------------------------------------------------

FITS = {
    "platt": (old_platt, lambda P, Y: (lambda m: (float(m.scale), float(m.shift)))(fit_platt(P, Y))),
    "guard": (old_guard, lambda base, corr, Y: fit_guard((base, corr), Y)),
    "calibration": (old_target_calibration,
                    lambda z, Y: (lambda c: (c.temperature, c.offsets.astype(np.float64)))(
                        fit_target_calibration(z, Y))),
}


def flat(params) -> np.ndarray:
    return np.concatenate([np.atleast_1d(np.asarray(p, np.float64)) for p in params])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--session", default="invitro_210511001_bh")
    parser.add_argument("--model", default="models/generalist-focal.safetensors")
    parser.add_argument("--fits", default="platt,guard,calibration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    inputs = synthetic(args.seed) if args.source == "synthetic" else real(args.session, args.model)
    out = {"source": args.source}
    for name in args.fits.split(","):
        old, new = FITS[name]
        best = {"old": np.inf, "new": np.inf}
        cpu = {"old": np.inf, "new": np.inf}
        result = {}
        for _ in range(args.repeats):   # interleaved: the machine's load hits both alike
            for label, fn in (("old", old), ("new", new)):
                t0, c0 = time.perf_counter(), time.process_time()
                result[label] = fn(*inputs[name])
                best[label] = min(best[label], time.perf_counter() - t0)
                cpu[label] = min(cpu[label], time.process_time() - c0)
        diff = float(np.abs(flat(result["old"]) - flat(result["new"])).max())
        ratio = best["new"] / best["old"]
        print(f"{name:12s} old {best['old']:6.3f} s  new {best['new']:6.3f} s  new/old {ratio:5.2f}"
              f"  (cpu old {cpu['old']:6.3f} s  new {cpu['new']:6.3f} s)  max |param diff| {diff:.2e}",
              flush=True)
        out[name] = {"old_s": round(best["old"], 3), "new_s": round(best["new"], 3),
                     "old_cpu_s": round(cpu["old"], 3), "new_cpu_s": round(cpu["new"], 3),
                     "new_over_old": round(ratio, 3), "max_abs_param_diff": float(f"{diff:.3g}")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
