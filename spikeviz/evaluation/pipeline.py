"""The one pipeline that `spikeviz generate` and the page share: a window of a target, a predictor's calibrated predictions on it, the trains they generate, their provenance and fidelity.

setup (units, order, warm-up; stretch.setup) -> adapt (a generalist's guard on the warm-up)
-> predict (probabilities over the warm-up and window; strict scores) -> calibrate (on the
warm-up after priming; with the copula that draws a bin's units jointly) -> draw
(teacher-forced) or run free (closed-loop calibration) -> trains with their provenance ->
fidelity against the real window (ceiling: the real stretch before it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .._version import __version__
from ..data.binning import bin_range, n_bins_of, split_bounds
from ..data.recording import Recording
from ..errors import SpikevizError
from ..generation.calibration import TargetCalibration, fit_free_running, fit_target_calibration
from ..generation.copula import PopulationCopula, fit_copula
from ..generation.logits import logits
from ..generation.predict import DRAW_RULES, ModelPredictor, draw_spikes, generate
from ..measures.scoring import FPR_CAP, Scored, score_stretch
from ..measures.stats import fidelity_report
from .evaluate import blends, fit_baseline, target_predictor
from .stretch import GLM_FIT_BINS, N_UNITS, WARMUP_S, Setup, Stretch, setup

THRESHOLD_RULES = {"youden": "Youden", "max-f1": "max F1", "density": "density"}
# Models fitted on the recording's own train split that generate trains (joint draws, free runs
# that cannot run away): spikeviz.models.states.
FITTED_GENERATORS = ("states",)
# What a generalist's teacher-forced predictions are blended with (generation.blend.GLMBlend).
GLM_BLEND = ("glm-coupled fitted on the recording's train split; logit = a z_model + b z_own + "
             "d z_partners + c fitted on the warm-up (z_partners: what the GLM's coupled partners "
             "contribute to its logit, z_own the rest)")
# How teacher-forced Bernoulli trains draw a bin's units (generation.copula).
JOINT_DRAWS = ("a dichotomized Gaussian with shared AR(1) factors and a dead time, fitted on the "
               "warm-up: the units of a bin drawn jointly, each at its rate")


@dataclass(frozen=True, eq=False)
class Prediction:
    """One predictor's window probabilities, strict scores and warm-up calibration."""

    P: np.ndarray             # (T, N) rows scored against Stretch.targets; (0, N) if not kept
    scored: Scored
    calibration: TargetCalibration | None = None   # fitted on the warm-up (the generator's)
    copula: PopulationCopula | None = None   # joint Bernoulli draws, fitted on the warm-up too

    @property
    def nbytes(self) -> int:
        return self.P.nbytes

    def threshold(self, rule: str) -> float:
        """A pooled threshold rule's threshold, tuned on the warm-up (never a scored bin)."""
        if rule not in THRESHOLD_RULES:
            raise SpikevizError(f"unknown threshold rule {rule!r}: use one of "
                                f"{', '.join(THRESHOLD_RULES)}")
        return float(self.scored.calibration.threshold(rule, FPR_CAP))


def _now(make: Callable[[], Any]) -> Any:
    return make()


def predict(make: Callable[[], object], stretch: Stretch, keep_P: bool = True, *,
            joint: bool = True, memo_P: Callable = _now, memo_calibration: Callable = _now,
            memo_copula: Callable = _now) -> Prediction:
    """Scores of the predictor `make()` returns on the stretch, as `spikeviz evaluate` scores
    them; with `keep_P`, its window probabilities, the target calibration fitted on the warm-up
    after priming (what teacher-forced draws and free runs start from) and, with `joint`, the
    copula that draws a teacher-forced bin's units jointly, fitted on the calibrated warm-up
    (a fitted population model draws its own: none). `memo_P`,
    `memo_calibration` and `memo_copula` take the computation and may return a stored result
    instead (the page's disk cache)."""
    P = memo_P(lambda: make().predict(stretch.X))
    scored = score_stretch(P, stretch.X, stretch.warm, "strict", stretch.prime)
    if not keep_P:
        return Prediction(np.empty((0, P.shape[1]), np.float32), replace(scored, units=None))
    a, w = stretch.prime, stretch.warm
    calibration = memo_calibration(
        lambda: fit_target_calibration(logits(P[a - 1:w - 1]), stretch.X[a:w]))
    copula = memo_copula(lambda: fit_copula(calibration.recalibrated(P[a - 1:w - 1]),
                                            stretch.X[a:w], stretch.bin_ms)) if joint else None
    # A copy, so the full predictions (warm-up included) are freed.
    return Prediction(stretch.window_of(P).copy(), scored, calibration, copula)


def joint_copula(prediction: Prediction, mode: str, draw: str,
                 joint: bool = True) -> PopulationCopula | None:
    """The copula that draws a bin's units jointly in teacher_trains, or None where they are
    drawn independently: free runs, threshold rules, `joint` off, or a copula that found no
    shared variability on the warm-up."""
    cop = prediction.copula
    return cop if joint and mode == "teacher" and draw == "bernoulli" and cop is not None \
        and not cop.independent else None


def teacher_trains(prediction: Prediction, draw: str = "bernoulli", level: float | None = None,
                   seed: int = 0, joint: bool = True) -> np.ndarray:
    """Teacher-forced spikes (T, N) uint8 aligned with the window's targets. pooled: P >= the
    operating point's edge at `level` (exactly the cells it counts as predicted spikes); other
    rules draw from the calibrated probabilities (Bernoulli seeded, a bin's units drawn jointly
    by the prediction's copula, `joint_copula`, each unit still at its rate;
    unit-density and lift at `level`)."""
    if draw == "pooled":
        if level is None:
            raise SpikevizError("the pooled rule needs a threshold")
        edge = prediction.scored.hists["strict"].operating_point(level).threshold
        return (prediction.P >= np.float32(edge)).astype(np.uint8)
    cal = prediction.calibration
    P = cal.recalibrated(prediction.P)
    copula = joint_copula(prediction, "teacher", draw, joint)
    if copula is not None:
        return copula.draw(P, seed)
    return draw_spikes(P, draw, level, seed=seed, unit_rates=cal.rates)


def free_start(model, stretch: Stretch,
               joint: bool = True) -> tuple[TargetCalibration, PopulationCopula | None]:
    """The target calibration a free run of `model` starts from and, with `joint`, the copula
    its Bernoulli draws take a bin's units with: fitted, as `predict` fits them, on the model's
    own predictions over the warm-up (never a blend's: the GLM a generalist is scored with has
    no part in a free run)."""
    a, w = stretch.prime, stretch.warm
    P = ModelPredictor(model).predict(stretch.X[:w])
    cal = fit_target_calibration(logits(P[a - 1:w - 1]), stretch.X[a:w])
    copula = fit_copula(cal.recalibrated(P[a - 1:w - 1]), stretch.X[a:w],
                        stretch.bin_ms) if joint else None
    return cal, None if copula is None or copula.independent else copula


def free_trains(model, stretch: Stretch, n_bins: int, seed: int = 0, draw: str = "bernoulli",
                level: float | None = None, joint: bool = True,
                start: tuple[TargetCalibration, PopulationCopula | None] | None = None
                ) -> tuple[np.ndarray, TargetCalibration, PopulationCopula | None]:
    """Free-running spikes (n_bins, N) from the real past up to the first target bin, the
    model's own draws fed back, the calibration they start from and the copula that drew a
    bin's units jointly (`free_start`; Bernoulli draws only; the offsets are then refitted
    closed-loop on the same warm-up, under the copula). `start`: free_start's result for
    `joint` when the caller keeps it (it depends on neither the seed nor the length)."""
    past = stretch.X[:stretch.warm + 1]
    joint = joint and draw == "bernoulli"
    start, copula = start if start is not None else free_start(model, stretch, joint)
    copula = copula if joint else None
    cal = fit_free_running(model, past, stretch.prime, len(past), start, seed=seed, copula=copula)
    return generate(model, past, mode="free", seed=seed, n_bins=n_bins, calibration=cal,
                    draw=draw, threshold=level, copula=copula), start, copula


def reference_before(recording: Recording, stretch: Stretch) -> np.ndarray | None:
    """The real stretch as long as the window just before it (same units and order): the
    fidelity ceiling; None when the recording starts too soon."""
    a, b = stretch.bins
    n = b - a - 1
    return bin_range(recording, list(stretch.unit_ids), stretch.bin_ms, a - n, a) \
        if a - n >= 0 else None


def provenance(*, recording: Recording, stretch: Stretch, mode: str, draw: str,
               level: float | None, seed: int, calibration: TargetCalibration | None = None,
               checkpoint: str = "", generator: str = "", rule: str | None = None,
               blended: bool = False, copula: PopulationCopula | None = None) -> dict[str, Any]:
    """What made a set of generated trains: `source["generated_by"]` of their Recording.
    `blended`: drawn from a generalist blended with the target's GLM (evaluate.target_predictor);
    `copula`: a bin's units drawn jointly by it (teacher_trains)."""
    step = stretch.bin_ms / 1000.0
    first = stretch.bins[0] - stretch.warm   # the recording's bin of the stretch's row 0
    fitted = None if calibration is None else {
        "fitted_on_s": [round((first + stretch.prime) * step, 6),
                        round((first + stretch.warm) * step, 6)],
        "temperature": calibration.temperature,
        "median_offset": float(np.median(calibration.offsets))}
    return {"checkpoint": checkpoint, "generator": generator,
            "blended_with": GLM_BLEND if blended else None, "mode": mode, "draw": draw,
            "joint_draws": None if copula is None else {"how": JOINT_DRAWS} | copula.to_dict(),
            "threshold": level if draw == "pooled" and mode == "teacher" else None,
            "draw_level": level if draw in ("unit-density", "lift") else None,
            "threshold_rule": rule, "seed": seed, "calibration": fitted, "data": recording.name,
            "data_path": recording.source.get("path"), "start_s": stretch.start_s,
            "bin_ms": stretch.bin_ms, "units": len(stretch.unit_ids),
            "unit_order": stretch.unit_order, "spikeviz_version": __version__}


def as_recording(bins: np.ndarray, recording: Recording, stretch: Stretch,
                 generated_by: dict) -> Recording:
    """Generated spikes (n, N) as a Recording, times from the window's first bin; units named as
    the stretch's columns."""
    bin_s = stretch.bin_ms / 1000.0
    trains = tuple(np.flatnonzero(bins[:, j]) * bin_s for j in range(bins.shape[1]))
    return Recording(f"{recording.name}-{generated_by['mode']}", np.asarray(stretch.unit_ids),
                     trains, len(bins) * bin_s,
                     {"format": "generated", "generated_by": generated_by})


def fidelity(stretch: Stretch, generated: np.ndarray, reference: np.ndarray | None,
             seed: int = 0) -> dict:
    """stats.fidelity_report of generated trains against the real window's bins they cover;
    the ceiling is `reference` (reference_before), the floor rate-matched Poisson."""
    n = len(generated)
    real = stretch.targets[:n]
    return fidelity_report(real, generated, None if reference is None else reference[:n],
                           bin_ms=stretch.bin_ms, seed=seed)


@dataclass(frozen=True, eq=False)
class Generated:
    """Trains from `generate_window`: the Recording to write, with the window they cover."""

    recording: Recording
    bins: np.ndarray
    setup: Setup
    prediction: Prediction


def generated_fidelity(generated: Generated, recording: Recording, seed: int = 0) -> dict:
    """`fidelity` of generate_window's trains against `recording`'s real window."""
    st = generated.setup.model_stretch
    reference = reference_before(recording, st)
    out = fidelity(st, generated.bins, reference, seed)
    out["ceiling_stretch_s"] = None if reference is None else \
        [round(st.start_s - st.duration_s, 6), st.start_s]
    return out


def start_of_test_split(recording: Recording, bin_ms: float) -> float:
    """The start of the recording's test split (s): generation there has a real past and is
    not fed data the model trained on."""
    return split_bounds(n_bins_of(recording.duration_s, bin_ms))["test"][0] * bin_ms / 1000.0


def generate_window(model, recording: Recording, window_s: tuple[float, float], *,
                    mode: str = "teacher", draw: str = "bernoulli", level: float | None = None,
                    rule: str | None = None, seed: int = 0, n_units: int = N_UNITS,
                    unit_order: str = "auto", warmup_s: float = WARMUP_S,
                    checkpoint: str = "", glm: bool = True, joint: bool = True) -> Generated:
    """Trains a model generates over the window [start, stop) s of `recording`: the units and
    order of `evaluate`, teacher-forced draws (`draw`, DRAW_RULES, at `level`; `rule` tunes a
    pooled threshold on the warm-up) from the model as `evaluate` scores it (with `glm`, a
    generalist blended with the target's coupled GLM: evaluate.target_predictor), or a free run
    of the model alone over the whole window. Teacher-forced Bernoulli draws take a bin's units
    jointly (`joint`, teacher_trains) unless no shared variability was found on the warm-up.
    The `warmup_s` seconds before the window prime the history and calibrate (stretch.setup)."""
    if draw not in DRAW_RULES:
        raise SpikevizError(f"unknown draw rule {draw!r}: use one of {', '.join(DRAW_RULES)}")
    if mode not in ("teacher", "free"):
        raise SpikevizError(f"unknown generation mode {mode!r}: use 'teacher' or 'free'")
    su = setup(model, recording, window_s=tuple(window_s), n_units=n_units, unit_order=unit_order,
               warmup_s=warmup_s)
    st = su.model_stretch
    predictor = target_predictor(model, su, glm=glm)
    prediction = predict(lambda: predictor, st)
    if rule is not None:
        level = prediction.threshold(rule)
    calibration = prediction.calibration
    if mode == "free":
        bins, calibration, copula = free_trains(predictor.model, st, len(st.targets), seed, draw,
                                                level, joint)
    else:
        bins = teacher_trains(prediction, draw, level, seed, joint)
        copula = joint_copula(prediction, mode, draw, joint)
    made = provenance(recording=recording, stretch=st, mode=mode, draw=draw, level=level,
                      seed=seed, calibration=calibration,
                      blended=blends(model, glm) and mode == "teacher", copula=copula,
                      checkpoint=str(model.meta.get("path", "")), rule=rule,
                      generator=checkpoint or str(model.meta.get("path", "")))
    return Generated(as_recording(bins, recording, st, made), bins, su, prediction)


def fitted_generator(name: str, recording: Recording, bin_ms: float, fitted=None) -> str:
    """How the trains of a model fitted on `recording` name their generator: the model and the
    bins (s) it was fitted on (Source.train: the last GLM_FIT_BINS of the train split), and what
    `fitted` adapted on the window's warm-up (the population states' chain)."""
    a, b = split_bounds(n_bins_of(recording.duration_s, bin_ms))["train"]
    a = max(a, b - GLM_FIT_BINS)
    made = f"{name} fitted on [{a * bin_ms / 1000.0:g}, {b * bin_ms / 1000.0:g}) s of {recording.name}"
    warm = getattr(fitted, "warmup_", None)
    if warm and warm["kept"]:
        made += (f", its state chain re-estimated on the warm-up before the window (the "
                 f"warm-up's share {warm['share']:g})")
    return made


def fitted_trains(fitted, stretch: Stretch, mode: str, n_bins: int, seed: int = 0) -> np.ndarray:
    """Trains a fitted population model draws itself (its Bernoulli rule), aligned with the
    stretch's targets: teacher-forced (`sample`: each bin's units jointly, given the real past)
    or `n_bins` of a free run from the real past (`simulate`)."""
    if mode == "free":
        return fitted.simulate(stretch.X[:stretch.warm + 1], n_bins, seed=seed)
    return stretch.window_of(fitted.sample(stretch.X, seed=seed))


def generate_fitted(name: str, recording: Recording, window_s: tuple[float, float], *,
                    mode: str = "teacher", draw: str = "bernoulli", level: float | None = None,
                    rule: str | None = None, seed: int = 0, n_units: int = N_UNITS,
                    warmup_s: float = WARMUP_S) -> Generated:
    """Trains over the window [start, stop) s of a population model (FITTED_GENERATORS) fitted
    on the recording's own train split: the units and stretch `generate_window` takes without a
    checkpoint. Bernoulli draws are the model's own (`fitted_trains`); the threshold rules draw
    teacher-forced from its calibrated probabilities, as `generate_window` does."""
    if name not in FITTED_GENERATORS:
        raise SpikevizError(f"unknown fitted generator {name!r}: use one of "
                            f"{', '.join(FITTED_GENERATORS)}")
    if mode not in ("teacher", "free"):
        raise SpikevizError(f"unknown generation mode {mode!r}: use 'teacher' or 'free'")
    if draw not in DRAW_RULES:
        raise SpikevizError(f"unknown draw rule {draw!r}: use one of {', '.join(DRAW_RULES)}")
    if mode == "free" and draw != "bernoulli":
        raise SpikevizError(f"a free run of {name} draws with its own Bernoulli rule, not {draw!r}")
    su = setup(None, recording, window_s=tuple(window_s), n_units=n_units, warmup_s=warmup_s)
    st = su.model_stretch
    fitted = fit_baseline(name, su)   # as the page and `evaluate` fit it, warm-up included
    prediction = predict(lambda: fitted, st, joint=False)
    if rule is not None:
        level = prediction.threshold(rule)
    bins = (fitted_trains(fitted, st, mode, len(st.targets), seed) if draw == "bernoulli"
            else teacher_trains(prediction, draw, level, seed))
    calibration = None if draw == "bernoulli" else prediction.calibration
    made = provenance(recording=recording, stretch=st, mode=mode, draw=draw, level=level,
                      seed=seed, rule=rule, calibration=calibration,
                      generator=fitted_generator(name, recording, st.bin_ms, fitted))
    return Generated(as_recording(bins, recording, st, made), bins, su, prediction)


def generate_recording(model, recording: Recording, mode: str = "teacher", seconds: float = 10.0,
                       start_s: float | None = None, threshold: float | None = None,
                       preset: str | None = None, seed: int = 0, *, draw: str | None = None,
                       n_units: int = N_UNITS, warmup_s: float = WARMUP_S) -> Recording:
    """generate_window over [start_s, start_s + seconds) (default: from the start of the test
    split) as a Recording: Bernoulli sampling (seeded) unless `draw` names another rule or
    a `threshold` / threshold rule `preset` asks for the pooled one."""
    draw = draw or ("pooled" if threshold is not None or preset else "bernoulli")
    if start_s is None:
        start_s = start_of_test_split(recording, float(model.meta.get("bin_ms", 1.0)))
    return generate_window(model, recording, (start_s, start_s + seconds), mode=mode, draw=draw,
                           level=threshold, rule=preset, seed=seed, n_units=n_units,
                           warmup_s=warmup_s).recording
