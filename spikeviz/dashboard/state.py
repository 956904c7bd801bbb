"""Per-browser-session state: the choices (inputs) and what follows from them (outputs)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import param

from ..data.catalog import direction
from ..errors import SpikevizError
from ..data.io import FORMATS
from ..data.recording import Recording
from . import compute, results
from ..evaluation.stretch import Stretch
from ..generation.predict import DRAW_RULES
from .cache import SHARED_CACHE, LRUCache
from .compute import BASELINE_GENERATOR, THRESHOLD_RULES, UNIT_ORDERS, Evaluation, Generator
from .frames import Frame, make_frame
from .window import DEFAULT_LENGTH_S, WINDOW_LENGTHS_S, default_window, start_bounds, window_for
from .fitting import fit_checkpoint, fit_span
from .jobs import Jobs, batched, message
from .sources import (DIRECTIONS, DOMAINS, Checkpoint, allowed_roots, bundled_names, checked_path,
                      checkpoint_choices, checkpoint_roots, default_checkpoint, opened_recording, read_checkpoint,
                      recording_cached, session_domain)
from .upload import store_upload, upload_folder

OPEN_FILE = "file on disk…"
PATH_PROMPT = "give a path and press Open file"   # the status while a file is chosen, not yet given
BASELINE_ONLY = "none: coupled GLM baseline"
FITTED_STATES = "population states: fitted on this recording"
OPEN_CHECKPOINT = "checkpoint file…"
FIT_EPOCHS = 5   # fine-tuning from a generalist: a few epochs at FINE_TUNE_LR
DRAWS = {"Bernoulli (sampled)": "bernoulli", "pooled threshold": "pooled",
         "per-unit density": "unit-density", "lift p / p̄": "lift"}
log = logging.getLogger(__name__)


class DashboardState(param.Parameterized):
    """Everything one browser session has chosen and computed; views only read it."""

    # Test data
    session = param.Selector(doc="bundled session to evaluate on, or a file on disk")
    path = param.String("", doc="file or phy folder (under the data folder or the working directory)")
    file_format = param.Selector(default="auto", objects=["auto", *FORMATS])
    # 0 is let through so that Open file answers it with a message in the page (the loaders refuse
    # it); the widgets cannot go below 0.
    tick_ms = param.Number(None, allow_None=True, bounds=(0, None),
                           doc="tick length of asdf files that do not state it")
    sample_rate = param.Number(None, allow_None=True, bounds=(0, None),
                               doc="sampling rate (Hz) of sample-based formats")
    file_domain = param.Selector(default="vitro", objects=list(DOMAINS))
    open_file = param.Event(label="Open file")
    # Model
    direction = param.Selector(default=DIRECTIONS[0], objects=list(DIRECTIONS))
    checkpoint = param.Selector(doc="shipped checkpoint, a checkpoint file, the GLM baseline, or the "
                                    "population states fitted on the recording")
    checkpoint_path = param.String("")
    open_checkpoint = param.Event(label="Load checkpoint")
    # Generation and evaluation
    mode = param.Selector(default="teacher", objects={"teacher-forced": "teacher", "free-running": "free"})
    seed = param.Integer(0, bounds=(0, None))
    free_s = param.Number(DEFAULT_LENGTH_S, bounds=(1.0, 300.0), step=1.0,
                          doc="free-running length (s; at most the window)")
    unit_order = param.Selector(default="auto", objects=list(UNIT_ORDERS),
                                doc="auto: as recorded on a model's own session, by rate rank elsewhere; "
                                    "random uses the seed")
    window_start = param.Number(0.0, bounds=(0.0, 1.0), step=1.0, label="Window start (s, test split)",
                                doc="start of the evaluated window; its bounds follow the test split")
    window_length = param.Selector(default=int(DEFAULT_LENGTH_S), objects=list(WINDOW_LENGTHS_S),
                                   label="Length (s)")
    draw = param.Selector(default="bernoulli", objects=DRAWS,
                          doc="how teacher-forced trains are drawn from the calibrated probabilities")
    joint = param.Boolean(True, label="Draw a bin's units jointly",
                          doc="Bernoulli draws, teacher-forced and free-running: shared slow "
                              "factors and a dead time fitted on the warm-up make units fire "
                              "together, each at its own rate (off: each unit drawn on its own, "
                              "`--independent-draws`)")
    draw_level = param.Number(DRAW_RULES["unit-density"]["default"], bounds=(0.0, None), step=0.1,
                              label="Rule level", doc="unit-density: count ratio to the unit's "
                              "expected count; lift: how many times its causal rate p must reach")
    threshold = param.Number(0.5, bounds=(0.0, 1.0), step=1e-4)
    threshold_rule = param.Selector(default="density", objects={"custom": "custom", **{v: k for k, v in THRESHOLD_RULES.items()}},
                            doc="Youden: max TPR - FPR with FPR <= 0.5 %; density: as many spikes as real")
    compute_table = param.Event(label="Compute the table")
    # Fitting a checkpoint to the loaded recording
    fit_seconds = param.Number(240.0, bounds=(20.0, None), step=10.0, label="Fit on the first (s)",
                               doc="the train split is its first half; the scored test split is never seen")
    fit_epochs = param.Integer(FIT_EPOCHS, bounds=(1, 50), label="Epochs")
    fit = param.Event(label="Fit to this recording")
    cancel_fit = param.Event(label="Cancel fit")
    fit_busy = param.Boolean(False, precedence=-1)
    fit_progress = param.Integer(0, bounds=(0, 100), precedence=-1)
    fit_status = param.String("", precedence=-1)
    # Outputs
    window = param.Range((0.0, DEFAULT_LENGTH_S), precedence=-1, doc="evaluated stretch (s)")
    window_note = param.String("", precedence=-1, doc="why the window is shorter than its length")
    cross_table = param.Dict(None, allow_None=True, precedence=-1, doc="evaluation.Table.as_dict()")
    recording = param.ClassSelector(class_=Recording, allow_None=True, precedence=-1)
    stretch = param.ClassSelector(class_=Stretch, allow_None=True, precedence=-1,
                                  doc="the window being evaluated: its real spikes show at once")
    evaluation = param.ClassSelector(class_=Evaluation, allow_None=True, precedence=-1)
    frame = param.ClassSelector(class_=Frame, allow_None=True, precedence=-1)
    busy = param.Boolean(False, precedence=-1)
    progress = param.Integer(0, bounds=(0, 100), precedence=-1)
    status = param.String("", precedence=-1)
    error = param.String("", precedence=-1)

    def __init__(self, threaded: bool | None = None, cache: LRUCache | None = None, **params: Any):
        self._checkpoints = {c.name: c for c in checkpoint_choices()}
        self._custom_checkpoint: Checkpoint | None = None
        self._jobs = Jobs(lambda **kw: self.param.update(**kw), threaded)
        # Fitting runs on its own worker: evaluations go on meanwhile.
        # (A finished job clears its status: the fit's outcome, set when it ends, stays.)
        self._fit_jobs = Jobs(lambda busy=None, progress=None, status=None, error=None: self.param.update(
            {k: v for k, v in (("fit_busy", busy), ("fit_progress", progress), ("fit_status", status or None),
                               ("error", error)) if v is not None}), threaded)
        self._fit_cancelled = False
        self.cache = SHARED_CACHE if cache is None else cache
        self._recording_key: tuple | None = None
        self._upload_dir: Path | None = None   # this page's dropped files, made by the first drop
        if "window" in params:   # a window by its ends: its start and nearest listed length
            a, b = params.pop("window")
            params.setdefault("window_start", float(a))
            params.setdefault("window_length", min(WINDOW_LENGTHS_S, key=lambda n: abs(n - (b - a))))
        names = bundled_names()
        choices = {"session": params.pop("session", names[0])}
        choices["checkpoint"] = params.pop("checkpoint", self._default_checkpoint(session_domain(choices["session"])))
        params.setdefault("cross_table", results.cross_session_table())
        start = params.pop("window_start", 0.0)
        super().__init__(**params)
        self.param.window_start.bounds = (0.0, max(1.0, float(start)))
        self.window_start = float(start)   # clamped into the test split once the data is loaded
        # Options are per instance (the catalog and models/ may change between sessions).
        self.param.session.objects = [*names, OPEN_FILE]
        self.param.checkpoint.objects = [*self._checkpoints, BASELINE_ONLY, FITTED_STATES,
                                         OPEN_CHECKPOINT]
        self.param.watch(self._draw_chosen, "draw")
        self.param.watch(lambda _: setattr(self, "_fit_cancelled", True), "cancel_fit")
        # Only listed values, whatever a client sends.
        self.param.session.check_on_set = self.param.checkpoint.check_on_set = True
        with param.parameterized.discard_events(self):
            self.param.update(choices)
            self._offer_checkpoints()
        self.param.watch(self._direction_chosen, "direction")
        self._sync_direction()
        self._load()

    def _fail(self, exc: Exception) -> None:
        if not isinstance(exc, SpikevizError):   # a bug, not bad input: keep its traceback
            log.error("dashboard job failed", exc_info=exc)
        self.error = message(exc)

    def close(self) -> None:
        """Stop the worker after its current job and remove dropped files: called when the
        browser session ends."""
        self._fit_cancelled = True
        self._jobs.close()
        self._fit_jobs.close()
        if self._upload_dir is not None:
            shutil.rmtree(self._upload_dir, ignore_errors=True)

    # --- test data ----------------------------------------------------------------------------

    @property
    def target_domain(self) -> str:
        return session_domain(self.session) or self.file_domain

    def _test_recording_args(self) -> dict:
        if self.session != OPEN_FILE:
            return {"name": self.session}
        roots = allowed_roots() + ((self._upload_dir.resolve(),) if self._upload_dir else ())
        return {"name": None, "path": self.path, "file_format": None if self.file_format == "auto"
                else self.file_format, "tick_ms": self.tick_ms, "sample_rate": self.sample_rate,
                "roots": roots}

    def open_upload(self, name: str, data: bytes) -> None:
        """A dropped file (or zipped phy folder): stored in this page's private folder, then
        opened like a path with the format, tick and sample rate chosen beside it."""
        try:
            self._upload_dir = self._upload_dir or upload_folder()
            path = store_upload(name, data, self._upload_dir / "current")
        except SpikevizError as exc:
            self.error = message(exc)
            return
        if self.session == OPEN_FILE:
            self.path = str(path)
            self.param.trigger("open_file")
        else:
            self.param.update(session=OPEN_FILE, path=str(path))

    @param.depends("session", "open_file", watch=True)
    @batched
    def _load(self) -> None:
        # Nothing of the previous data stays on screen under the new choice.
        self.param.update(recording=None, stretch=None, evaluation=None, frame=None)
        if self.session == OPEN_FILE and not self.path.strip():
            self.status = PATH_PROMPT
            return
        args = self._test_recording_args()

        def work(progress):
            progress(0.1, f"loading {args['name'] or args['path']}")
            recording, key = opened_recording(args, self.cache)
            default_window(recording)   # refuses a recording too short to evaluate
            return recording, key

        self._jobs.submit("load", work, self._loaded, self._fail, quick=recording_cached(args, self.cache))

    def _loaded(self, result: tuple[Recording, tuple]) -> None:
        recording, key = result
        lo, hi = start_bounds(recording, self.window_length)
        start = self.window_start if lo <= self.window_start <= hi else lo
        self.param.window_start.bounds = (lo, hi)
        self._recording_key = key
        self.param.update(window_start=start, recording=recording,
                          **self._with_window(window_for(recording, start, self.window_length)))

    @param.depends("window_start", "window_length", watch=True)
    @batched
    def _window_chosen(self) -> None:
        if self.recording is None:
            return
        lo, hi = start_bounds(self.recording, self.window_length)
        self.param.window_start.bounds = (lo, hi)
        start = min(max(self.window_start, lo), hi)
        if start != self.window_start:   # clamped into the new bounds: this runs again
            self.window_start = start
            return
        self.param.update(self._with_window(window_for(self.recording, start, self.window_length)))

    def _with_window(self, window: tuple[float, float]) -> dict[str, Any]:
        """`window`, with a free-running length that keeps covering the whole window if it did,
        and a note when the test split's end cut it short of the chosen length."""
        (a, b), length = self.window, window[1] - window[0]
        def secs(x: float) -> str:
            return f"{x:.1f}".removesuffix(".0")

        note = (f"The window is {secs(length)} s, not {self.window_length} s: this recording's test split "
                f"ends at {secs(window[1])} s." if self.window_length - length >= 0.05 else "")
        return ({"window": window, "window_note": note}
                | ({"free_s": float(length)} if b - a <= self.free_s < length else {}))

    # --- model and direction ------------------------------------------------------------------

    def _default_checkpoint(self, source_domain: str | None, target_domain: str | None = None) -> str:
        """The first checkpoint offered for the direction, else the baseline."""
        chosen = default_checkpoint(self._checkpoints.values(), source_domain, target_domain)
        return BASELINE_ONLY if chosen is None else chosen.name

    @param.depends("session", "file_domain", watch=True)
    def _offer_checkpoints(self) -> None:
        """The checkpoint list for the test data's domain: a checkpoint of the other domain's
        sessions is not listed."""
        target = self.target_domain
        names = [c.name for c in self._checkpoints.values() if c.any_domain or c.domain == target]
        self.param.checkpoint.objects = [*names, BASELINE_ONLY, FITTED_STATES, OPEN_CHECKPOINT]
        if self.checkpoint not in self.param.checkpoint.objects:
            self.checkpoint = self._default_checkpoint(target)

    @property
    def checkpoint_info(self) -> Checkpoint | None:
        if self.checkpoint == OPEN_CHECKPOINT:
            return self._custom_checkpoint
        return self._checkpoints.get(self.checkpoint)

    @property
    def source_domain(self) -> str:
        info = self.checkpoint_info
        return (info.domain if info and info.domain else None) or self.direction.split("->")[0]

    @param.depends("session", "checkpoint", "file_domain", watch=True)
    def _sync_direction(self) -> None:
        self.direction = direction(self.source_domain, self.target_domain)

    def _direction_chosen(self, event: param.parameterized.Event) -> None:
        """A direction that no longer fits the test data or checkpoint was picked by hand: switch
        them to ones that fit it. (A direction set to fit them changes nothing here, nor does a
        checkpoint whose header names no domain.)"""
        source, target = self.direction.split("->")
        updates = {}
        if self.target_domain != target:
            if self.session == OPEN_FILE:
                updates["file_domain"] = target
            else:
                updates["session"] = next(n for n in bundled_names() if session_domain(n) == target)
        info = self.checkpoint_info
        if info is not None and info.domain and not info.any_domain and info.domain != source:
            updates["checkpoint"] = self._default_checkpoint(source, target)
        self.param.update(updates)

    @param.depends("open_checkpoint", watch=True)
    def _checkpoint_opened(self) -> None:
        try:
            path = checked_path(self.checkpoint_path, checkpoint_roots())
        except SpikevizError as exc:
            self.error = message(exc)
            return
        try:
            self._custom_checkpoint = read_checkpoint(path)
        except SpikevizError:   # loading it refuses it again, in the page, like any bad checkpoint
            self._custom_checkpoint = Checkpoint(path, "", "")
        if self.checkpoint == OPEN_CHECKPOINT:
            # Once the file is read (before, the direction followed the last one's domain).
            self._sync_direction()
            self._evaluate()
        else:
            self.checkpoint = OPEN_CHECKPOINT

    def generator(self) -> Generator:
        info = self.checkpoint_info
        if info is None:
            if self.checkpoint == OPEN_CHECKPOINT:
                raise SpikevizError("give a checkpoint path and press Load checkpoint")
            return Generator("states" if self.checkpoint == FITTED_STATES else BASELINE_GENERATOR)
        return Generator(info.name, info.path)

    @param.depends("fit", watch=True)
    def _fit(self) -> None:
        """Fine-tune the chosen unit-agnostic checkpoint (else the default generalist) on the
        first `fit_seconds` of the loaded recording, in the background; the result becomes
        selectable, and selected, as a checkpoint of this page."""
        info = self.checkpoint_info
        if info is None or not info.any_domain:
            info = self._checkpoints.get(self._default_checkpoint(None))
        if self.recording is None or info is None or not info.any_domain or self._fit_jobs.running:
            self.error = ("fitting needs a loaded recording and a shipped generalist, one fit at a "
                          "time") if not self._fit_jobs.running else "a fit is already running"
            return
        recording, seconds, epochs = self.recording, self.fit_seconds, self.fit_epochs
        self._upload_dir = self._upload_dir or upload_folder()
        self._fit_cancelled = False

        def work(progress):
            return fit_checkpoint(info, recording, self._upload_dir, seconds, epochs, progress,
                                  lambda: self._fit_cancelled)

        shortened = fit_span(seconds, recording.duration_s)[1]

        def done(fitted: Checkpoint | None) -> None:
            if fitted is None:
                self.fit_status = "cancelled before the first epoch ended: nothing kept"
                return
            self._checkpoints[fitted.name] = fitted
            self._offer_checkpoints()
            outcome = ("cancelled: the best epoch so far is kept" if self._fit_cancelled
                       else f"fitted: {fitted.name}")
            self.param.update(checkpoint=fitted.name, fit_status=outcome + (f" (on {shortened})" if shortened else ""))

        self._fit_jobs.submit("fit", work, done, self._fail)

    @param.depends("compute_table", watch=True)
    def _build_table(self) -> None:
        self._jobs.submit("table", results.build_cross_session_table,
                          lambda table: setattr(self, "cross_table", table), self._fail)

    # --- evaluation and threshold -------------------------------------------------------------

    @param.depends("recording", "checkpoint", "mode", "seed", "free_s", "unit_order", "window",
                   watch=True)
    @batched
    def _evaluate(self) -> None:
        """Plan the window (its real spikes show at once), then predict it; views of the previous
        evaluation are cleared first, never shown under the new choices."""
        if self.recording is None:
            return
        try:
            generator = self.generator()
        except SpikevizError as exc:   # no checkpoint file loaded yet: nothing shown under its label
            self.param.update(stretch=None, evaluation=None, frame=None, error=message(exc))
            return
        self.param.update(stretch=None, evaluation=None, frame=None)
        recording, key, window = self.recording, self._recording_key, tuple(self.window)
        options = dict(mode=self.mode, seed=self.seed, free_s=self.free_s, joint=self.joint,
                       cache=self.cache)
        planning = dict(unit_order=self.unit_order, seed=self.seed, data_key=key, cache=self.cache)

        def plan(progress):
            return compute.plan(recording, window, generator, progress=progress, **planning)

        def planned(p: compute.Plan) -> None:
            self.stretch = p.stretch
            self._jobs.submit("evaluate", lambda progress: compute.evaluate(p, progress=progress, **options),
                              self._evaluated, self._fail, quick=compute.evaluation_cached(p, **options))

        self._jobs.submit("evaluate", plan, planned, self._fail,
                          quick=compute.plan_cached(window, generator, **planning))

    @param.depends("joint", watch=True)
    def _joint_chosen(self) -> None:
        """A model's free run is drawn with the evaluation; teacher-forced draws follow in the
        frame; the population states draw their own."""
        if self.mode == "free" and self.checkpoint != FITTED_STATES:
            self._evaluate()

    def _evaluated(self, evaluation: Evaluation) -> None:
        # The slider spans a few times the rules' thresholds: spike probabilities are small in vivo.
        top = min(1.0, 4 * max(evaluation.thresholds.values()))
        self.param.threshold.softbounds = (0.0, max(float(f"{top:.2g}"), self.threshold))
        updates: dict[str, Any] = {"evaluation": evaluation}
        if self.threshold_rule != "custom":   # a typed threshold stays: only a pressed rule moves it
            updates["threshold"] = evaluation.slider_threshold(self.threshold_rule)
        self.param.update(updates)

    @param.depends("threshold_rule", watch=True)
    @batched
    def _rule_chosen(self) -> None:
        if self.evaluation is not None and self.threshold_rule != "custom":
            self.threshold = self.evaluation.slider_threshold(self.threshold_rule)

    @param.depends("threshold", watch=True)
    def _threshold_set(self) -> None:
        """A threshold other than the rule's (typed or dragged, even before any evaluation)
        makes the rule custom, so no later evaluation replaces it."""
        ev = self.evaluation
        if self.threshold_rule != "custom" and (ev is None or self.threshold != ev.slider_threshold(self.threshold_rule)):
            self.threshold_rule = "custom"

    def _draw_chosen(self, event: param.parameterized.Event) -> None:
        if event.new in ("unit-density", "lift"):   # each rule's level has its own scale
            self.draw_level = float(DRAW_RULES[event.new]["default"])

    @param.depends("evaluation", "threshold", "draw", "draw_level", "joint", watch=True)
    @batched
    def _update_frame(self) -> None:
        ev = self.evaluation
        self.frame = None if ev is None else make_frame(
            ev, self.threshold, self.draw, self.draw_level, self.seed, self.joint)
