"""Calibration of a model's logits: Platt scaling after training; on a target recording, shared temperature, per-unit offsets, target rates."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import SpikevizError
from .fused import RATE_CONTROL
from . import fused
from ..models.model import final_traces

# Prior SD (logits) of a unit's offset around the shared bias: a unit needs a few dozen spikes in
# the warm-up before its own offset moves far (in vivo units fire ~1 Hz: ~30 spikes in 30 s).
OFFSET_PRIOR_SD = 0.75
# Pseudo-spikes at the population rate added to each unit's warm-up count for its target rate.
RATE_PRIOR_SPIKES = 2.0
TEMPERATURE_RANGE = (0.25, 4.0)
MAX_CELLS = 2_000_000
# Free running feeds a generalist's own draws back into its traces (spikeviz.models.generalist), and
# from a teacher-forced fit the loop is unstable two ways: the EWMA base enters at the calibrated
# slope (Platt scale / temperature x g0: 2.6-2.9 for the shipped focal generalists) and the
# EWMA's kernel sums to 1, so every generated spike begets more than one (x3 in vitro, x100 in
# vivo within 20 s); and the unit's long causal rate, which normalises every other input, drifts
# with the generated rate (the Dice generalists climb x10 over 20 s). In free mode, therefore:
# the long-rate trace is held at the unit's target (warm-up) rate, the whole logit is tempered
# about its mean on the warm-up until the base's slope is FREE_BASE_GAIN (the mean logit is
# unchanged), and the offsets are fitted closed-loop: free runs over the warm-up, from its real
# past, until they reproduce the warm-up's per-unit counts (fit_free_running). Tempering the
# correction with the base keeps the balance the model learned between them: with the base's
# slope alone clamped, the correction that cancels the base's jump after a spike outweighed it
# and the focal generalist's free runs spiked at most every ~60 ms in vivo (ISI KS 0.31 against
# the real ISIs, Poisson floor 0.10; with the whole logit tempered 0.12).
FREE_BASE_GAIN = 1.0
FREE_FIT = {"iterations": 7, "step": 0.5, "max_step": 0.5, "max_bins": 30_000, "min_bins": 2_000}


@dataclass(frozen=True, eq=False)
class TargetCalibration:
    """logits -> logits / temperature + offsets, fitted on a target recording's warm-up.

    It stacks on the checkpoint's Platt scaling: its input is the logit of
    `model.probabilities(...)` (predict_next(..., logits=True)), not the raw network output.
    `rates` (N,) are the units' shrunk warm-up spike probabilities per bin: the "causal rates" the
    draw rules and the free-running rate controller aim at.
    """

    temperature: float
    offsets: np.ndarray
    rates: np.ndarray | None = None
    # The units' mean input logit on the warm-up: the centre a free run's tempering keeps.
    logit_means: np.ndarray | None = None
    # Free running (fit_free_running): the offsets that reproduce the warm-up's counts when the
    # model feeds on its own draws, the factor a generalist's logit slope is tempered by (None:
    # not tempered) and whether its long-rate trace is held at `rates`.
    free_offsets: np.ndarray | None = None
    free_scale: float | None = None
    anchored: bool = False

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return (np.asarray(logits, np.float32) / np.float32(self.temperature)
                + self.offsets.astype(np.float32))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.apply(logits)))).astype(np.float32)

    def to_dict(self) -> dict:
        out = {"temperature": self.temperature,
               "offsets": [round(float(o), 4) for o in self.offsets]}
        if self.free_offsets is not None:
            out["free_offsets"] = [round(float(o), 4) for o in self.free_offsets]
            out["free_scale"] = self.free_scale
            out["rate_anchored"] = self.anchored
        return out


def identity(n_units: int) -> TargetCalibration:
    """No change: the checkpoint's own calibration."""
    return TargetCalibration(1.0, np.zeros(n_units, np.float32))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _fit_shared(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression y ~ sigmoid(a z + b): maximum likelihood of two parameters by Newton
    steps on standardised logits, halved until the likelihood rises (it is concave)."""
    mu, sd = float(z.mean()), float(z.std()) or 1.0
    zs = (z - mu) / sd
    m = y.mean()

    def nll(ab: np.ndarray) -> float:
        u = ab[0] * zs + ab[1]
        return float(np.logaddexp(0.0, u).sum() - y @ u)

    # From slope 0 at the mean rate, where the Hessian is well conditioned (a start at slope 1
    # saturated every probability when the logits do not predict the spikes, and Newton stalled).
    ab = np.array([0.0, np.log(m / (1 - m))])
    f = nll(ab)
    for _ in range(50):
        p = _sigmoid(ab[0] * zs + ab[1])
        r, w = y - p, p * (1 - p)
        wz = w * zs
        H = np.array([[wz @ zs, wz.sum()], [wz.sum(), w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, [r @ zs, r.sum()])
        for _ in range(30):
            f_new = nll(ab + step)
            if f_new <= f:
                break
            step = step / 2
        else:   # no shorter step improves it: the optimum is as close as float64 resolves
            break
        ab, f = ab + step, f_new
        if np.abs(step).max() < 1e-8:
            break
    return float(ab[0] / sd), float(ab[1] - ab[0] * mu / sd)


def _fit_offsets(base: np.ndarray, counts: np.ndarray, b: float) -> np.ndarray:
    """The MAP offsets b + d_n of logits `base` (T, N) + b + d_n, d_n ~ N(0, OFFSET_PRIOR_SD^2), by
    joint Newton steps on the shared bias and the deviations (the Hessian is an arrow matrix,
    solved through its Schur complement): a few passes over the warm-up where coordinate steps
    took dozens and stopped short."""
    prec = 1.0 / OFFSET_PRIOR_SD ** 2
    d = np.zeros(base.shape[1])
    for _ in range(50):
        p = _sigmoid(base + b + d)
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


def fit_target_calibration(logits: np.ndarray, Y: np.ndarray) -> TargetCalibration:
    """Fit on a target's warm-up: row t of `logits` (T, N) predicts row t of `Y` (T, N).

    A shared temperature and bias come from a pooled logistic regression; each unit's offset is
    the bias plus its own deviation, a MAP estimate under a N(0, OFFSET_PRIOR_SD^2) prior, so a
    unit with few warm-up spikes stays near the shared bias. The warm-up must lie strictly before
    the stretch generated or scored with it. No spikes at all: the checkpoint's calibration.
    """
    z, Y = np.asarray(logits, np.float64), np.asarray(Y)
    if z.shape != Y.shape or z.ndim != 2:
        raise SpikevizError(f"calibration needs logits and spikes of one (T, N) shape, got "
                            f"{z.shape} and {Y.shape}")
    T, N = z.shape
    counts = Y.sum(0, dtype=np.float64)
    if T == 0 or counts.sum() == 0:
        return identity(N)
    zf, yf = z.ravel(), Y.ravel().astype(np.float64)
    if zf.size > MAX_CELLS:   # a fixed subsample keeps it cheap and deterministic
        idx = np.random.default_rng(0).choice(zf.size, MAX_CELLS, replace=False)
        zf, yf = zf[idx], yf[idx]
    a, b = _fit_shared(zf, yf)
    lo, hi = TEMPERATURE_RANGE
    a = float(np.clip(a, 1 / hi, 1 / lo))
    # With the temperature clipped, the bias and each unit's deviation from it are refitted.
    offsets = _fit_offsets(a * z, counts, b)
    pop = counts.sum() / (T * N)
    rates = (counts + RATE_PRIOR_SPIKES) / (T + RATE_PRIOR_SPIKES / pop)
    return TargetCalibration(1.0 / a, offsets.astype(np.float32), rates.astype(np.float32),
                             z.mean(0).astype(np.float32))


def free_affine(model, cal: TargetCalibration, closed_loop: bool = True
                ) -> tuple[float, np.ndarray, dict]:
    """(gain, bias, keyword arguments) of spikeviz.generation.fused.free_run for a free run under `cal`:
    p = sigmoid(gain * raw logit + bias), with the closed-loop offsets, tempered slope and
    long-rate anchor of fit_free_running when it fitted them and `closed_loop` (else the
    teacher-forced map)."""
    scale, shift = model.calibration
    gain = scale / cal.temperature
    if cal.free_offsets is None or not closed_loop:
        return gain, (shift / cal.temperature + cal.offsets).astype(np.float32), {}
    anchor = cal.rates if cal.anchored and cal.rates is not None else None
    return (gain * (cal.free_scale or 1.0),
            (shift / cal.temperature + cal.free_offsets).astype(np.float32), {"anchor": anchor})


def fit_free_running(model, X: np.ndarray, lo: int, hi: int, cal: TargetCalibration,
                     seed: int = 0) -> TargetCalibration:
    """`cal` with offsets for free running, fitted closed-loop on the warm-up X[lo:hi] (its last
    FREE_FIT["max_bins"]): the model runs free over it from its real past X[:lo], and each
    unit's offset moves by a part (FREE_FIT["step"], halved at each overshoot) of the log ratio
    of its real to its generated count, until they agree within counting noise (at most
    FREE_FIT["iterations"] rounds); the round closest to the real counts is kept.

    X[:hi] is all it reads: the warm-up must end before the stretch generated with it (and
    `cal` be fitted on it: fit_target_calibration). A generalist's long-rate trace is held at
    `cal.rates` and its logit tempered first (see FREE_BASE_GAIN). Other models, a calibration
    without the warm-up's logits (identity: a silent warm-up) or a warm-up under
    FREE_FIT["min_bins"]: `cal` unchanged (the per-session `fast` models are stable free under
    their teacher-forced offsets and the rate controller; closed-loop offsets made them no
    better: x1.13 -> x1.52 in vivo, 20 s).
    """
    C = model.config.context
    lo = max(lo, hi - FREE_FIT["max_bins"], C)
    if (model.config.kind != "generalist" or cal.logit_means is None
            or hi - lo < FREE_FIT["min_bins"] or hi > len(X)):
        return cal
    X = np.asarray(X)
    traces = final_traces(X[:lo - C], model.config.trace_taus)
    scale, shift = model.calibration
    gain, bias, _ = free_affine(model, cal, closed_loop=False)
    bias = bias.astype(np.float64)
    out = replace(cal, anchored=cal.rates is not None)
    slope = gain * float(model.guard[0])
    if slope > FREE_BASE_GAIN:
        # Tempered about the warm-up's mean raw logit, which cal.logit_means holds after scaling.
        k = FREE_BASE_GAIN / slope
        bias += (1.0 - k) * gain * (cal.logit_means.astype(np.float64) - shift) / scale
        gain *= k
        out = replace(out, free_scale=k)
    real = X[lo:hi].sum(0, dtype=np.float64)
    best, eta, sign = (np.inf, bias), FREE_FIT["step"], 0.0
    for _ in range(FREE_FIT["iterations"]):
        gen = fused.free_run(model, traces, X[lo - C:lo], hi - lo, gain, bias.astype(np.float32),
                             seed=seed, anchor=out.rates if out.anchored else None
                             )[0].sum(0, dtype=np.float64)
        err = np.log((real + 1.0) / (gen + 1.0))
        if np.abs(err).mean() < best[0]:
            best = (np.abs(err).mean(), bias)
        # Within counting noise (the mean |log ratio| of two independent Poisson counts, by the
        # delta method: var log(n + 1) ~ n / (n + 1)^2), a further round would fit the noise of
        # this seed's draws, not the model.
        noise = np.sqrt(2 / np.pi) * np.sqrt(real / (real + 1) ** 2 + gen / (gen + 1) ** 2).mean()
        if best[0] <= noise:
            break
        # The model's own feedback amplifies an offset's effect by an unknown factor: the step
        # halves whenever the pooled count overshoots.
        pooled = np.sign(np.log((real.sum() + 1.0) / (gen.sum() + 1.0)))
        if sign and pooled != sign:
            eta /= 2
        sign = pooled
        bias = bias + np.clip(eta * err, -FREE_FIT["max_step"], FREE_FIT["max_step"])
    return replace(out, free_offsets=(best[1] - shift / cal.temperature).astype(np.float32))


class RateController:
    """Slow integral control of per-unit logit offsets toward target rates, causal and in place
    (fused.RATE_CONTROL; spikeviz.generation.fused runs the same in its compiled loop).

    Every `every` bins each unit's offset moves by `gain` times the log ratio of its target rate
    to its mean probability over the last ~`tau` bins (an exponential average), within
    `max_shift` of where it started. Slow enough (seconds) to leave spike timing and bursts to
    the model, fast enough to stop a drift of the model's own feedback over minutes.
    """

    def __init__(self, bias: torch.Tensor, rates: np.ndarray, tau: float = RATE_CONTROL["tau"],
                 every: int = RATE_CONTROL["every"], gain: float = RATE_CONTROL["gain"],
                 max_shift: float = RATE_CONTROL["max_shift"]):
        self.bias, self.start = bias, bias.clone()
        self.target = torch.from_numpy(np.log(np.maximum(rates, 1e-6)).astype(np.float32))
        self.mean = torch.from_numpy(np.asarray(rates, np.float32)).clone()
        self.alpha, self.every, self.gain, self.max_shift = 1.0 / tau, every, gain, max_shift
        self.t = 0

    def update(self, p: torch.Tensor) -> None:
        self.mean.lerp_(p, self.alpha)
        self.t += 1
        if self.t % self.every == 0:
            self.bias.add_(self.target - torch.log(self.mean.clamp_min(1e-7)), alpha=self.gain)
            torch.minimum(self.bias, self.start + self.max_shift, out=self.bias)
            torch.maximum(self.bias, self.start - self.max_shift, out=self.bias)


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
