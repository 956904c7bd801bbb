"""HoloViews views built from the state's data: rasters, ROC/PR curves, firing statistics."""
from __future__ import annotations

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (element options need a loaded backend)
import numpy as np
import pandas as pd
import panel as pn
import xarray as xr
from bokeh.models import BoxAnnotation
from holoviews.operation.downsample import downsample1d

from . import compute
from .compute import Evaluation
from .frames import Frame
from .shading import drawn_once, shared
from .window import test_split_s
from .state import DashboardState
from .style import RASTER_HEIGHTS, RASTER_STYLES, SESSION_UNIT_LABEL, SPANS, UNIT_LABEL

TIME = hv.Dimension("time", label="time", unit="s")
UNIT = hv.Dimension("unit", label=UNIT_LABEL)
SESSION_TIME = hv.Dimension("session_time", label="session time", unit="s")
SESSION_UNIT = hv.Dimension("session_unit", label=SESSION_UNIT_LABEL)
COLORS = {"real": "#222222", "generated": "#c0392b", "rate": "#8e9aaf", "ewma-tuned": "#2a9d8f",
          "glm-coupled": "#e9a23b", "model": "#1f4e9c", "chance": "#9e9e9e"}
CURVE_POINTS = 1500     # a curve is drawn from at most this many of its points
# Canvas, not WebGL: the rasters are images and the curves are thinned, and where WebGL has no GPU
# (remote desktops, headless browsers) its software emulation slowed the first paint.
hv.renderer("bokeh").webgl = False


def color_of(name: str) -> str:
    """Baselines keep their colours; any checkpoint is the model."""
    return COLORS.get(name, COLORS["model"])


# --- waiting (its style sheet: style.WAITING_CSS) ---------------------------------------------

def waiting(state: DashboardState, what: str, name: str) -> pn.Column:
    """A note standing in for views while `state.<name>` is being computed: what they will show,
    the running step and a progress bar."""
    def text(status: str, error: str) -> str:
        step = error and f"stopped: {error}" or status or "queued"
        return f"<b>{what}</b>: waiting for the evaluation ({step})"

    # A widget, not an HTML pane: Panel re-resolves a pane's stylesheets on every update, and
    # in a tab that is not shown (detached) that repointed the page's shared stylesheets at its CDN.
    return pn.Column(
        pn.widgets.StaticText(value=pn.bind(text, state.param.status, state.param.error),
                              sizing_mode="stretch_width"),
        pn.indicators.Progress(value=state.param.progress, bar_color="secondary", height=8,
                               sizing_mode="stretch_width", active=state.param.busy),
        css_classes=["sv-waiting"], visible=pn.bind(lambda value: value is None, state.param[name]),
        sizing_mode="stretch_width")


def once_ready(state: DashboardState, what: str, name: str, build, css_classes: list[str] | None = None
               ) -> pn.Column:
    """`build()`'s view under a waiting note while `state.<name>` is None: hidden until it first
    has data and while another recording loads, greyed out while newer data of the same recording
    is computed, so old results never pass for new ones. The view is built with the page and
    never replaced: its plots follow the state.
    (Adding plots to a page already shown lost models on their way to the browser, and a Bokeh
    plot laid out while hidden with `visible=False` did not show later updates: hidden here
    keeps its place.)"""
    view = pn.Column(build(), sizing_mode="stretch_width", css_classes=["sv-hidden"])

    def follow(*_) -> None:
        if getattr(state, name) is not None:
            view.css_classes = []
        elif state.recording is None:   # a session switch: nothing of the last session stays on screen
            view.css_classes = ["sv-hidden"]
        elif view.css_classes != ["sv-hidden"]:
            view.css_classes = ["sv-stale"]

    # The recording too: a switch during a recomputation (the view already greyed, its value
    # already None) hides it, or the last session's plot stayed greyed under the new one's.
    state.param.watch(follow, list(dict.fromkeys([name, "recording"])))
    follow()
    return pn.Column(waiting(state, what, name), view, sizing_mode="stretch_width",
                     css_classes=css_classes or [])


# --- rasters ------------------------------------------------------------------------------------

def overview_points(recording) -> hv.Points:
    """Every spike of the session as a (time s, unit row) point."""
    if recording is None or not recording.spike_counts.sum():
        return hv.Points(pd.DataFrame({"session_time": [], "session_unit": []}),
                         [SESSION_TIME, SESSION_UNIT])
    units = np.repeat(np.arange(recording.n_units, dtype=np.float64), recording.spike_counts)
    return hv.Points(pd.DataFrame({"session_time": np.concatenate(recording.spike_times),
                                   "session_unit": units}), [SESSION_TIME, SESSION_UNIT])


def marked_spans(state: DashboardState):
    """A plot hook marking the test split (blue) and the evaluated window (red) on the overview as
    two Bokeh boxes that follow the state: moving them redraws nothing (as HoloViews spans, each
    change re-rendered the whole-session raster)."""
    def hook(plot, element) -> None:
        if "spans" in plot.handles:   # hooks run on every update
            return
        test, window = BoxAnnotation(**SPANS["test"]), BoxAnnotation(**SPANS["window"])
        plot.state.add_layout(test)
        plot.state.add_layout(window)
        plot.handles["spans"] = (test, window)

        def move(*events) -> None:
            recording = state.recording
            if recording is not None:   # being reloaded: the boxes stay, greyed out with the plot
                (a, b), (c, d) = test_split_s(recording), state.window
                test.update(left=a, right=b)
                window.update(left=c, right=d)

        state.param.watch(move, ["recording", "window"])
        move()
    return hook


def _window_points(stretch: compute.Stretch | None, spikes: tuple[np.ndarray, np.ndarray] | None) -> hv.Points:
    """Spikes of the evaluated window; its extent is declared so that an empty raster (no spike at
    a high threshold) keeps the shared time axis on the window."""
    if stretch is None or spikes is None:
        return hv.Points([], [TIME, UNIT])
    s = stretch
    t, u = spikes     # bins and columns, drawn at bin starts
    points = hv.Points(pd.DataFrame({"time": s.start_s + t * (s.bin_ms / 1000.0),
                                     "unit": u.astype(np.float64)}), [TIME, UNIT])
    return points.redim.range(time=(s.start_s, s.start_s + s.duration_s), unit=(-0.5, s.X.shape[1] - 0.5))


def real_points(stretch: compute.Stretch | None) -> hv.Points:
    """The real spikes of the window: known before any prediction."""
    return _window_points(stretch, None if stretch is None else np.nonzero(stretch.targets))


def generated_points(frame: Frame | None) -> hv.Points:
    return _window_points(None if frame is None else frame.evaluation.stretch,
                          None if frame is None else frame.spikes)


def probability_image(ev: Evaluation | None) -> hv.Image:
    """The generator's probabilities, a row per model column and a pixel per bin (centres)."""
    if ev is None:   # never seen: the view is hidden until the first evaluation
        P, times = np.zeros((2, 2), np.float32), np.arange(2.0)
    else:
        s = ev.stretch
        P = ev.P
        times = s.start_s + (np.arange(len(P)) + 0.5) * (s.bin_ms / 1000.0)
    units = np.arange(P.shape[1], dtype=np.float64)
    if len(units) == 1:   # one row tells HoloViews and datashader no spacing: two half rows
        P, units = np.repeat(P, 2, axis=1), np.array([-0.25, 0.25])
    return hv.Image(xr.DataArray(P.T, coords={"unit": units, "time": times}, dims=("unit", "time"), name="p"),
                    [TIME, UNIT], hv.Dimension("p", label="p(spike)"))


def raster_opts(title: str, height: int, xlabel: str = "") -> dict:
    return dict(height=height, responsive=True, title=title,
                active_tools=["xwheel_zoom", "pan"], default_tools=["pan", "xwheel_zoom", "box_zoom", "reset", "save"],
                xlabel=xlabel, framewise=True, min_height=height)


def _extent(element) -> tuple:
    return tuple(element.range(d) for d in element.kdims)


def streamed(state: DashboardState, name: str, make, ranges: hv.streams.RangeXY | None = None,
             drawn_from=lambda value: value) -> hv.DynamicMap:
    """A DynamicMap of `make(state.<name>)`, sent through a Pipe whenever the state changes
    `drawn_from(state.<name>)`, the part of it the view shows (a frame's generated trains are
    the same object under a new threshold, and their views are not redrawn).

    Rasterized plots aggregate over the range of their RangeXY stream, which holds the previous
    view: it is reset first when the data's extent changes (a new window or session), so the new
    data is drawn whole and the framewise plot re-ranges; a new threshold keeps the zoom."""
    value = getattr(state, name)
    pipe = hv.streams.Pipe(data=make(value))
    shown = {"from": None if value is None else drawn_from(value)}

    def send(event) -> None:
        if event.new is None:   # being recomputed: the view keeps (greyed out) what it shows
            return
        source = drawn_from(event.new)
        if source is shown["from"]:
            return
        shown["from"] = source
        new = make(event.new)
        if ranges is not None and _extent(new) != _extent(pipe.data):
            ranges.reset()
        pipe.send(new)

    state.param.watch(send, name)
    return hv.DynamicMap(lambda data: data, streams=[pipe])


def kept(make):
    """`make` for a bound table: while its input is being recomputed (None) the previous rows
    stay, the same object, so the table is not re-rendered empty."""
    last: dict = {}

    def table(value):
        if value is not None or "rows" not in last:
            last["rows"] = make(value)
        return last["rows"]

    return table


def _raster(state: DashboardState, name: str, make, cmap, title: str, height: int,
            xlabel: str = "", drawn_from=lambda value: value):
    """`make(state.<name>)` drawn by shaded_raster, again whenever the plot is zoomed or resized."""
    ranges = hv.streams.RangeXY()
    return streamed(state, name, shared(make, drawn_from), ranges, drawn_from).apply(
        drawn_once, cmap=cmap, streams=[ranges, hv.streams.PlotSize()]).opts(**raster_opts(title, height, xlabel))


def raster_plots(state: DashboardState) -> dict[str, hv.DynamicMap]:
    """The whole-session overview, then real, generated and probabilities sharing one time axis.

    Every plot is built once and follows the state through its DynamicMap: new data is sent to
    the plots in the page, they are never replaced (a replaced plot can receive an update meant
    for the old one)."""
    h, style = RASTER_HEIGHTS, RASTER_STYLES

    def raster(name: str, source: str, make, **kwargs) -> hv.DynamicMap:
        cmap, title, xlabel = style[name]
        return _raster(state, source, make, cmap, title, h[name], xlabel, **kwargs)

    return {"overview": raster("overview", "recording", overview_points).opts(hooks=[marked_spans(state)]),
            "real": raster("real", "stretch", real_points),
            "generated": raster("generated", "frame", generated_points, drawn_from=lambda frame: frame.spikes),
            "probabilities": raster("probabilities", "evaluation", probability_image)}


def rasters(state: DashboardState) -> pn.viewable.Viewable:
    """The raster plots, each under its waiting note, all in the page's first document; separate
    panes with the same time and unit dimensions, so Panel links their axes (the overview's are
    its own)."""
    plots = raster_plots(state)

    def pane(name: str, **options) -> pn.pane.HoloViews:
        return pn.pane.HoloViews(plots[name], sizing_mode="stretch_width", **options)

    return pn.Column(
        once_ready(state, "Whole session", "recording", lambda: pane("overview", linked_axes=False),
                   ["sv-overview"]),
        once_ready(state, "Real spikes in the window", "stretch", lambda: pane("real"), ["sv-real"]),
        once_ready(state, "Generated spikes", "frame", lambda: pane("generated"), ["sv-generated"]),
        once_ready(state, "Predicted spike probabilities", "evaluation", lambda: pane("probabilities"),
                   ["sv-probabilities"]),
        sizing_mode="stretch_width")


# --- curves ------------------------------------------------------------------------------------

def _curve_layers(ev: Evaluation | None, curve, dims: list[str]) -> list[hv.Curve]:
    """One curve per role, the same labels with or without an evaluation: HoloViews matches a
    streamed overlay's layers by label, and a new label would add glyphs to the page on every
    update. (The AUCs are in the readout and the Results tab.) A baseline that generates is drawn
    as the generator; its own layer stays empty."""
    def points(h) -> list | tuple:
        return [] if h is None else curve(h)

    generator = None if ev is None else ev.generator.name
    layers = [hv.Curve(points(ev and ev.hist), *dims, label="generator").opts(
        color=color_of(generator or "model"), line_width=3)]
    for name in compute.BASELINES:
        h = ev.hists.get(name) if ev is not None and name != generator else None
        layers.append(hv.Curve(points(h), *dims, label=name).opts(color=color_of(name), line_width=1.6))
    return layers


def roc_curves(ev: Evaluation | None) -> hv.Overlay:
    chance = hv.Curve([(0, 0), (1, 1)], "FPR", "TPR", label="chance").opts(
        color=COLORS["chance"], line_dash="dashed")
    return hv.Overlay([*_curve_layers(ev, lambda h: h.roc_curve()[:2], ["FPR", "TPR"]), chance])


def pr_curves(ev: Evaluation | None) -> hv.Overlay:
    base = 0.0 if ev is None else ev.hist.base_rate
    return hv.Overlay([*_curve_layers(ev, lambda h: h.pr_curve()[1::-1], ["recall", "precision"]),
                       hv.Curve([(0, base), (1, base)], "recall", "precision", label="chance").opts(
                           color=COLORS["chance"], line_dash="dashed")])


def thinned(curves: hv.DynamicMap) -> hv.DynamicMap:
    """At most CURVE_POINTS points per curve reach the browser (HoloViews' LTTB downsampling)."""
    return downsample1d(curves, width=CURVE_POINTS, streams=[])


def roc_marker(frame: Frame | None) -> hv.Points:
    data = [] if frame is None else [(frame.op.fpr, frame.op.recall)]
    return hv.Points(data, ["FPR", "TPR"])


def pr_marker(frame: Frame | None) -> hv.Points:
    data = [] if frame is None else [(frame.op.recall, frame.op.precision)]
    return hv.Points(data, ["recall", "precision"])


def unit_auc_histogram(ev: Evaluation | None) -> hv.Histogram:
    roc = np.array([]) if ev is None else ev.unit_hists.roc_auc
    roc = roc[np.isfinite(roc)]
    counts, edges = np.histogram(roc, np.linspace(0.3, 1.0, 29))
    return hv.Histogram((edges, counts), kdims=hv.Dimension("auc", label="per-unit ROC-AUC"), vdims="units")


def curves(state: DashboardState) -> pn.viewable.Viewable:
    return once_ready(state, "ROC and PR curves", "evaluation", lambda: curve_grid(state))


def curve_grid(state: DashboardState) -> pn.GridBox:
    marker = dict(color="#111111", size=11, marker="circle", line_color="white", line_width=1.5)
    common = dict(responsive=True, height=360, legend_position="bottom_right", show_grid=True,
                  tools=["hover"])
    roc_lines = thinned(streamed(state, "evaluation", roc_curves))
    roc = (roc_lines * streamed(state, "frame", roc_marker).opts(**marker)).opts(
        title="ROC (pooled over units and bins)", xlim=(0, 1), ylim=(0, 1), **common)
    roc_zoom = (roc_lines * streamed(state, "frame", roc_marker).opts(**marker)).opts(
        title="ROC at low FPR (log x)", logx=True, xlim=(1e-4, 1), ylim=(0, 1),
        **(common | {"legend_position": "top_left"}))
    pr = (thinned(streamed(state, "evaluation", pr_curves))
          * streamed(state, "frame", pr_marker).opts(**marker)).opts(
        title="Precision-recall", xlim=(0, 1), ylim=(0, 1), **(common | {"legend_position": "top_right"}))
    units = streamed(state, "evaluation", unit_auc_histogram).opts(
        title="Per-unit ROC-AUC of the generator", responsive=True, height=360, color="#1f4e9c",
        line_color="white", framewise=True)
    return pn.GridBox(*(pn.pane.HoloViews(p, linked_axes=False, sizing_mode="stretch_width")
                        for p in (roc, pr, roc_zoom, units)), ncols=2, sizing_mode="stretch_width")
