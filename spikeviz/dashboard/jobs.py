"""Background jobs of one browser session: a worker thread, progress, and only the latest job of a kind applied."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import panel as pn
from bokeh.document import Document
from panel.io.document import hold
from panel.io.state import set_curdoc

from ..errors import SpikevizError

Progress = Callable[[float, str], None]


def message(exc: Exception) -> str:
    """A job's error as one line for the page: our own errors as they are, others with their type."""
    return str(exc) if isinstance(exc, SpikevizError) else f"{type(exc).__name__}: {exc}"


def batched(method):
    """A method of an object with `_jobs` whose changes to the page go to the browser together
    (Jobs.held)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._jobs.held():
            return method(self, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
def frozen(doc: Document) -> Iterator[None]:
    """`doc.models.freeze()`, ended when its body raises too: Bokeh's (3.9) then stays frozen for
    good, no model added later is known to the server, and every change the browser sends to one
    fails with UnknownReferenceError (a refused path broke every download button that way)."""
    failure = None
    with doc.models.freeze():
        try:
            yield
        except BaseException as exc:
            failure = exc
    if failure is not None:
        raise failure


@contextlib.contextmanager
def held(doc: Document) -> Iterator[None]:
    """Panel's `hold(doc, freeze=True)`, with a freeze that a raising body ends (`frozen`)."""
    with frozen(doc), hold(doc):
        yield


def post(loop: asyncio.AbstractEventLoop, doc: Document, callback: Callable[[], None],
         gone: Callable[[], bool] = lambda: False) -> None:
    """Run `callback` on `doc`'s next tick, from any thread, unless its page has gone (`gone()`,
    or the document destroyed). The check and the call run on the event loop, where Bokeh
    destroys documents, so no destroy falls between them: on a destroyed document Bokeh raises
    inside its curdoc patch and leaves that patch behind, and every later curdoc() of the
    process fails ("Patched curdoc has been previously destroyed"). destroy() clears the
    session context first; the session-destroyed hooks run after it."""
    def on_loop() -> None:
        if not gone() and doc.session_context is not None:
            doc.add_next_tick_callback(callback)

    loop.call_soon_threadsafe(on_loop)


class Superseded(Exception):
    """A queued job whose kind was submitted again before it started: skipped, never run."""


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


class Jobs:
    """Runs `work(progress)` off the event loop, then `done(result)` on it.

    Only the latest job of a kind applies its result; a job superseded before it starts is not run
    at all, so the last of many quick changes costs one job. Outside a server (tests, scripts) jobs
    run inline, and so do jobs submitted before the server's event loop runs (`panel serve
    --warm` building the page once at start-up fills the shared caches that way).
    `report(busy=, progress=, status=, error=)` shows where the jobs are.
    """

    def __init__(self, report: Callable[..., None], threaded: bool | None = None):
        self._report = report
        self._threaded = threaded
        self._tokens = itertools.count()
        self._latest: dict[str, int] = {}
        self._running: set[str] = set()
        self._worker: Worker | None = None   # started by the first background job
        self._closed = False

    def _in_server(self) -> bool:
        if self._threaded is not None:
            return self._threaded
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        doc = pn.state.curdoc
        return doc is not None and doc.session_context is not None

    def held(self) -> contextlib.AbstractContextManager:
        """Page changes made inside reach the browser as one message, after one update of the
        document's model graph: the browser lays the whole page out again for every message
        (about 0.2 s on 2 cores), and a session switch changed some twenty views one by one."""
        return held(pn.state.curdoc) if self._in_server() else contextlib.nullcontext()

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def submit(self, kind: str, work: Callable[[Progress], Any], done: Callable[[Any], None],
               fail: Callable[[Exception], None], quick: bool = False) -> None:
        """`quick` work (its result cached) runs at once, in the caller's context: its result
        reaches the page with the change that asked for it, in the same message."""
        token = self._latest[kind] = next(self._tokens)
        self._running.add(kind)
        self._report(busy=True, error="", progress=0)
        if quick or not self._in_server():
            self._finish(kind, token, work, done, fail,
                         lambda f, m: self._report(progress=int(100 * f), status=m))
            return
        doc, loop = pn.state.curdoc, asyncio.get_running_loop()
        self._worker = self._worker or Worker()

        def report(**values: Any) -> None:
            # Delivered later than the result under load: a finished job's step must not stay shown.
            if token != self._latest[kind] or kind not in self._running:
                return
            with set_curdoc(doc), self.held():   # (the page's own server resolves stylesheets)
                self._report(**values)

        def progress(fraction: float, message: str) -> None:
            # Bokeh's one thread-safe way into the document: the change reaches the page.
            if token == self._latest[kind]:
                post(loop, doc, lambda: report(progress=int(100 * fraction), status=message),
                     lambda: self._closed)

        def guarded(progress: Progress) -> Any:
            if token != self._latest[kind]:
                raise Superseded()
            return work(progress)

        def locked(apply: Callable[[], None]) -> None:
            # Results reach the page through a next-tick callback, which holds the document lock;
            # their changes go out together (Jobs.held).
            def call() -> None:
                with set_curdoc(doc), self.held():
                    apply()
            post(loop, doc, call, lambda: self._closed)

        async def run() -> None:
            try:
                result = await asyncio.wrap_future(self._worker.submit(guarded, progress))
            except Superseded:
                return
            except Exception as exc:  # shown in the page: a failed job must never kill the session
                # (bound now: Python unbinds `exc` when this block ends, before the callback runs)
                locked(functools.partial(self._failed, kind, token, fail, exc))
                return
            locked(lambda: self._apply(kind, token, done, fail, result))

        pn.state.execute(run)

    def _finish(self, kind, token, work, done, fail, progress) -> None:
        try:
            result = work(progress)
        except Exception as exc:  # shown in the page, as in a server
            self._failed(kind, token, fail, exc)
            return
        self._apply(kind, token, done, fail, result)

    def _apply(self, kind: str, token: int, done, fail, result: Any) -> None:
        if token != self._latest[kind]:
            return
        self._running.discard(kind)
        try:
            done(result)   # may submit the next job (a loaded recording starts its evaluation)
        except Exception as exc:
            self._failed(kind, token, fail, exc)
            return
        if not self._running:
            self._report(busy=False, progress=100, status="")

    def _failed(self, kind: str, token: int, fail, exc: Exception) -> None:
        if token == self._latest[kind]:
            self._running.discard(kind)
            self._report(busy=bool(self._running), progress=0, status="")
            fail(exc)

    def close(self) -> None:
        """Stop the worker after its current job: called when the browser session ends."""
        self._closed = True
        if self._worker is not None:
            self._worker.close()
