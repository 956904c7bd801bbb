"""The opening page of a plain `panel serve app.py`: shown within a second or two of the first
request, while the full page (spikeviz.dashboard.app: torch, HoloViews, datashader, numba, 5-7 s
of imports on 2 cores) is imported in the background and then put into the same document.

It is the page's template with the opening view's overview and real rasters, as an earlier
server drew them (stored in the disk cache under a key of everything they follow from: the
package's sources, the bundled sessions, the shipped checkpoints and the page's parameters), and
a note that the page is loading; without a stored picture, the note alone. Its imports are
Panel's, Bokeh's and NumPy's only (tests/test_dashboard_opening.py checks it).

The full page's module is the one spikeviz module imported on first use here (as the command
line's are, docs/architecture.md): importing it is what the opening page is there to hide."""
from __future__ import annotations

import asyncio
import hashlib
import html
import importlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import BoxAnnotation
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from .._version import __version__
from ..data.catalog import data_dir, models_dir, sessions
from ..data.store import Cache, content_key
from ..errors import SpikevizError
from . import style
from .jobs import post

FULL_PAGE = "spikeviz.dashboard.app"
PICTURES = ("overview", "real")   # the opening view's rasters known before any prediction
FORMAT = 2                        # of the stored entry
PACKAGE = Path(__file__).resolve().parents[1]
_IMPORTING = threading.Lock()     # held while FULL_PAGE is being imported
log = logging.getLogger(__name__)


def _stat(path: Path) -> tuple:
    try:
        s = path.stat()
        return str(path), s.st_size, s.st_mtime_ns
    except OSError:
        return str(path), None, None


def opening_key(params: dict[str, Any]) -> str | None:
    """The disk-cache key of the opening view's pictures for a page made with `params`: a
    change to any input they follow from (a source file of the package, the session catalog or
    a session file, a shipped checkpoint) gives a new key. None when the catalog is unreadable."""
    try:
        files = [data_dir() / "catalog.json", *(s.path for s in sessions())]
    except SpikevizError:
        return None
    models = models_dir()
    files += sorted(models.glob("*.safetensors")) if models.is_dir() else []
    sources = hashlib.sha256(repr([_stat(p) for p in sorted(PACKAGE.rglob("*.py"))]).encode()).hexdigest()
    return content_key("opening-view", FORMAT, __version__, sources, [_stat(p) for p in files],
                       sorted(params.items()))


def store(key: str, pictures: dict[str, dict]) -> None:
    """Keep the opening view's pictures ({name: {"rgba": top-down RGBA array, "bounds": (x0, y0,
    x1, y1), "title", "height", "xlabel", "ylabel"}}); the description is written last, so a
    reader finds every picture it names."""
    cache = Cache()
    for name, picture in pictures.items():
        cache.put_array(key, f"{name}.npy", np.ascontiguousarray(picture["rgba"], np.uint8))
    cache.put_json(key, {name: {k: v for k, v in p.items() if k != "rgba"} for name, p in pictures.items()},
                   "opening.json")


def stored(key: str | None) -> dict[str, dict] | None:
    """The pictures `store` kept under `key`, or None (any of them missing or corrupt)."""
    if key is None:
        return None
    cache = Cache()
    described = cache.get_json(key, "opening.json")
    if not described:
        return None
    pictures = {}
    for name, picture in described.items():
        rgba = cache.get_array(key, f"{name}.npy", mmap=False)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            return None
        pictures[name] = {**picture, "rgba": rgba}
    return pictures


def picture_plot(picture: dict) -> pn.pane.Bokeh:
    """A stored raster as a plain Bokeh image: the same title, height and axes as the page's."""
    x0, y0, x1, y1 = picture["bounds"]
    plot = figure(height=picture["height"], min_height=picture["height"], sizing_mode="stretch_width",
                  title=picture["title"], x_range=(x0, x1), y_range=(y0, y1), tools="",
                  toolbar_location=None, x_axis_label=picture["xlabel"], y_axis_label=picture["ylabel"])
    rgba = np.ascontiguousarray(np.flipud(picture["rgba"]))   # Bokeh's rows go bottom-up
    for span in picture.get("spans", []):
        plot.add_layout(BoxAnnotation(**span))
    plot.image_rgba(image=[rgba.view(np.uint32).reshape(rgba.shape[:2])], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0)
    return pn.pane.Bokeh(plot, sizing_mode="stretch_width")


def opening_page(pictures: dict[str, dict] | None) -> tuple[pn.Column, pn.Column]:
    """The sidebar and main columns of the opening page."""
    note = "Loading the page (its controls and evaluation follow in a few seconds)…"
    sidebar = pn.Column(pn.pane.HTML(f'<div class="sv-waiting">{html.escape(note)}</div>'),
                        sizing_mode="stretch_width", css_classes=["sv-opening"])
    shown = [pn.Column(picture_plot(pictures[name]), sizing_mode="stretch_width", css_classes=[f"sv-{name}"])
             for name in PICTURES if pictures and name in pictures]
    main = pn.Column(pn.pane.HTML(f'<div class="sv-waiting">{html.escape(note)}</div>'), *shown,
                     sizing_mode="stretch_width", css_classes=["sv-opening"])
    return sidebar, main


def full_page_ready() -> bool:
    """The full page's module is imported (by `make serve`'s --setup, or an earlier page)."""
    return FULL_PAGE in sys.modules and not _IMPORTING.locked()


def serve(**params) -> pn.template.BootstrapTemplate:
    """The page for this browser session: the full one when its module is imported; else the
    opening page, filled with the full page (`app.fill`) in the same document once the browser
    has shown it and the module is imported."""
    doc = pn.state.curdoc
    if full_page_ready() or doc is None or doc.session_context is None:   # nothing to wait for
        return importlib.import_module(FULL_PAGE).serve(**params)
    style.extension()
    key = opening_key(params)
    sidebar, main = opening_page(stored(key))
    page = style.template(sidebar, main).servable(title="spikeviz")
    closed = threading.Event()
    pn.state.on_session_destroyed(lambda ctx: closed.set())

    def fill(module) -> None:
        if not closed.is_set():
            with set_curdoc(doc):
                module.fill(sidebar, main, key, **params)

    loop = asyncio.get_running_loop()

    def load() -> None:
        with _IMPORTING:
            module = importlib.import_module(FULL_PAGE)
        post(loop, doc, lambda: fill(module), closed.is_set)

    pn.state.onload(lambda: threading.Thread(target=load, name="spikeviz-page-import", daemon=True).start())
    return page
