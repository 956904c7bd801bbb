"""The opening page of a plain `panel serve app.py` (spikeviz/dashboard/opening.py): light
imports, the stored opening view, and in a browser its picture before the full page."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from spikeviz.dashboard import opening

from .browser import browser_marks, chromium, drawn, idle, record_errors, serve, wait_until

HEAVY = ("torch", "holoviews", "datashader", "numba", "xarray", "spikeviz.dashboard.app")


def picture(height: int = 100) -> dict:
    return {"rgba": np.arange(4 * 8 * 4, dtype=np.uint8).reshape(4, 8, 4), "bounds": [0.0, 0.0, 2.0, 1.0],
            "title": "t", "height": height, "xlabel": "", "ylabel": "unit",
            "spans": [{"left": 0.5, "right": 1.0, "fill_alpha": 0.2}]}


def test_the_opening_page_loads_none_of_the_full_pages_imports():
    # What a plain server's first request runs before the opening page is shown: app.py's import,
    # the stored view's look-up, the page with its pictures.
    code = ("import json, sys\nfrom spikeviz.dashboard import serve, opening\n"
            "from tests.test_dashboard_opening import picture\n"
            "opening.opening_page(opening.stored(opening.opening_key({})))\n"
            "opening.opening_page({'overview': picture(), 'real': picture()})\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=opening.PACKAGE.parent)
    assert json.loads(out.stdout) == []


def test_stored_pictures_come_back_and_the_key_follows_the_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    key = opening.opening_key({})
    assert key is not None and key != opening.opening_key({"seed": 1})
    assert opening.stored(key) is None
    opening.store(key, {"real": picture(220)})
    back = opening.stored(key)
    assert list(back) == ["real"] and back["real"]["height"] == 220
    np.testing.assert_array_equal(back["real"]["rgba"], picture()["rgba"])
    sidebar, main = opening.opening_page(back)
    assert [o.css_classes for o in main.objects[1:]] == [["sv-real"]]


@browser_marks[0]
@browser_marks[1]
def test_a_plain_server_shows_the_stored_view_before_the_full_page():
    key = opening.opening_key({})
    with chromium() as browser:
        if opening.stored(key) is None:   # these sources' first server: its full page stores the view
            with serve("app.py", setup=False) as url:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"{url}/app")
                # (Closed while the server writes to it, a page makes Tornado log a closed stream.)
                wait_until(page, lambda: idle(page) and drawn(page) and opening.stored(key) is not None, 300,
                           "the opening view stored")
                page.close()
        with serve("app.py", setup=False) as url:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            errors = record_errors(page)
            page.goto(f"{url}/app", wait_until="commit")
            first = page.locator(".sv-opening .sv-real canvas").first
            first.wait_for(state="visible", timeout=60_000)
            assert page.locator(".sv-session").count() == 0   # the full page's controls come later
            wait_until(page, lambda: idle(page) and drawn(page), 300, "the full page")
            assert page.locator(".sv-opening").count() == 0 and errors == []
