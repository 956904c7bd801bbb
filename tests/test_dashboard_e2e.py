"""The served dashboard in headless Chromium: offline, no console errors, threshold and session follow."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SCREENS = Path("/tmp/spikeviz_screens")
VIVO = "invivo_NYU-40_2021-04-14_001"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "panel"), "serve", "app.py",
                             "--address", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.3).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"panel serve exited: {proc.stdout.read()}")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    log = proc.communicate(timeout=10)[0]
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
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
    return bool(card(page, "f1")) and page.locator(".sv-status").first.inner_text().strip() == ""


def test_page_offline_threshold_and_session(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/app", timeout=90_000)
    wait_until(page, lambda: idle(page), what="the first evaluation")
    page.wait_for_timeout(2000)   # last plot updates

    local = re.compile(rf"^(https?|wss?)://127\.0\.0\.1:{server.rsplit(':', 1)[1]}/|^(blob|data):")
    assert [u for u in requests if not local.match(u)] == []
    assert errors == []

    generated = page.locator(".sv-generated").first
    f1_before, raster_before = card(page, "f1"), generated.screenshot()
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    SCREENS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "dashboard.png", SCREENS / "dashboard_vitro.png")

    # Move the threshold by typing into the slider's number box: F1 and the raster must follow.
    threshold = page.locator(".sv-threshold input").first
    threshold.fill(f"{float(threshold.input_value()) * 1.8:.4f}")
    threshold.press("Enter")
    wait_until(page, lambda: card(page, "f1") != f1_before, 30, "the F1 readout to change")
    page.wait_for_timeout(2000)
    assert generated.screenshot() != raster_before

    page.set_viewport_size({"width": 1500, "height": 1750})   # the template scrolls inside: show all
    for tab in ("Curves", "Firing statistics", "Results"):
        page.get_by_text(tab, exact=True).first.click()
        page.wait_for_timeout(2500)
        page.screenshot(path=str(SCREENS / f"dashboard_{tab.split()[-1].lower()}.png"), full_page=True)
    page.get_by_text("Rasters", exact=True).first.click()
    page.set_viewport_size({"width": 1500, "height": 1000})
    assert errors == []

    # The whole in vivo session: overview and a new evaluation.
    real_before = card(page, "spikes-predicted--real")
    page.locator(".sv-session select").first.select_option(VIVO)
    page.get_by_text("458,082 spikes").first.wait_for(timeout=120_000)
    wait_until(page, lambda: idle(page) and card(page, "spikes-predicted--real") != real_before,
               what="the in vivo evaluation")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(tmp_path / "dashboard_vivo.png"), full_page=True)
    shutil.copy(tmp_path / "dashboard_vivo.png", SCREENS / "dashboard_vivo.png")
    assert [u for u in requests if not local.match(u)] == []
    assert errors == []
