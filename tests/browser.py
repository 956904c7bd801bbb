"""Helpers shared by the browser tests: a `panel serve` subprocess on 127.0.0.1, headless Chromium,
and readers of the dashboard's readout."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Mark a module's tests with `pytestmark = browser_marks`.
browser_marks = [pytest.mark.browser,
                 pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: str | Path = "app.py", env: dict | None = None, timeout_s: float = 300.0) -> Iterator[str]:
    """`panel serve app` on a free 127.0.0.1 port (from the repository root); yields its URL.
    On exit the server is stopped and its log must hold no traceback."""
    port = free_port()
    # The log goes to a file: a pipe nobody reads fills up and stalls the server mid-test.
    log_file = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "panel"), "serve", str(app),
                             "--setup", "spikeviz/dashboard/warm.py", "--address", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                            env=None if env is None else {**os.environ, **env})

    def log() -> str:
        log_file.seek(0)
        return log_file.read()

    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.3).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"panel serve exited: {log()}")
                if time.time() > deadline:
                    pytest.fail("panel serve did not start listening")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        text = log()
        log_file.close()
    assert "Traceback" not in text, text[-4000:]


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (Debian's), skipping the test when Playwright is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def card(page, key: str) -> str:
    """Value of a readout card (locators pierce Panel's shadow roots)."""
    cards = page.locator(f".sv-readout #sv-{key} .v")
    return cards.first.inner_text() if cards.count() else ""


def wait_until(page, condition, timeout_s: float = 180.0, what: str = "") -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(250)


def idle(page) -> bool:
    """An evaluation is shown and no job is running (the status line is empty)."""
    status = page.locator(".sv-status pre")   # the Str pane's text lives in its shadow root
    return bool(card(page, "f1")) and (status.count() == 0 or status.first.inner_text().strip() == "")
