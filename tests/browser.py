"""Helpers shared by the browser tests: a `panel serve` subprocess on 127.0.0.1, headless Chromium,
and readers of the dashboard's readout."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The warm-up of tests/robustness/sessions_app.py's servers (serve's `setup`).
SESSIONS_WARM = "tests/robustness/sessions_warm.py"

# Mark a module's tests with `pytestmark = browser_marks`.
browser_marks = [pytest.mark.browser,
                 pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A server log line that fails a test: a traceback, an exception named by Python or Bokeh
# ("error handling message", "Exception in callback"), or a logged error of any kind.
PROBLEM = re.compile(r"Traceback|Exception|\w+Error\b|^ERROR|error handling message", re.M)


class Server(str):
    """A served app's URL (the string itself), and its log so far."""

    def __new__(cls, url: str, log_file) -> "Server":
        server = super().__new__(cls, url)
        server._log_file = log_file
        return server

    def log(self) -> str:
        self._log_file.seek(0)
        return self._log_file.read()

    def problems(self) -> list[str]:
        """Lines of the log that name an exception or an error."""
        return [line for line in self.log().splitlines() if PROBLEM.search(line)]

    def thread_stacks(self) -> str:
        """Every thread's stack, as the server dumps it into its log on SIGUSR1 (a server whose
        setup script registered faulthandler for it: sessions_warm.py)."""
        before = len(self.log())
        os.kill(self.pid, signal.SIGUSR1)
        time.sleep(2)
        return self.log()[before:] or "(nothing dumped)"

    def assert_clean(self, after: str = "") -> None:
        """Fail, with the log's tail, when it names any exception or error."""
        assert not self.problems(), (f"the server logged exceptions{' after ' + after if after else ''}:\n"
                                     + self.log()[-6000:])


@contextlib.contextmanager
def serve(app: str | Path = "app.py", env: dict | None = None, timeout_s: float = 300.0,
          setup: bool | str = True) -> Iterator[Server]:
    """`panel serve app` on a free 127.0.0.1 port (from the repository root), with `make serve`'s
    warm-up script (or the script `setup` names; none if False); yields its URL and log (Server). On exit the server is
    stopped, and the test fails if its log names an exception or error (Server.assert_clean)."""
    port = free_port()
    # The log goes to a file: a pipe nobody reads fills up and stalls the server mid-test.
    log_file = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "panel"), "serve", str(app),
                             *(["--setup", "spikeviz/dashboard/warm.py" if setup is True else str(setup)]
                               if setup else []),
                             "--address", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                            # this checkout's spikeviz, whichever one the environment installed
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    server = Server(f"http://127.0.0.1:{port}", log_file)
    server.pid = proc.pid
    failed = False
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.3).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"panel serve exited: {server.log()}")
                if time.time() > deadline:
                    pytest.fail("panel serve did not start listening")
                time.sleep(0.3)
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        # Stopped as a service manager stops it (Bokeh shuts down on SIGTERM), so that what the
        # app removes at exit is removed.
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        text = server.log()
        log_file.close()
        if failed:   # the server's side of a failed test, in its captured output
            print(f"--- panel serve log, last 6000 characters ---\n{text[-6000:]}")
    problems = [line for line in text.splitlines() if PROBLEM.search(line)]
    assert not problems, f"the server logged exceptions:\n{text[-6000:]}"


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (Debian's), skipping the test when Playwright is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            # Pages closed as a person closes a tab (the page's websocket says "going away"):
            # a browser killed with its pages open cut a websocket mid-message, and the server's
            # asyncio logged the unread WebSocketClosedError of that write.
            for context in b.contexts:
                for page in context.pages:
                    page.close()
            b.close()


def card(page, key: str) -> str:
    """Value of a readout card (locators pierce Panel's shadow roots)."""
    texts = page.locator(f".sv-readout #sv-{key} .v").all_inner_texts()   # read at once (see status)
    return texts[0] if texts else ""


_ERRORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def record_errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, as they come (BokehJS logs a patch it
    cannot apply to the console, without raising)."""
    errors = _ERRORS.setdefault(page, [])
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def wait_until(page, condition, timeout_s: float = 180.0, what: str = "") -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}; the page shows F1 {card(page, 'f1')!r}, "
                        f"status {status(page)!r}, error line {error_line(page)!r}; its console errors: "
                        f"{_ERRORS.get(page, 'not recorded')}")
        page.wait_for_timeout(250)


def status(page) -> str | None:
    """The status line's text (None before it is drawn)."""
    # The Str pane's text lives in its shadow root. Read at once: an element that goes between a
    # count and a read would make inner_text wait for it until its timeout.
    texts = page.locator(".sv-status pre").all_inner_texts()
    return texts[0] if texts else None


def error_line(page) -> str:
    """The dashboard's error alert, if shown (its text lives in the pane's shadow root)."""
    alert = page.locator(".alert-danger")
    if not (alert.count() and alert.first.is_visible()):
        return ""
    return " ".join(alert.first.locator("p").all_inner_texts())   # read at once (see status)


def idle(page) -> bool:
    """An evaluation is shown and no job is running (the status line is empty)."""
    return bool(card(page, "f1")) and (status(page) or "").strip() == ""


RASTERS = (".sv-overview", ".sv-real", ".sv-generated", ".sv-probabilities")


def drawn(page) -> bool:
    """Every raster plot is shown."""
    return all(page.locator(f"{r} canvas").count() and page.locator(f"{r} canvas").first.is_visible()
               for r in RASTERS)


def window_x_ranges(page) -> dict[str, str]:
    """The id of each window raster's x range, by the start of the plot's title."""
    return page.evaluate("""() => Object.fromEntries(Array.from(Bokeh.documents[0].all_models)
        .filter(m => m.x_range && m.renderers && m.title && m.title.text)
        .map(m => [m.title.text.split(' ')[0], m.x_range.id]))""")
