"""The opening page of a plain `panel serve app.py`: shown within a second or two of the first
request, while the full page (spikeviz.dashboard.app: torch, HoloViews, datashader, numba, 5-7 s
of imports on 2 cores, and datashader compiling its kernels) is imported in the background and
then put into the same document.

It is the page's template with the opening view's overview and real rasters and a note that the
page is loading. The view is chosen by the full page's own functions (the bundled session, the
checkpoint offered first, evaluation.stretch.setup's units, order and window), which need no
torch; its rasters are drawn here with NumPy, as the full page's datashader draws them (counts
per pixel, histogram-equalised). Its imports are Panel's, Bokeh's, NumPy's and the data layer's
(tests/test_dashboard_opening.py checks it).

The full page's module is the one spikeviz module imported on first use here (as the command
line's are, docs/architecture.md): importing it is what the opening page is there to hide."""
from __future__ import annotations

import asyncio
import html
import importlib
import sys
import threading
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import BoxAnnotation
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from ..data.recording import Recording
from ..errors import SpikevizError
from ..evaluation.stretch import N_UNITS, Stretch, checkpoint_source, setup
from ..models.header import read_spec
from . import style
from .cache import SHARED_CACHE
from .jobs import post
from .spread import spread
from .sources import bundled_names, checkpoint_choices, default_checkpoint, opened_recording, session_domain, within_roots
from .window import default_window, test_split_s

FULL_PAGE = "spikeviz.dashboard.app"
PICTURES = ("overview", "real")   # the opening view's rasters known before any prediction
WIDTH = 1100                      # pixels of a picture (the browser scales it to the page)
_IMPORTING = threading.Lock()     # held while FULL_PAGE is being imported


def first_view(params: dict[str, Any]) -> tuple[Recording, Stretch] | None:
    """The recording and binned window the full page opens on with `params` (DashboardState's
    choices): a bundled session (the first by default), its checkpoint (the first offered for the
    session's domain) and unit order, the default window. None for what the opening page does not
    draw (a file on disk, a baseline or fitted generator, another window): the full page draws it."""
    if set(params) - {"session", "checkpoint", "unit_order"} or params.get("unit_order") == "random":
        return None
    names = bundled_names()
    name = params.get("session", names[0])
    checkpoints = {c.name: c for c in checkpoint_choices()}
    chosen = params.get("checkpoint") or getattr(default_checkpoint(checkpoints.values(), session_domain(name)), "name", None)
    if name not in names or chosen not in checkpoints:
        return None
    recording, _ = opened_recording({"name": name}, SHARED_CACHE)   # the full page finds it cached
    spec = read_spec(checkpoints[chosen].path)
    su = setup(spec, recording, unit_order=params.get("unit_order", "auto"), window_s=default_window(recording),
               n_units=N_UNITS, find_source=lambda meta: checkpoint_source(within_roots(meta)))
    return recording, su.model_stretch


def raster_rgba(times: np.ndarray, rows: np.ndarray, bounds: tuple[float, float, float, float], cmap: list[str],
                height: int, width: int = WIDTH) -> np.ndarray:
    """Spikes at (time, row) as an RGBA picture of bounds (x0, y0, x1, y1), rows top-down, as
    shading.rgba_image has datashader draw them: spike counts per pixel, spread as it spreads them
    (spread.spread); colours between cmap's ends histogram-equalised (eq_hist), empty pixels clear."""
    x0, y0, x1, y1 = bounds
    counts, _, _ = np.histogram2d(rows, times, bins=(height, width), range=((y0, y1), (x0, x1)))
    counts = spread(counts)
    drawn = counts > 0
    rgba = np.zeros((height, width, 4), np.uint8)
    if drawn.any():
        values = np.sort(counts[drawn])
        cdf = np.searchsorted(values, counts[drawn], side="right") / len(values)
        low = cdf.min()
        level = (cdf - low) / (1.0 - low) if low < 1.0 else np.ones_like(cdf)
        ends = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in (cmap[0], cmap[-1])], float)
        rgba[drawn, :3] = np.round(ends[0] + level[:, None] * (ends[1] - ends[0])).astype(np.uint8)
        rgba[drawn, 3] = 255
    return np.flipud(rgba)


def pictures_of(recording: Recording, stretch: Stretch) -> dict[str, dict]:
    """The overview (every spike, recorded unit order, the test split and window boxed) and the
    real raster (the window's target bins, model column order) as picture_plot draws them."""
    def picture(name: str, times, rows, bounds, ylabel: str, spans=()) -> dict:
        cmap, title, xlabel = style.RASTER_STYLES[name]
        height = style.RASTER_HEIGHTS[name]
        return {"rgba": raster_rgba(times, rows, bounds, cmap, height), "bounds": bounds, "title": title,
                "height": height, "xlabel": xlabel, "ylabel": ylabel, "spans": list(spans)}

    rows = np.repeat(np.arange(recording.n_units, dtype=np.float64), recording.spike_counts)
    times = np.concatenate(recording.spike_times) if recording.n_units else np.zeros(0)
    (a, b), (c, d) = test_split_s(recording), (stretch.start_s, stretch.start_s + stretch.duration_s)
    bins, columns = np.nonzero(stretch.targets)
    # The overview spans its spikes, as the full page's plot of them does (HoloViews' data range).
    extent = (times.min(), rows.min(), times.max(), rows.max()) if len(times) else (0.0, -0.5, recording.duration_s, 0.5)
    return {"overview": picture("overview", times, rows, tuple(map(float, extent)),
                                style.SESSION_UNIT_LABEL, [style.SPANS["test"] | {"left": a, "right": b},
                                                           style.SPANS["window"] | {"left": c, "right": d}]),
            "real": picture("real", c + bins * stretch.bin_ms / 1000.0, columns.astype(np.float64),
                            (c, -0.5, d, stretch.X.shape[1] - 0.5), style.UNIT_LABEL)}


def picture_plot(picture: dict) -> pn.pane.Bokeh:
    """A picture (pictures_of) as a plain Bokeh image: the same title, height and axes as the page's."""
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
    try:
        view = first_view(params)
    except SpikevizError:   # the full page says what is wrong, where its controls can mend it
        view = None
    sidebar, main = opening_page(None if view is None else pictures_of(*view))
    page = style.template(sidebar, main).servable(title="spikeviz")
    closed = threading.Event()
    pn.state.on_session_destroyed(lambda ctx: closed.set())

    def fill(module) -> None:
        if not closed.is_set():
            with set_curdoc(doc):
                module.fill(sidebar, main, **params)

    loop = asyncio.get_running_loop()

    def load() -> None:
        with _IMPORTING:
            module = importlib.import_module(FULL_PAGE)
        post(loop, doc, lambda: fill(module), closed.is_set)

    pn.state.onload(lambda: threading.Thread(target=load, name="spikeviz-page-import", daemon=True).start())
    return page
