"""The fitted stages of a model's logit map (spikeviz.generation.logits): Platt scaling after training; on a target, shared temperature, per-unit offsets, target rates and the free-run fit."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import SpikevizError
from .fused import RATE_CONTROL
from . import fused
from ..models.logistic import LogisticFit, fit_logistic
from .logits import LogitMap, logits as to_logits
from ..models.model import final_traces

# Prior SD (logits) of a unit's offset around the shared bias: a unit needs a few dozen spikes in
# the warm-up before its own offset moves far (in vivo units fire ~1 Hz: ~30 spikes in 30 s).
OFFSET_PRIOR_SD = 0.75
# Pseudo-spikes at the population rate added to each unit's warm-up count for its target rate.
RATE_PRIOR_SPIKES = 2.0
TEMPERATURE_RANGE = (0.25, 4.0)
# The shared temperature and bias are fitted on at most this many spiking and as many silent
# cells of the warm-up (each class subsampled apart and weighted back): two numbers need no
# more, and a warm-up holds millions of silent cells.
SHARED_FIT_CELLS = 400_000
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
    # Free running (fit_free_running): the map logits -> logits * free_scale / temperature +
    # free_offsets whose draws, fed back to the model, reproduce the warm-up's counts, with
    # free_scale the factor a generalist's logit slope is tempered by (None: not tempered), and
    # whether its long-rate trace is held at `rates`.
    free_offsets: np.ndarray | None = None
    free_scale: float | None = None
    anchored: bool = False

    @property
    def map(self) -> LogitMap:
        """The teacher-forced map."""
        return LogitMap(1.0 / self.temperature, self.offsets.astype(np.float64))

    @property
    def free_map(self) -> LogitMap:
        """The closed-loop map of free runs (the teacher-forced one when not fitted)."""
        if self.free_offsets is None:
            return self.map
        return LogitMap((self.free_scale or 1.0) / self.temperature,
                        self.free_offsets.astype(np.float64))

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return self.map(np.asarray(logits, np.float32)).astype(np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.apply(logits)))).astype(np.float32)

    def recalibrated(self, P: np.ndarray, rows: int = 8192) -> np.ndarray:
        """`probabilities(logits(P))` of a model's probabilities P (T, N), `rows` bins at a time:
        a 300-s window's float64 logits and their map at once held over a GB."""
        out = np.empty(P.shape, np.float32)
        for s in range(0, len(P), rows):
            out[s:s + rows] = self.probabilities(to_logits(P[s:s + rows]))
        return out

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
    yf = Y.ravel().astype(bool)
    n_pos = int(counts.sum())
    q = np.array([min(1.0, SHARED_FIT_CELLS / max(yf.size - n_pos, 1)),
                  min(1.0, SHARED_FIT_CELLS / n_pos)])   # silent, spiking
    # A fixed subsample keeps it cheap and deterministic; weighted back (not offset, as for
    # a model known to be right), so the fit is the whole warm-up's: on bh's a shift of the
    # log-odds moved the temperature from 1.020 to 0.999.
    keep = np.flatnonzero(np.random.default_rng(0).random(yf.size, np.float32) < q[yf.view(np.uint8)])
    lo, hi = TEMPERATURE_RANGE
    shared = fit_logistic(yf[keep], z.ravel()[keep][:, None], weights=1.0 / q[yf[keep].view(np.uint8)])
    a = float(np.clip(shared.coef[0], 1 / hi, 1 / lo))
    # With the temperature clipped, the bias and each unit's deviation from it are refitted
    # (from the shared bias: the steps are fewer, the maximum the same).
    fit = fit_logistic(Y.ravel(), offset=(a * z).ravel(), groups=np.tile(np.arange(N), T),
                       n_groups=N, prior_sd=OFFSET_PRIOR_SD,
                       start=LogisticFit(np.zeros(0), shared.intercept, np.zeros(N)))
    offsets = fit.intercept + fit.deviations
    pop = counts.sum() / (T * N)
    rates = (counts + RATE_PRIOR_SPIKES) / (T + RATE_PRIOR_SPIKES / pop)
    return TargetCalibration(1.0 / a, offsets.astype(np.float32), rates.astype(np.float32),
                             z.mean(0).astype(np.float32))


def free_affine(model, cal: TargetCalibration, closed_loop: bool = True
                ) -> tuple[float, np.ndarray, dict]:
    """(gain, bias, keyword arguments) of spikeviz.generation.fused.free_run for a free run under `cal`:
    p = sigmoid(gain * raw logit + bias), the model's Platt map composed with `cal.free_map`
    (tempered slope, closed-loop offsets) and the long-rate anchor when fit_free_running fitted
    them and `closed_loop`, else with the teacher-forced `cal.map`."""
    closed = closed_loop and cal.free_offsets is not None
    raw = platt(model).then(cal.free_map if closed else cal.map)
    anchor = cal.rates if cal.anchored and cal.rates is not None else None
    return float(raw.scale), raw.shift.astype(np.float32), {"anchor": anchor} if closed else {}


def platt(model) -> LogitMap:
    """A model's Platt scaling (model.calibration): its raw logits -> the logits of
    model.probabilities, which a TargetCalibration maps."""
    scale, shift = model.calibration
    return LogitMap(float(scale), float(shift))


def fit_free_running(model, X: np.ndarray, lo: int, hi: int, cal: TargetCalibration,
                     seed: int = 0, copula=None) -> TargetCalibration:
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
    better: x1.13 -> x1.52 in vivo, 20 s). `copula`: the runs draw as the free run will
    (fused.draw_settings), so the offsets answer for its joint draws too.
    """
    C = model.config.context
    lo = max(lo, hi - FREE_FIT["max_bins"], C)
    if (model.config.kind != "generalist" or cal.logit_means is None
            or hi - lo < FREE_FIT["min_bins"] or hi > len(X)):
        return cal
    X = np.asarray(X)
    traces = final_traces(X[:lo - C], model.config.trace_taus)
    out = replace(cal, anchored=cal.rates is not None)
    tempered = cal.map
    slope = float(platt(model).then(cal.map).scale) * float(model.guard[0])
    if slope > FREE_BASE_GAIN:
        k = FREE_BASE_GAIN / slope
        centre = cal.map(cal.logit_means.astype(np.float64))   # the warm-up's mean logit
        tempered = cal.map.then(LogitMap.tempering(k, centre))
        out = replace(out, free_scale=k)
    real = X[lo:hi].sum(0, dtype=np.float64)
    shift = np.zeros(X.shape[1])   # the closed-loop shift on top of the tempered map
    best, eta, sign = (np.inf, shift), FREE_FIT["step"], 0.0
    for _ in range(FREE_FIT["iterations"]):
        raw = platt(model).then(tempered).then(LogitMap(1.0, shift))
        gen = fused.free_run(model, traces, X[lo - C:lo], hi - lo, float(raw.scale),
                             raw.shift.astype(np.float32), seed=seed,
                             anchor=out.rates if out.anchored else None, copula=copula
                             )[0].sum(0, dtype=np.float64)
        err = np.log((real + 1.0) / (gen + 1.0))
        if np.abs(err).mean() < best[0]:
            best = (np.abs(err).mean(), shift)
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
        shift = shift + np.clip(eta * err, -FREE_FIT["max_step"], FREE_FIT["max_step"])
    free = tempered.then(LogitMap(1.0, best[1]))
    return replace(out, free_offsets=free.shift.astype(np.float32))


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


def fit_platt(P: np.ndarray, Y: np.ndarray, max_cells: int = 2_000_000) -> LogitMap:
    """Platt scaling p -> sigmoid(scale * logit(p) + shift), fitted by logistic regression (the
    identity when Y has a single value or the fitted slope is not positive)."""
    p, y = P.ravel(), Y.ravel()
    if p.size > max_cells:   # a fixed subsample keeps it cheap and deterministic
        idx = np.random.default_rng(0).choice(p.size, max_cells, replace=False)
        p, y = p[idx], y[idx]
    if y.min() == y.max():
        return LogitMap()
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    fit = fit_logistic(y, np.log(p / (1 - p))[:, None])
    return LogitMap(float(fit.coef[0]), fit.intercept) if fit.coef[0] > 0 else LogitMap()
