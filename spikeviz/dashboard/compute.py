"""Dashboard data without Panel: the evaluated stretch and its cached predictions and statistics."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable

import numpy as np

from ..data.recording import Recording
from ..data.store import Cache, content_key
from ..errors import SpikevizError
from ..evaluation.evaluate import blend_glm, blends, fit_baseline, for_target
from ..evaluation.stretch import N_UNITS, Setup, Stretch, checkpoint_source, setup
from ..evaluation.pipeline import (FITTED_GENERATORS, THRESHOLD_RULES, Prediction,
                                   fitted_trains, free_start, free_trains, predict,
                                   reference_before)
from ..generation.calibration import TargetCalibration
from ..generation.copula import PopulationCopula
from ..generation.predict import ModelPredictor
from ..measures.metrics import ScoreHistogram, UnitHistograms
from ..models.logistic import sigmoid
from ..measures.stats import FiringStats, fidelity_references, firing_stats
from .cache import SHARED_CACHE, LRUCache
from .sources import within_roots
from .window import default_window

BIN_MS = 1.0
UNIT_ORDERS = ("auto", "recorded", "random", "rate-rank")
# The baselines beside the generator: what `spikeviz evaluate` fits on the target's own train
# split, from the simplest to the strongest. Without a checkpoint the strongest generates.
BASELINES = ("rate", "ewma-tuned", "glm-coupled")
BASELINE_GENERATOR = BASELINES[-1]


def _predict_stored(make: Callable[[], object], stretch: Stretch, keep_P: bool,
                    disk_key: str | None, joint: bool = True) -> Prediction:
    """pipeline.predict, with the probabilities and calibration read from the on-disk cache
    under `disk_key` (checksummed), or computed and stored there; None: computed."""
    if disk_key is None:
        return predict(make, stretch, keep_P, joint=joint)
    return predict(make, stretch, keep_P, joint=joint,
                   memo_P=lambda f: np.asarray(Cache(memo=True).array(disk_key, "P.npy", f)),
                   memo_calibration=lambda f: _stored_calibration(disk_key, f),
                   memo_copula=lambda f: _stored_copula(disk_key, f))


def _stored_calibration(disk_key: str, fit: Callable[[], TargetCalibration]) -> TargetCalibration:
    """The target calibration stored beside the predictions it was fitted on, fitted and stored
    first if missing or stored by an older version (its JSON holds every float exactly)."""
    store = Cache(memo=True)
    saved = store.get_json(disk_key, "calibration.json")
    if saved is not None and "logit_means" in saved:
        arrays = {k: None if saved[k] is None else np.asarray(saved[k], np.float32)
                  for k in ("offsets", "rates", "logit_means")}
        return TargetCalibration(saved["temperature"], **arrays)
    cal = fit()
    store.put_json(disk_key, {"temperature": cal.temperature} | {
        k: None if getattr(cal, k) is None else getattr(cal, k).tolist()
        for k in ("offsets", "rates", "logit_means")}, "calibration.json")
    return cal


def _stored_copula(disk_key: str, fit: Callable[[], PopulationCopula]) -> PopulationCopula:
    """The copula stored beside the predictions it was fitted on, fitted and stored first if
    missing (JSON holds its float32 loadings exactly)."""
    store = Cache(memo=True)
    saved = store.get_json(disk_key, "copula.json")
    if saved is not None and "gains" in saved:
        return PopulationCopula(np.asarray(saved["loadings"], np.float32).reshape(saved["shape"]),
                                saved["tau_ms"], saved["bin_ms"], saved["dead_bins"],
                                None if saved["gains"] is None else np.asarray(saved["gains"], np.float32),
                                saved["fit"])
    cop = fit()
    store.put_json(disk_key, {"loadings": cop.loadings.ravel().tolist(), "shape": cop.loadings.shape,
                              "tau_ms": cop.tau_ms, "bin_ms": cop.bin_ms,
                              "dead_bins": cop.dead_bins, "fit": cop.fit,
                              "gains": None if cop.gains is None else cop.gains.tolist()},
                   "copula.json")
    return cop


class _LastPrediction:
    """The coupled GLM `fit()` returns, fitted at its first prediction (a page whose predictions
    are all on disk never fits it), keeping the logits of its last `logit_parts` (a
    generalist's blend) for the baseline's row, which `predict`s the same spikes next: one
    computation for both (in the blend's column order, which the row un-permutes)."""

    def __init__(self, fit: Callable[[], object]):
        self.fit = fit
        # ((spikes' digest, column order or None), z) of the last computation
        self._last: tuple[tuple, np.ndarray] | None = None

    @staticmethod
    def _digest(X: np.ndarray) -> tuple:
        return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(), X.shape, X.dtype.str

    def logit_parts(self, X: np.ndarray, columns: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        z, z_partners = self.fit().logit_parts(X, columns)
        # z alone is kept (the row's probabilities): the partners' part is the blend's.
        self._last = ((self._digest(X), None if columns is None else [int(c) for c in columns]), z)
        return z, z_partners

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The GLM's probabilities of X, made in place from the kept logits, which it takes (the
        page's peak held them twice, with the partners' part, at 0.8 GB)."""
        last, self._last = self._last, None
        if last is None or last[0][0] != self._digest(X):
            last = ((None, None), self.fit().logit_parts(X)[0])
        (_, columns), z = last
        del last
        if columns is not None:
            P = np.empty(z.shape, np.float32)
            P[:, columns] = z
            z = P
        return sigmoid(z, out=z)

    def release(self) -> None:
        self._last = None


@dataclass(frozen=True)
class Generator:
    """What makes the generated trains: a checkpoint (path) or, without one, a baseline or a
    population model fitted on the recording (FITTED_GENERATORS) by name."""

    name: str
    path: Path | None = None

    @property
    def is_model(self) -> bool:
        return self.path is not None

    @property
    def is_fitted(self) -> bool:
        """A population model fitted on the recording: it draws its own trains, free runs too."""
        return self.path is None and self.name in FITTED_GENERATORS


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything the threshold does not change: stretch, predictions, each threshold rule's threshold, real statistics."""

    stretch: Stretch                      # what the generator predicts (model column order)
    predictions: dict[str, Prediction]    # generator first, then the baselines
    generator: Generator
    mode: str                             # "teacher" or "free"
    free: np.ndarray | None               # free-running samples aligned with the targets
    real: tuple[np.ndarray, np.ndarray]   # bins and columns of the real target spikes
    real_stats: FiringStats
    references: dict                      # stats.fidelity_references: real, ceiling and floor
    compared: FiringStats                 # of the real bins the generated ones are compared with
    data_key: Hashable = None             # names the recording it was computed on
    fitted: object | None = None          # a FITTED_GENERATORS generator's model (its own draws)
    free_calibration: TargetCalibration | None = None   # a model's free run's (pipeline.free_trains)
    free_copula: PopulationCopula | None = None   # what drew its free run's units jointly
    blended: bool = False                 # the generator's predictions: a generalist with its GLM
    thresholds: dict[str, float] = field(default_factory=dict)   # per threshold rule
    # Frames whose trains the threshold does not change, by how they were drawn (frames.make_frame)
    frames: dict = field(default_factory=dict, repr=False)

    @property
    def nbytes(self) -> int:
        """What the cache counts: the arrays this evaluation keeps alive (some of them also
        cached on their own, so the bound errs on the safe side)."""
        arrays = [p.P for p in self.predictions.values()] + [self.stretch.X, self.free]
        arrays += [a for f in list(self.frames.values()) for a in f.spikes]
        return sum(a.nbytes for a in arrays if a is not None)

    def slider_threshold(self, rule: str) -> float:
        """The rule's threshold as a slider can hold it: one that predicts no spike (inf, when
        nothing in the warm-up reaches any level) becomes 1."""
        t = self.thresholds[rule]
        return 1.0 if not t <= 1.0 else max(0.0, float(t))

    @property
    def P(self) -> np.ndarray:
        return self.predictions[self.generator.name].P

    @property
    def calibration(self) -> TargetCalibration:
        """The warm-up calibration the generated trains start from."""
        if self.free_calibration is not None:
            return self.free_calibration
        return self.predictions[self.generator.name].calibration

    @property
    def hists(self) -> dict[str, ScoreHistogram]:
        return {name: p.scored.hists["strict"] for name, p in self.predictions.items()}

    @property
    def hist(self) -> ScoreHistogram:
        return self.predictions[self.generator.name].scored.hists["strict"]

    @property
    def unit_hists(self) -> UnitHistograms:
        return self.predictions[self.generator.name].scored.units


@dataclass(frozen=True, eq=False)
class Plan:
    """What an evaluation predicts, known before any prediction: the real window is drawn from it."""

    setup: Setup              # evaluation.stretch.setup: units, order, stretch, the target's train split
    generator: Generator
    model: object | None      # predict.ModelPredictor of a checkpoint generator
    model_key: tuple | None
    data_key: Hashable
    reference: np.ndarray | None   # a real stretch as long as the window, just before it
    default_window: bool      # predictions on it are cached on disk too

    @property
    def nbytes(self) -> int:
        return 0 if self.reference is None else self.reference.nbytes

    @property
    def stretch(self) -> Stretch:
        """What the generator predicts: the model's column order, or recorded for a baseline."""
        return self.setup.model_stretch if self.model is not None else self.setup.stretch

    @property
    def real(self) -> tuple[np.ndarray, np.ndarray]:
        """Bins and columns of the real target spikes."""
        return np.nonzero(self.stretch.targets)

    def key(self, stretch: Stretch) -> tuple:
        return (self.data_key, stretch.bins, stretch.unit_order, tuple(map(str, stretch.unit_ids)))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plan_key(window: tuple[float, float], generator: Generator, unit_order: str, seed: int,
              data_key: Hashable) -> tuple | None:
    """What a plan depends on; None when the recording is not named (nothing can be cached)."""
    if data_key is None:
        return None
    # A baseline and the population states share their setup, not their plan (which names the
    # generator): keyed by the model alone, each showed the other's results under its own name.
    return ("plan", data_key, _model_key(generator) or generator.name, tuple(window),
            _requested_order(unit_order, seed))


def _model_key(generator: Generator) -> tuple | None:
    if not generator.is_model:
        return None
    return ("model", str(generator.path), generator.path.stat().st_mtime_ns)


def _requested_order(unit_order: str, seed: int) -> str:
    return "random:%d" % seed if unit_order == "random" else unit_order


def plan_cached(window: tuple[float, float], generator: Generator, *, unit_order: str = "auto",
                seed: int = 0, data_key: Hashable = None, cache: LRUCache | None = None) -> bool:
    """Whether `plan` with these arguments returns at once, from the cache."""
    try:
        key = _plan_key(window, generator, unit_order, seed, data_key)
    except OSError:   # a checkpoint file gone: planning says so, in the page
        return False
    return key is not None and key in (SHARED_CACHE if cache is None else cache)


def plan(recording: Recording, window: tuple[float, float], generator: Generator, *,
         unit_order: str = "auto", seed: int = 0, data_key: Hashable = None,
         cache: LRUCache | None = None,
         progress: Callable[[float, str], None] = lambda f, m: None) -> Plan:
    """Units, unit order and the binned window exactly as `spikeviz evaluate` chooses them
    (evaluation.stretch.setup); the baselines fit on the target's own train split."""
    cache = SHARED_CACHE if cache is None else cache
    key = _plan_key(window, generator, unit_order, seed, data_key)
    make = lambda: _plan(recording, tuple(window), generator, _requested_order(unit_order, seed),
                         data_key, cache, progress)
    return make() if key is None else cache.get(key, make)


def _plan(recording: Recording, window: tuple[float, float], generator: Generator, requested: str,
          data_key: Hashable, cache: LRUCache, progress: Callable[[float, str], None]) -> Plan:
    model, model_key = None, _model_key(generator)
    if generator.is_model:
        progress(0.05, f"loading {generator.name}")
        model = cache.get(model_key, lambda: ModelPredictor(generator.path, generator.name))
        meta = model.model.meta
        if abs(float(meta.get("bin_ms", BIN_MS)) - BIN_MS) > 1e-9:
            raise SpikevizError(f"the dashboard works on {BIN_MS:g}-ms bins, but this checkpoint "
                                f"was trained on {float(meta['bin_ms']):g}-ms bins: score it "
                                f"with `spikeviz evaluate`", generator.path)
    progress(0.1, "binning the window and the train split")
    su = cache.get(("setup", data_key, model_key, window, requested), lambda: setup(
        None if model is None else model.model, recording, unit_order=requested,
        window_s=window, n_units=N_UNITS,
        find_source=lambda meta: checkpoint_source(within_roots(meta))))
    reference = reference_before(recording, su.model_stretch if model is not None else su.stretch)
    return Plan(su, generator, model, model_key, data_key, reference,
                window == default_window(recording))


def _disk_key(plan: Plan, name: str, stretch: Stretch, cache: LRUCache) -> str | None:
    """Content key of a predictor's predictions on a default window: the checkpoint's bytes (a
    baseline: its name and fit data) and the binned window, so a changed file, recording or
    library source (content_key) names another entry and a stale one is never read."""
    if not plan.default_window:
        return None
    if name == plan.generator.name and plan.model is not None:
        who = cache.get(("sha256",) + plan.model_key, lambda: _file_sha256(plan.generator.path))
    else:
        who = (name, plan.setup.target.key)
    data = hashlib.sha256(stretch.X.tobytes()).hexdigest()
    return content_key("dashboard-predictions", who, data, stretch.X.shape)


def evaluate(plan: Plan, *, mode: str = "teacher", seed: int = 0, free_s: float = 5.0,
             joint: bool = True, cache: LRUCache | None = None,
             progress: Callable[[float, str], None] = lambda f, m: None) -> Evaluation:
    """Predict the planned window with the generator and the baselines, as `spikeviz evaluate`
    does (a generalist's guard fitted on the warm-up, then its blend with glm-coupled).

    Presets are tuned on the warm-up, never on scored bins. Predictions come from `cache` when
    the same data, predictor, unit order and mode were seen, and from disk for a default window
    predicted before (by any server). A free run's Bernoulli draws take a bin's units jointly
    unless `joint` is off (pipeline.free_trains).
    """
    cache = SHARED_CACHE if cache is None else cache
    if mode == "free" and plan.model is None and not plan.generator.is_fitted:
        raise SpikevizError("free-running generation needs a model checkpoint or the population "
                            "states; the baselines only predict teacher-forced")
    # A whole evaluation seen before (a session switched back to) costs nothing, statistics included.
    return cache.get(_evaluation_key(plan, mode, seed, free_s, joint),
                     lambda: _evaluate(plan, mode, seed, free_s, joint, cache, progress))


def _evaluation_key(plan: Plan, mode: str, seed: int, free_s: float, joint: bool) -> tuple:
    free = (free_s, joint) if mode == "free" else None   # teacher-forced draws come later (frames)
    return (plan.key(plan.stretch), plan.model_key or plan.generator.name, mode, seed, free,
            "evaluation")


def evaluation_cached(plan: Plan, *, mode: str = "teacher", seed: int = 0, free_s: float = 5.0,
                      joint: bool = True, cache: LRUCache | None = None) -> bool:
    """Whether `evaluate` with these arguments returns at once, from the cache."""
    return _evaluation_key(plan, mode, seed, free_s, joint) in (SHARED_CACHE if cache is None else cache)


def _evaluate(plan: Plan, mode: str, seed: int, free_s: float, joint: bool, cache: LRUCache,
              progress: Callable[[float, str], None]) -> Evaluation:
    generator, su, model = plan.generator, plan.setup, plan.model
    stretch = plan.stretch
    # Fits depend only on the target's train split: shared by every window, page and cache.
    fits = SHARED_CACHE.get(("baseline-fits", su.target.key), dict)
    # glm-coupled predicts the stretch as a baseline and again inside a generalist's blend: once.
    glm = _LastPrediction(lambda: fit_baseline("glm-coupled", su, fits))
    jobs = {name: (lambda name=name: glm if name == "glm-coupled" else fit_baseline(name, su, fits),
                   su.stretch, (name, su.target.key))
            for name in BASELINES}
    # A fitted generator draws its own trains: the model itself is kept with the evaluation.
    fitted = fit_baseline(generator.name, su, fits) if generator.is_fitted else None
    if model is not None:
        def adapted():
            """The model as `spikeviz evaluate` scores this target (evaluate.target_predictor: a
            generalist's guard fitted on the warm-up, then its blend with glm-coupled)."""
            def make():
                if not blends(model.model):
                    return model
                m = for_target(model.model, stretch.X, stretch)
                return blend_glm(ModelPredictor(m, generator.name), su, glm)
            return cache.get((plan.key(stretch), plan.model_key, "adapted"), make)
        jobs = {generator.name: (adapted, stretch, plan.model_key)} | jobs
    elif fitted is not None:
        jobs = {generator.name: (lambda: fitted, su.stretch, (generator.name, su.target.key))} | jobs
    else:
        jobs = {generator.name: jobs.pop(generator.name)} | jobs
    predictions = {}
    # glm-coupled's row straight after the generator's blend: it takes the GLM's logits the
    # blend left (_LastPrediction), which are then not held while the other baselines predict.
    order = sorted(jobs, key=lambda name: name not in (generator.name, "glm-coupled"))
    for i, name in enumerate(order):
        make, st, key = jobs[name]
        progress(0.2 + 0.65 * i / len(jobs), f"predicting {st.duration_s:.0f} s with {name}")
        keep = name == generator.name
        predictions[name] = cache.get(
            (plan.key(st), key, "teacher", keep),
            lambda make=make, st=st, keep=keep, name=name:
                _predict_stored(make, st, keep, _disk_key(plan, name, st, cache),
                                not generator.is_fitted))
    glm.release()   # (the blend, cached with the evaluation, keeps the wrapper: not its arrays)
    predictions = {name: predictions[name] for name in jobs}   # the generator, then BASELINES
    free = free_calibration = free_copula = None
    if mode == "free":
        n = int(min(free_s, stretch.duration_s) * 1000.0 / BIN_MS)
        progress(0.85, f"free-running {n * BIN_MS / 1000:g} s with {generator.name}")
        who = (plan.key(stretch), plan.model_key or (generator.name, su.target.key))

        def run():
            if fitted is not None:
                return fitted_trains(fitted, stretch, "free", n, seed), None, None
            # What a model's free run starts from depends on neither the seed nor the length.
            start = cache.get(who + ("free-start", joint),
                              lambda: free_start(adapted().model, stretch, joint))
            return free_trains(adapted().model, stretch, n, seed, joint=joint, start=start)
        free, free_calibration, free_copula = cache.get(who + ("free", seed, n, joint), run)
    progress(0.95, "firing statistics")
    Y = stretch.targets

    # A free run may be shorter than the window: fidelity compares the same bins.
    n = len(Y) if free is None else len(free)
    reference = None if plan.reference is None else plan.reference[:n]
    # The real bins' statistics and references: one computation for every mode.
    stats, references = cache.get((plan.key(stretch), "real", n, seed), lambda: (
        firing_stats(Y[:n], BIN_MS), fidelity_references(Y[:n], reference, bin_ms=BIN_MS, seed=seed)))
    return Evaluation(stretch, predictions, generator, mode, free, plan.real,
                      stats if n == len(Y) else firing_stats(Y, BIN_MS),
                      references, stats, plan.data_key, fitted, free_calibration, free_copula,
                      model is not None and blends(model.model),
                      {name: predictions[generator.name].threshold(name) for name in THRESHOLD_RULES})
