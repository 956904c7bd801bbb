"""Per-browser-session state: the choices (inputs), what follows from them (outputs), the work queue."""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import panel as pn
import param

from ..errors import SpikevizError
from ..io import FORMATS
from ..recording import Recording
from . import compute, results
from .compute import PRESETS, UNIT_ORDERS, Evaluation, Frame, Generator, LRUCache
from .sources import (DIRECTIONS, DOMAINS, Checkpoint, bundled_names, checked_path,
                      checkpoint_roots, direction,
                      load_source, read_checkpoint, session_domain, shipped_checkpoints)

OPEN_FILE = "file on disk…"
BASELINE_ONLY = "none: GLM baseline"
OPEN_CHECKPOINT = "checkpoint file…"
BASELINE_GENERATOR = "glm"


class Worker:
    """One daemon thread running jobs in order: a session's jobs queue behind each other instead
    of fighting over 2 cores, and a job still running never holds up server shutdown."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="spikeviz-dashboard", daemon=True).start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def close(self) -> None:
        self._jobs.put(None)


def _probability(threshold: float) -> float:
    """A preset threshold as the slider can hold it: one that predicts no spike (inf, when nothing
    in the warm-up reaches any level) becomes 1."""
    return 1.0 if not threshold <= 1.0 else max(0.0, float(threshold))


def _message(exc: Exception) -> str:
    """One line for the page: our own errors as they are, anything else with its type."""
    return str(exc) if isinstance(exc, SpikevizError) else f"{type(exc).__name__}: {exc}"


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
    checkpoint = param.Selector(doc="shipped checkpoint, a checkpoint file, or the GLM baseline")
    checkpoint_path = param.String("")
    open_checkpoint = param.Event(label="Load checkpoint")
    # Generation and evaluation
    mode = param.Selector(default="teacher", objects={"teacher-forced": "teacher", "free-running": "free"})
    seed = param.Integer(0, bounds=(0, None))
    free_s = param.Number(5.0, bounds=(1.0, 30.0), step=1.0, doc="free-running length (s)")
    unit_order = param.Selector(default="auto", objects=list(UNIT_ORDERS),
                                doc="auto: as recorded on a model's own session, by rate rank elsewhere; "
                                    "random uses the seed")
    window = param.Range((0.0, 60.0), bounds=(0.0, 60.0), doc="evaluated stretch (s)")
    threshold = param.Number(0.5, bounds=(0.0, 1.0), step=1e-4)
    preset = param.Selector(default="density", objects={"custom": "custom", **{v: k for k, v in PRESETS.items()}},
                            doc="Youden: max TPR - FPR with FPR <= 0.5 %; density: as many spikes as real")
    compute_table = param.Event(label="Compute the table")
    # Outputs
    cross_table = param.Dict(None, allow_None=True, precedence=-1, doc="evaluation.Table.as_dict()")
    recording = param.ClassSelector(class_=Recording, allow_None=True, precedence=-1)
    evaluation = param.ClassSelector(class_=Evaluation, allow_None=True, precedence=-1)
    frame = param.ClassSelector(class_=Frame, allow_None=True, precedence=-1)
    busy = param.Boolean(False, precedence=-1)
    progress = param.Integer(0, bounds=(0, 100), precedence=-1)
    status = param.String("", precedence=-1)
    error = param.String("", precedence=-1)

    def __init__(self, threaded: bool | None = None, **params: Any):
        self._checkpoints = {c.name: c for c in shipped_checkpoints()}
        self._custom_checkpoint: Checkpoint | None = None
        self._tokens = {kind: itertools.count() for kind in ("load", "evaluate", "table")}
        self._latest: dict[str, int] = {}
        self._running: set[str] = set()
        self._syncing = False
        self._worker: Worker | None = None   # started by the first background job
        self._threaded = threaded
        self.cache = LRUCache()
        self._recording_key: tuple | None = None
        names = bundled_names()
        choices = {"session": params.pop("session", names[0])}
        choices["checkpoint"] = params.pop("checkpoint", self._default_checkpoint(session_domain(choices["session"])))
        params.setdefault("cross_table", results.cross_session_table())
        super().__init__(**params)
        # Options are per instance (the catalog and models/ may change between sessions).
        self.param.session.objects = [*names, OPEN_FILE]
        self.param.checkpoint.objects = [*self._checkpoints, BASELINE_ONLY, OPEN_CHECKPOINT]
        # Only listed values, whatever a client sends.
        self.param.session.check_on_set = self.param.checkpoint.check_on_set = True
        with param.parameterized.discard_events(self):
            self.param.update(choices)
        self._sync_direction()
        self._load()

    # --- running work off the event loop -------------------------------------------------------

    def _in_server(self) -> bool:
        if self._threaded is not None:
            return self._threaded
        doc = pn.state.curdoc
        return doc is not None and doc.session_context is not None

    def _submit(self, kind: str, work: Callable[[Callable[[float, str], None]], Any],
                done: Callable[[Any], None]) -> None:
        """Run `work(progress)` on the session's worker (inline outside a server), then `done`.

        Only the latest job of a kind may apply its result: earlier ones finish and are dropped.
        """
        token = self._latest[kind] = next(self._tokens[kind])
        self._running.add(kind)
        self.param.update(busy=True, error="", progress=0)
        if not self._in_server():
            self._finish(kind, token, work, done, lambda f, m: self.param.update(progress=int(100 * f), status=m))
            return
        loop = asyncio.get_event_loop()
        self._worker = self._worker or Worker()

        def progress(fraction: float, message: str) -> None:
            loop.call_soon_threadsafe(lambda: self.param.update(progress=int(100 * fraction), status=message))

        async def run() -> None:
            try:
                result = await asyncio.wrap_future(self._worker.submit(work, progress))
            except Exception as exc:  # shown in the page: a failed job must never kill the session
                self._fail(kind, token, exc)
                return
            self._apply(kind, token, done, result)

        pn.state.execute(run)

    def _finish(self, kind, token, work, done, progress) -> None:
        try:
            result = work(progress)
        except Exception as exc:  # shown in the page, as in a server
            self._fail(kind, token, exc)
            return
        self._apply(kind, token, done, result)

    def _apply(self, kind: str, token: int, done: Callable[[Any], None], result: Any) -> None:
        if token != self._latest[kind]:
            return
        self._running.discard(kind)
        try:
            done(result)   # may submit the next job (a loaded recording starts its evaluation)
        except Exception as exc:
            self._fail(kind, token, exc)
            return
        if not self._running:
            self.param.update(busy=False, progress=100, status="")

    def _fail(self, kind: str, token: int, exc: Exception) -> None:
        if token == self._latest[kind]:
            self._running.discard(kind)
            self.param.update(busy=bool(self._running), progress=0, status="", error=_message(exc))

    def close(self) -> None:
        """Stop the worker after its current job: called when the browser session ends."""
        if self._worker is not None:
            self._worker.close()

    # --- test data ----------------------------------------------------------------------------

    @property
    def target_domain(self) -> str:
        return session_domain(self.session) or self.file_domain

    def _source_args(self) -> dict:
        if self.session != OPEN_FILE:
            return {"name": self.session}
        return {"name": None, "path": self.path, "file_format": None if self.file_format == "auto"
                else self.file_format, "tick_ms": self.tick_ms, "sample_rate": self.sample_rate}

    @param.depends("session", "open_file", watch=True)
    def _load(self) -> None:
        if self.session == OPEN_FILE and not self.path.strip():
            self.param.update(recording=None, evaluation=None, frame=None,
                              status="give a path and press Open file")
            return
        args = self._source_args()

        def work(progress):
            progress(0.1, f"loading {args['name'] or args['path']}")
            recording = load_source(**args)
            key = (args["name"],) if args["name"] else (
                str(Path(args["path"]).resolve()), Path(args["path"]).stat().st_mtime_ns,
                args["file_format"], args["tick_ms"], args["sample_rate"])
            return recording, key

        self._submit("load", work, self._loaded)

    def _loaded(self, result: tuple[Recording, tuple]) -> None:
        recording, key = result
        window = compute.default_window(recording, self.window[1] - self.window[0] or 60.0)
        self.param.window.bounds = (0.0, round(recording.duration_s, 3))
        self._recording_key = key
        self.param.update(window=window, recording=recording)

    # --- model and direction ------------------------------------------------------------------

    def _default_checkpoint(self, source_domain: str | None) -> str:
        """A shipped checkpoint for `source_domain` (the generalist first, focal before Dice), else
        the baseline."""
        matches = [c for c in self._checkpoints.values()
                   if c.any_domain or c.domain == source_domain]
        matches.sort(key=lambda c: (not c.any_domain, c.loss != "focal", c.name))
        return matches[0].name if matches else BASELINE_ONLY

    @property
    def checkpoint_info(self) -> Checkpoint | None:
        if self.checkpoint == OPEN_CHECKPOINT:
            return self._custom_checkpoint
        return self._checkpoints.get(self.checkpoint)

    @property
    def source_domain(self) -> str:
        info = self.checkpoint_info
        return (info.domain if info and info.domain else None) or self.direction.split("->")[0]

    @param.depends("session", "checkpoint", "file_domain", "open_checkpoint", watch=True)
    def _sync_direction(self) -> None:
        self._syncing = True
        try:
            self.direction = direction(self.source_domain, self.target_domain)
        finally:
            self._syncing = False

    @param.depends("direction", watch=True)
    def _direction_chosen(self) -> None:
        """A direction picked by hand: switch the test session and checkpoint to ones that fit it."""
        if self._syncing:
            return
        source, target = self.direction.split("->")
        updates = {}
        if self.target_domain != target:
            if self.session == OPEN_FILE:
                updates["file_domain"] = target
            else:
                updates["session"] = next(n for n in bundled_names() if session_domain(n) == target)
        info = self.checkpoint_info
        if info is not None and not info.any_domain and info.domain != source:
            updates["checkpoint"] = self._default_checkpoint(source)
        self.param.update(updates)
        # Without a checkpoint only the direction says where the baselines train.
        if not {"session", "checkpoint"} & set(updates) and self.recording is not None:
            self._evaluate()

    @param.depends("open_checkpoint", watch=True)
    def _checkpoint_opened(self) -> None:
        try:
            path = checked_path(self.checkpoint_path, checkpoint_roots())
        except SpikevizError as exc:
            self.error = _message(exc)
            return
        try:
            self._custom_checkpoint = read_checkpoint(path)
        except SpikevizError:   # loading it refuses it again, in the page, like any bad checkpoint
            self._custom_checkpoint = Checkpoint(path, "", "")
        if self.checkpoint == OPEN_CHECKPOINT:
            self._evaluate()
        else:
            self.checkpoint = OPEN_CHECKPOINT

    def generator(self) -> Generator:
        info = self.checkpoint_info
        if info is None:
            if self.checkpoint == OPEN_CHECKPOINT:
                raise SpikevizError("give a checkpoint path and press Load checkpoint")
            return Generator(BASELINE_GENERATOR)
        return Generator(info.name, info.path)

    def _source_session(self) -> str | None:
        """Where the baselines train without a checkpoint: the test data itself within a domain
        (None), else the first bundled session of the source domain."""
        if self.source_domain == self.target_domain:
            return None
        return next(n for n in bundled_names() if session_domain(n) == self.source_domain)

    @param.depends("compute_table", watch=True)
    def _build_table(self) -> None:
        self._submit("table", results.build_cross_session_table,
                     lambda table: setattr(self, "cross_table", table))

    # --- evaluation and threshold -------------------------------------------------------------

    @param.depends("recording", "checkpoint", "mode", "seed", "free_s", "unit_order", "window",
                   watch=True)
    def _evaluate(self) -> None:
        if self.recording is None:
            return
        try:
            generator = self.generator()
        except SpikevizError as exc:
            self.error = _message(exc)
            return
        recording, key = self.recording, self._recording_key
        options = dict(unit_order=self.unit_order, seed=self.seed, mode=self.mode, free_s=self.free_s)
        window = tuple(self.window)
        source_name = None if generator.is_model else self._source_session()

        def work(progress):
            source = load_source(source_name) if source_name else None
            return compute.evaluate(recording, window, generator, source, data_key=key,
                                    cache=self.cache, progress=progress, **options)

        self._submit("evaluate", work, self._evaluated)

    def _evaluated(self, evaluation: Evaluation) -> None:
        # The slider spans a few times the presets: spike probabilities are small in vivo.
        top = min(1.0, 4 * max(evaluation.presets.values()))
        self.param.threshold.softbounds = (0.0, float(f"{top:.2g}"))
        updates = {"evaluation": evaluation}
        old = self.evaluation
        if self.preset == "custom" and old is not None and (
                old.stretch.key[0] != evaluation.stretch.key[0] or old.generator != evaluation.generator):
            updates["preset"] = "density"   # a hand-set threshold means nothing for other data or models
        preset = updates.get("preset", self.preset)
        if preset != "custom":
            updates["threshold"] = _probability(evaluation.presets[preset])
        self.param.update(updates)

    @param.depends("preset", watch=True)
    def _preset_chosen(self) -> None:
        if self.evaluation is not None and self.preset != "custom":
            self.threshold = _probability(self.evaluation.presets[self.preset])

    @param.depends("evaluation", "threshold", watch=True)
    def _update_frame(self) -> None:
        ev = self.evaluation
        if ev is None:
            return
        if self.preset != "custom" and self.threshold != _probability(ev.presets[self.preset]):
            self.preset = "custom"
        self.frame = compute.make_frame(ev, self.threshold)
