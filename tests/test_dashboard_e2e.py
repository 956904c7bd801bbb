"""The served dashboard in headless Chromium: offline, no console errors, threshold and session follow."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .browser import (browser_marks, card, chromium, drawn, idle, record_errors, serve, wait_until,
                      window_x_ranges)

SCREENS = Path("/tmp/spikeviz_screens")
VIVO = "invivo_NYU-40_2021-04-14_001"

pytestmark = browser_marks


def settled(page, target, timeout_s: float = 30.0) -> bytes:
    """A screenshot of `target` (a locator, or the page) once two taken 400 ms apart agree: the
    plots have drawn what they were sent."""
    shots = [target.screenshot()]

    def same_as_before() -> bool:
        page.wait_for_timeout(400)
        shots.append(target.screenshot())
        return shots[-1] == shots[-2]

    wait_until(page, same_as_before, timeout_s, "the view to settle")
    return shots[-1]


@pytest.fixture(scope="module")
def server():
    with serve("app.py") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_page_offline_threshold_and_session(browser, server, tmp_path):
    # (browser first: the server stops before the browser disconnects, so it never writes to
    # a closed socket after the test)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    requests, errors = [], record_errors(page)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server}/app", timeout=90_000)
    wait_until(page, lambda: idle(page) and drawn(page), what="the first evaluation")
    # The window's plots share one time axis (linked zoom); the overview has its own.
    wait_until(page, lambda: {"Real", "Generated", "Predicted", "Whole"} <= set(window_x_ranges(page)),
               30, "every raster's title")
    x = window_x_ranges(page)
    assert x["Real"] == x["Generated"] == x["Predicted"] != x["Whole"], x

    local = re.compile(rf"^(https?|wss?)://127\.0\.0\.1:{server.rsplit(':', 1)[1]}/|^(blob|data):")
    assert [u for u in requests if not local.match(u)] == []
    assert errors == []

    # Generated trains are sampled by default; the pooled rule draws p >= the threshold.
    generated = page.locator(".sv-generated").first
    page.locator(".sv-draw select").first.select_option(label="pooled threshold")
    wait_until(page, lambda: idle(page), 60, "the pooled draw")
    f1_before, raster_before = card(page, "f1"), settled(page, generated)
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    SCREENS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "dashboard.png", SCREENS / "dashboard_vitro.png")

    # Move the threshold by typing into the slider's number box, once: F1 and the raster follow.
    threshold = page.locator(".sv-threshold input").first
    threshold.fill(f"{float(threshold.input_value()) * 1.8:.4f}")
    threshold.press("Enter")
    wait_until(page, lambda: card(page, "f1") != f1_before, 60, "the F1 readout to change")
    wait_until(page, lambda: generated.screenshot() != raster_before, 30, "the generated raster to follow")

    page.set_viewport_size({"width": 1500, "height": 1750})   # the template scrolls inside: show all
    for tab in ("Curves", "Firing statistics", "Results"):
        page.locator(".bk-tab", has_text=tab).first.click()   # the tab's header
        settled(page, page)
        page.screenshot(path=str(SCREENS / f"dashboard_{tab.split()[-1].lower()}.png"), full_page=True)
    page.locator(".bk-tab", has_text="Rasters").first.click()
    page.set_viewport_size({"width": 1500, "height": 1000})
    assert errors == []

    # Direction vivo->vivo: the in vivo session and a vivo model. A threshold typed at once, while
    # the new evaluation runs, must survive it; no bh figure may show once the page says in vivo.
    real_before = card(page, "spikes-predicted--real")
    page.get_by_text("vivo->vivo", exact=True).first.click()
    threshold.fill("0.0123")
    threshold.press("Enter")
    page.get_by_text("458,082 spikes").first.wait_for(timeout=120_000)
    seen = []
    while not (idle(page) and card(page, "spikes-predicted--real") not in ("", real_before)):
        seen.append(card(page, "spikes-predicted--real"))
        assert real_before not in seen, "bh results shown under the in vivo labels"
        assert len(seen) < 1200, "timed out waiting for the in vivo evaluation"
        page.wait_for_timeout(150)
    settled(page, page)   # nothing left to arrive that could overwrite the typed threshold
    assert card(page, "threshold") == "0.0123"
    page.screenshot(path=str(tmp_path / "dashboard_vivo.png"), full_page=True)
    shutil.copy(tmp_path / "dashboard_vivo.png", SCREENS / "dashboard_vivo.png")
    assert [u for u in requests if not local.match(u)] == []
    assert errors == []
