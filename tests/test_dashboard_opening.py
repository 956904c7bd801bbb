"""The opening page of a plain `panel serve app.py` (spikeviz/dashboard/opening.py): light
imports, the full page's view drawn as the full page draws it, and in a browser its pictures
before the full page."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import param
import pytest

from spikeviz.dashboard import opening

from .browser import browser_marks, chromium, drawn, idle, record_errors, serve, wait_until

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "holoviews", "datashader", "numba", "xarray", "spikeviz.dashboard.app")


def test_the_opening_page_loads_none_of_the_full_pages_imports():
    # What a plain server's first request runs before the opening page is shown: app.py's import,
    # the view's choice and pictures, the page.
    code = ("import json, sys\nfrom spikeviz.dashboard import serve, opening\n"
            "opening.opening_page(opening.pictures_of(*opening.first_view({})))\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert json.loads(out.stdout) == []


@pytest.fixture(scope="module")
def view():
    return opening.first_view({})


def test_the_opening_view_is_the_full_pages(view):
    """Units, their order and the window read from the checkpoint's header are those the page's
    plan chooses with the loaded model (evaluation.stretch.setup both), for the page's defaults."""
    from spikeviz.dashboard import compute, sources
    from spikeviz.dashboard.window import default_window

    recording, stretch = view
    name = sources.bundled_names()[0]
    shown, _ = sources.opened_recording({"name": name}, compute.SHARED_CACHE)
    assert recording is shown   # the full page finds it in the shared cache
    chosen = sources.default_checkpoint(sources.checkpoint_choices(), sources.session_domain(name))
    planned = compute.plan(recording, default_window(recording), compute.Generator(chosen.name, chosen.path),
                           data_key=(name,), cache=compute.LRUCache()).stretch
    assert stretch.bins == planned.bins and stretch.unit_order == planned.unit_order
    np.testing.assert_array_equal(stretch.unit_ids, planned.unit_ids)
    np.testing.assert_array_equal(stretch.X, planned.X)


def test_the_pictures_are_the_full_pages(view):
    """NumPy draws what datashader draws for the full page (same pixels, colours within a shade)."""
    from spikeviz.dashboard import shading, style, views

    recording, stretch = view
    pictures = opening.pictures_of(recording, stretch)
    for name, element in (("overview", views.overview_points(recording)), ("real", views.real_points(stretch))):
        cmap, title, _ = style.RASTER_STYLES[name]
        picture = pictures[name]
        x0, y0, x1, y1 = picture["bounds"]
        rgba, _ = shading.rgba_image(element, cmap, (x0, x1), (y0, y1), opening.WIDTH, style.RASTER_HEIGHTS[name])
        mine = picture["rgba"].astype(int)
        assert picture["title"] == title and mine.shape == rgba.shape
        assert ((mine[..., 3] > 0) == (rgba[..., 3] > 0)).mean() > 0.999
        both = (mine[..., 3] > 0) & (rgba[..., 3] > 0)
        assert np.abs(mine[..., :3] - rgba[..., :3].astype(int))[both].mean() < 2.0
    assert [s["left"] for s in pictures["overview"]["spans"]][1] == stretch.start_s


def test_the_spread_follows_the_density():
    """A sparse raster's single spikes are spread to stay visible (datashader's dynspread); a
    dense one is not."""
    sparse = opening.raster_rgba(np.array([5.0]), np.array([5.0]), (0, 0, 10, 10), ["#9a9a9a", "#000000"], 40, 40)
    assert (sparse[..., 3] > 0).sum() == 49   # 7 x 7: spread by 3 pixels
    t = np.repeat(np.linspace(0, 10, 200), 20)
    dense = opening.raster_rgba(t, np.tile(np.arange(20.0), 200), (0, 0, 10, 19), ["#9a9a9a", "#000000"], 20, 40)
    assert (dense[..., 3] > 0).all()


def test_choices_it_does_not_draw_are_left_to_the_full_page():
    assert opening.first_view({"path": "x.nwb"}) is None
    assert opening.first_view({"session": "no such session"}) is None
    assert opening.first_view({"unit_order": "random"}) is None


@browser_marks[0]
@browser_marks[1]
def test_a_plain_server_shows_the_view_before_the_full_page():
    with chromium() as browser, serve("app.py", setup=False) as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors = record_errors(page)
        page.goto(f"{url}/app", wait_until="commit")
        first = page.locator(".sv-opening .sv-real canvas").first
        first.wait_for(state="visible", timeout=60_000)
        assert page.locator(".sv-opening .sv-overview canvas").first.is_visible()
        assert page.locator(".sv-session").count() == 0   # the full page's controls come later
        wait_until(page, lambda: idle(page) and drawn(page), 300, "the full page")
        assert page.locator(".sv-opening").count() == 0 and errors == []


class _Page(param.Parameterized):
    """What warm_after watches on a page's state."""

    frame = param.Parameter(None)
    error = param.String("")


@pytest.mark.parametrize("outcome", [{"frame": object()}, {"error": "no such file"}])
def test_a_plain_server_warms_once_its_first_page_has_drawn_or_refused(monkeypatch, outcome):
    """Compiling datashader's kernels begun when the page was shown held the interpreter while
    the first page evaluated: it waits for the page's first trains (or its refusal) and a few
    seconds more, once."""
    from spikeviz.dashboard import app

    calls = []
    done = threading.Event()
    monkeypatch.setattr(app, "warm_process", lambda: (calls.append(1), done.set()))
    monkeypatch.setattr(app, "WARM_DELAY_S", 1.0)
    page = _Page()
    app.warm_after(page)
    assert not done.wait(0.3)
    page.param.update(outcome)
    assert not done.wait(0.5)   # not at once: the browser is still drawing the first rasters
    assert done.wait(10)
    page.param.update(frame=object(), error="again")
    time.sleep(0.3)
    assert calls == [1]
