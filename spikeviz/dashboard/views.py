"""HoloViews views built from the state's data: rasters, ROC/PR curves, firing statistics."""
from __future__ import annotations

import datashader as ds
import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (element options need a loaded backend)
import numpy as np
import pandas as pd
import panel as pn
from holoviews.operation.datashader import dynspread, rasterize

from . import compute
from .compute import Evaluation, Frame
from .state import DashboardState

TIME = hv.Dimension("time", label="time", unit="s")
UNIT = hv.Dimension("unit", label="unit (model column)")
SESSION_TIME = hv.Dimension("session_time", label="session time", unit="s")
SESSION_UNIT = hv.Dimension("session_unit", label="unit (recorded order)")
COLORS = {"real": "#222222", "generated": "#c0392b", "rate": "#8e9aaf", "ewma": "#2a9d8f",
          "glm": "#e9a23b", "model": "#1f4e9c", "chance": "#9e9e9e"}
CURVE_POINTS = 1500     # a curve is drawn from at most this many of its points


def color_of(name: str) -> str:
    """Baselines keep their colours; any checkpoint is the model."""
    return COLORS.get(name, COLORS["model"])


# --- rasters ------------------------------------------------------------------------------------

def overview_points(recording) -> hv.Points:
    df = (compute.raster_points(recording) if recording is not None
          else pd.DataFrame({"time": [], "unit": []}))
    return hv.Points(df.rename(columns={"time": "session_time", "unit": "session_unit"}),
                     [SESSION_TIME, SESSION_UNIT])


def window_span(window: tuple[float, float]) -> hv.VSpan:
    return hv.VSpan(*window)


def _window_points(ev: Evaluation | None, spikes: tuple[np.ndarray, np.ndarray] | None) -> hv.Points:
    """Spikes of the evaluated window; its extent is declared so that an empty raster (no spike at
    a high threshold) keeps the shared time axis on the window."""
    if ev is None or spikes is None:
        return hv.Points([], [TIME, UNIT])
    s = ev.stretch
    points = hv.Points(compute.spike_points(*spikes, s.start_s, s.bin_ms), [TIME, UNIT])
    return points.redim.range(time=(s.start_s, s.start_s + s.duration_s), unit=(-0.5, ev.P.shape[1] - 0.5))


def real_points(ev: Evaluation | None) -> hv.Points:
    return _window_points(ev, None if ev is None else ev.real)


def generated_points(frame: Frame | None, ev: Evaluation | None) -> hv.Points:
    return _window_points(ev, None if frame is None else frame.spikes)


def probability_image(ev: Evaluation | None) -> hv.Image:
    vdim = hv.Dimension("p", label="p(spike)")
    if ev is None:
        return hv.Image(np.zeros((2, 2)), [TIME, UNIT], vdim)
    s = ev.stretch
    n = ev.P.shape[1]
    # Array rows run top-down: flip so column 0 sits at the bottom, as in the rasters.
    return hv.Image(ev.P.T[::-1], [TIME, UNIT], vdim,
                    bounds=(s.start_s, -0.5, s.start_s + s.duration_s, n - 0.5))


def raster_opts(cmap, title: str, height: int, xlabel: str = "") -> dict:
    return dict(cmap=cmap, cnorm="eq_hist", height=height, responsive=True, title=title,
                active_tools=["xwheel_zoom", "pan"], default_tools=["pan", "xwheel_zoom", "box_zoom", "reset", "save"],
                colorbar=True, colorbar_opts={"width": 8}, xlabel=xlabel, framewise=True,
                min_height=height, clabel="")


def _raster(points, cmap: list[str], title: str, height: int, xlabel: str = ""):
    """Datashaded raster: counts per pixel, single spikes spread to stay visible when zoomed out."""
    return dynspread(rasterize(points, aggregator=ds.count()),
                     threshold=0.6, max_px=3, shape="square").opts(**raster_opts(cmap, title, height, xlabel))


def overview(state: DashboardState, recording, live: list) -> pn.pane.HoloViews:
    """Whole session; rebuilt per recording so its axes start at the new data's extent."""
    plot = _raster(overview_points(recording), ["#b5b5b5", "#000000"],
                   "Whole session (test split shaded blue, evaluated window red)", 210, "session time (s)")
    if recording is None:
        return pn.pane.HoloViews(plot, linked_axes=False)
    test = hv.VSpan(*compute.test_split_s(recording)).opts(color="#1f4e9c", alpha=0.13, line_alpha=0)
    window = hv.DynamicMap(pn.bind(window_span, state.param.window)).opts(
        color="#c0392b", alpha=0.2, line_color="#c0392b", line_alpha=0.9)
    live.append(window)
    return pn.pane.HoloViews(plot * test * window, linked_axes=False)


def detail(state: DashboardState, ev: Evaluation | None, live: list) -> pn.Column:
    """Real, generated and probabilities of one evaluation; only the generated raster follows the
    threshold (through the frame), everything else is fixed until the next evaluation."""
    real = _raster(real_points(ev), ["#9a9a9a", "#000000"], "Real spikes in the evaluated window", 220)
    frame = pn.bind(lambda f: f if f is not None and f.evaluation is ev else None, state.param.frame)
    title = ("Generated: free-running samples (threshold only scores the teacher-forced predictions)"
             if ev is not None and ev.mode == "free" else "Generated: teacher-forced, p ≥ threshold")
    generated = hv.DynamicMap(pn.bind(generated_points, frame, ev))
    live.append(generated)
    gen = _raster(generated, ["#f1a9a0", "#8b0000"], title, 220)
    probs = rasterize(probability_image(ev), aggregator="max").opts(
        **raster_opts("viridis", "Predicted spike probability (max per pixel)", 250, "time (s)"))
    # Separate panes with the same time and unit dimensions: Panel links their axes.
    return pn.Column(*(pn.pane.HoloViews(p, css_classes=[f"sv-{name}"]) for name, p in
                       (("real", real), ("generated", gen), ("probabilities", probs))),
                     sizing_mode="stretch_width")


def rebuilt(build, state: DashboardState, ref) -> pn.viewable.Viewable:
    """`build(state, value, live)` again on every change of `ref`.

    The DynamicMaps a build lists in `live` watch the state; HoloViews never unwatches them, so
    they are dropped here before the next build (else every old plot, and the evaluation it
    holds, would stay alive for the whole session).
    """
    live: list[hv.DynamicMap] = []

    def make(value):
        for dmap in live:
            for stream in dmap.streams:
                if isinstance(stream, hv.streams.Params):
                    stream.unwatch()
        live.clear()
        return build(state, value, live)

    return pn.panel(pn.bind(make, ref))


def rasters(state: DashboardState) -> pn.viewable.Viewable:
    """The whole-session overview, then real, generated and probabilities sharing one time axis."""
    return pn.Column(rebuilt(overview, state, state.param.recording),
                     rebuilt(detail, state, state.param.evaluation), sizing_mode="stretch_width")


# --- curves ------------------------------------------------------------------------------------

def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    n = len(arrays[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).astype(int))
    return [a[idx] for a in arrays]


def roc_curves(ev: Evaluation | None) -> hv.Overlay:
    chance = hv.Curve([(0, 0), (1, 1)], "FPR", "TPR", label="chance").opts(
        color=COLORS["chance"], line_dash="dashed")
    if ev is None:
        return hv.Overlay([chance])
    curves = []
    for name, h in ev.hists.items():
        fpr, tpr, _ = h.roc_curve()
        fpr, tpr = _thin(fpr, tpr)
        curves.append(hv.Curve((fpr, tpr), "FPR", "TPR", label=f"{name}  AUC {h.roc_auc:.3f}").opts(
            color=color_of(name), line_width=3 if name == ev.generator.name else 1.6))
    return hv.Overlay([*curves, chance])


def pr_curves(ev: Evaluation | None) -> hv.Overlay:
    if ev is None:
        return hv.Overlay([hv.Curve([], "recall", "precision")])
    curves = []
    for name, h in ev.hists.items():
        precision, recall, _ = h.pr_curve()
        recall, precision = _thin(recall, precision)
        curves.append(hv.Curve((recall, precision), "recall", "precision",
                               label=f"{name}  AP {h.pr_auc:.3f}").opts(
            color=color_of(name), line_width=3 if name == ev.generator.name else 1.6))
    base = ev.hist.base_rate
    curves.append(hv.Curve([(0, base), (1, base)], "recall", "precision",
                           label=f"chance  {base:.4f}").opts(color=COLORS["chance"], line_dash="dashed"))
    return hv.Overlay(curves)


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
    marker = dict(color="#111111", size=11, marker="circle", line_color="white", line_width=1.5)
    common = dict(responsive=True, height=360, legend_position="bottom_right", show_grid=True,
                  tools=["hover"])
    roc = (hv.DynamicMap(pn.bind(roc_curves, state.param.evaluation))
           * hv.DynamicMap(pn.bind(roc_marker, state.param.frame)).opts(**marker)).opts(
        title="ROC (pooled over units and bins)", xlim=(0, 1), ylim=(0, 1), **common)
    roc_zoom = (hv.DynamicMap(pn.bind(roc_curves, state.param.evaluation))
                * hv.DynamicMap(pn.bind(roc_marker, state.param.frame)).opts(**marker)).opts(
        title="ROC at low FPR (log x)", logx=True, xlim=(1e-4, 1), ylim=(0, 1),
        **(common | {"legend_position": "top_left"}))
    pr = (hv.DynamicMap(pn.bind(pr_curves, state.param.evaluation))
          * hv.DynamicMap(pn.bind(pr_marker, state.param.frame)).opts(**marker)).opts(
        title="Precision-recall", xlim=(0, 1), ylim=(0, 1), **(common | {"legend_position": "top_right"}))
    units = hv.DynamicMap(pn.bind(unit_auc_histogram, state.param.evaluation)).opts(
        title="Per-unit ROC-AUC of the generator", responsive=True, height=360, color="#1f4e9c",
        line_color="white", framewise=True)
    grid = pn.GridBox(*(pn.pane.HoloViews(p, sizing_mode="stretch_width", linked_axes=False)
                        for p in (roc, pr, roc_zoom, units)), ncols=2, sizing_mode="stretch_width")
    return grid


# --- firing statistics -------------------------------------------------------------------------

def rate_scatter(ev: Evaluation | None, frame: Frame | None) -> hv.Overlay:
    dims = [hv.Dimension("real", label="real rate", unit="Hz"),
            hv.Dimension("generated", label="generated rate", unit="Hz")]
    if ev is None or frame is None:
        return hv.Overlay([hv.Scatter([], *dims)])
    real, gen = ev.real_stats.rates_hz, frame.stats.rates_hz
    lo = max(min(real[real > 0].min(initial=1.0), gen[gen > 0].min(initial=1.0)) / 2, 1e-2)
    hi = max(real.max(initial=1.0), gen.max(initial=1.0)) * 2
    floor = lo  # silent units sit on the axis floor instead of vanishing from a log plot
    pts = hv.Scatter((np.maximum(real, floor), np.maximum(gen, floor), np.arange(len(real))), dims[0],
                     [dims[1], "column"])
    return hv.Overlay([hv.Curve([(lo, lo), (hi, hi)], *dims).opts(color=COLORS["chance"], line_dash="dashed"),
                       pts.opts(color=COLORS["generated"], size=6, alpha=0.7, tools=["hover"])]).opts(
        xlim=(lo, hi), ylim=(lo, hi))


def isi_curves(ev: Evaluation | None, frame: Frame | None) -> hv.Overlay:
    dims = [hv.Dimension("isi", label="inter-spike interval", unit="ms"), hv.Dimension("fraction")]
    if ev is None or frame is None:
        return hv.Overlay([hv.Curve([], *dims)])
    edges = ev.real_stats.isi_edges_ms
    mid = np.sqrt(edges[1:] * edges[:-1])
    return hv.Overlay([
        hv.Curve((mid, ev.real_stats.isi_pdf), *dims, label="real").opts(color=COLORS["real"], interpolation="steps-mid"),
        hv.Curve((mid, frame.stats.isi_pdf), *dims, label="generated").opts(color=COLORS["generated"], interpolation="steps-mid")])


def population_rate(ev: Evaluation | None, frame: Frame | None) -> hv.Overlay:
    dims = [TIME, hv.Dimension("rate", label="population rate per unit", unit="Hz")]
    if ev is None or frame is None:
        return hv.Overlay([hv.Curve([], *dims)])
    step = ev.real_stats.pop_ms / 1000.0
    t_real = ev.stretch.start_s + np.arange(len(ev.real_stats.pop_rate_hz)) * step
    t_gen = ev.stretch.start_s + np.arange(len(frame.stats.pop_rate_hz)) * step
    return hv.Overlay([
        hv.Curve((t_real, ev.real_stats.pop_rate_hz), *dims, label="real").opts(color=COLORS["real"], line_width=1),
        hv.Curve((t_gen, frame.stats.pop_rate_hz), *dims, label="generated").opts(color=COLORS["generated"], line_width=1, alpha=0.8)])


def correlation_image(stats, title: str) -> hv.Image:
    n = 2 if stats is None else stats.n_units
    C = np.zeros((n, n)) if stats is None else np.where(np.eye(n, dtype=bool), np.nan, stats.corr)
    return hv.Image((np.arange(n), np.arange(n), C), ["unit i", "unit j"],
                    hv.Dimension("r", label="count correlation")).relabel(title)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:.4g}"


def summary_table(ev: Evaluation | None, frame: Frame | None) -> pd.DataFrame:
    """Medians real vs generated, and the distances of stats.compare_stats."""
    if ev is None or frame is None:
        return pd.DataFrame(columns=["statistic", "real", "generated"])
    real, gen = ev.real_stats.summary(), frame.stats.summary()
    rows = [(label, real[key], gen[key]) for key, label in (
        ("mean_rate_hz", "mean rate (Hz)"), ("median_cv", "median ISI CV"),
        ("median_fano", "median Fano factor (100 ms)"), ("synchrony", "synchrony (≥2 units in a bin)"),
        ("mean_corr", "mean pairwise correlation (10 ms)"))]
    rows.append(("spikes", frame.op.real_spikes, int(frame.spikes[0].size)))
    rows += [(f"distance: {k}", None, v) for k, v in frame.distances.items()
             if k in ("rate_ks", "cv_ks", "fano_ks", "isi_tv", "corr_mad", "rate_corr")]
    return pd.DataFrame([(label, _fmt(a), _fmt(b)) for label, a, b in rows],
                        columns=["statistic", "real", "generated"])


def statistics(state: DashboardState) -> pn.viewable.Viewable:
    ev, fr = state.param.evaluation, state.param.frame
    common = dict(responsive=True, height=320, show_grid=True)
    rates = hv.DynamicMap(pn.bind(rate_scatter, ev, fr)).opts(
        title="Per-unit rate, generated vs real", logx=True, logy=True, framewise=True, **common)
    isi = hv.DynamicMap(pn.bind(isi_curves, ev, fr)).opts(
        title="ISI distribution (pooled)", logx=True, framewise=True, legend_position="top_right", **common)
    pop = hv.DynamicMap(pn.bind(population_rate, ev, fr)).opts(
        title="Population rate (10 ms bins)", framewise=True, legend_position="top_right",
        **(common | {"tools": ["xwheel_zoom"], "active_tools": ["xwheel_zoom"]}))
    corr_opts = dict(cmap="RdBu_r", clim=(-0.1, 0.1), frame_width=320, frame_height=320, colorbar=True,
                     xaxis=None, yaxis=None, tools=["hover"])
    corr_real = hv.DynamicMap(pn.bind(lambda e: correlation_image(e and e.real_stats, "real"), ev)).opts(
        title="Count correlations, real (10 ms)", **corr_opts)
    corr_gen = hv.DynamicMap(pn.bind(lambda f: correlation_image(f and f.stats, "generated"), fr)).opts(
        title="Count correlations, generated", **corr_opts)
    table = pn.widgets.Tabulator(pn.bind(summary_table, ev, fr), show_index=False, disabled=True,
                                 sizing_mode="stretch_width", layout="fit_columns")
    hv_pane = lambda obj: pn.pane.HoloViews(obj, sizing_mode="stretch_width", linked_axes=False)  # noqa: E731
    return pn.Column(
        pn.Row(hv_pane(rates), hv_pane(isi), sizing_mode="stretch_width"),
        hv_pane(pop),
        pn.Row(*(pn.pane.HoloViews(c, linked_axes=False, sizing_mode="fixed") for c in (corr_real, corr_gen))),
        pn.Column("#### Summary, real vs generated, and distances (0 = identical)", table),
        sizing_mode="stretch_width")
