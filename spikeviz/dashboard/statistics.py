"""The firing-statistics tab: real against generated rates, ISIs, population rate and its distribution and
autocorrelation, units per bin, correlations and the fidelity table."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from ..measures.population import (ACF_MAX_MS, QUANTILES, SYNC_FRACTIONS, SYNC_MS, autocorrelation, quantile_key,
                          rate_distribution, sync_key)
from .frames import Frame
from .state import DashboardState
from .views import COLORS, TIME, kept, once_ready, streamed


def _against_diagonal(points, dims, vdims, span: tuple[float, float] | None, **opts) -> hv.Overlay:
    """Scattered (real, generated) points over the dashed identity line, both axes on `span`; the
    same layers without data (span None): an update never adds glyphs to the page."""
    # Limits and framewise on the elements: set on the overlay or its DynamicMap, HoloViews kept
    # the ranges of the first (empty) frame.
    limits = {} if span is None else dict(xlim=span, ylim=span, framewise=True)
    diagonal = [] if span is None else [(span[0], span[0]), (span[1], span[1])]
    return hv.Overlay([hv.Curve(diagonal, *dims).opts(color=COLORS["chance"], line_dash="dashed", **limits),
                       hv.Scatter(points, dims[0], vdims).opts(color=COLORS["generated"], **opts, **limits)])


def rate_scatter(frame: Frame | None) -> hv.Overlay:
    dims = [hv.Dimension("real", label="real rate", unit="Hz"),
            hv.Dimension("generated", label="generated rate", unit="Hz")]
    opts = dict(size=6, alpha=0.7, tools=["hover"])
    if frame is None:
        return _against_diagonal([], dims, [dims[1], "column"], None, **opts)
    ev = frame.evaluation
    real, gen = ev.real_stats.rates_hz, frame.stats.rates_hz
    lo = max(min(real[real > 0].min(initial=1.0), gen[gen > 0].min(initial=1.0)) / 2, 1e-2)
    hi = max(real.max(initial=1.0), gen.max(initial=1.0)) * 2
    floor = lo  # silent units sit on the axis floor instead of vanishing from a log plot
    return _against_diagonal((np.maximum(real, floor), np.maximum(gen, floor), np.arange(len(real))), dims,
                             [dims[1], "column"], (lo, hi), **opts)


def _real_and_generated(real, generated, dims, **opts) -> hv.Overlay:
    """A real and a generated curve, labelled the same with or without data."""
    return hv.Overlay([hv.Curve(real, *dims, label="real").opts(color=COLORS["real"], framewise=True, **opts),
                       hv.Curve(generated, *dims, label="generated").opts(color=COLORS["generated"],
                                                                          framewise=True, **opts)])


def isi_curves(frame: Frame | None) -> hv.Overlay:
    dims = [hv.Dimension("isi", label="inter-spike interval", unit="ms"), hv.Dimension("fraction")]
    if frame is None:
        return _real_and_generated([], [], dims, interpolation="steps-mid")
    ev = frame.evaluation
    edges = ev.real_stats.isi_edges_ms
    mid = np.sqrt(edges[1:] * edges[:-1])
    return _real_and_generated((mid, ev.real_stats.isi_pdf), (mid, frame.stats.isi_pdf), dims,
                               interpolation="steps-mid")


def population_rate(frame: Frame | None) -> hv.Overlay:
    dims = [TIME, hv.Dimension("rate", label="population rate per unit", unit="Hz")]
    if frame is None:
        return _real_and_generated([], [], dims, line_width=1)
    ev = frame.evaluation
    step = ev.real_stats.pop_ms / 1000.0
    t_real = ev.stretch.start_s + np.arange(len(ev.real_stats.pop_rate_hz)) * step
    t_gen = ev.stretch.start_s + np.arange(len(frame.stats.pop_rate_hz)) * step
    return _real_and_generated((t_real, ev.real_stats.pop_rate_hz), (t_gen, frame.stats.pop_rate_hz),
                               dims, line_width=1)


def _tail(fraction: np.ndarray) -> np.ndarray:
    """Fractions for a log axis: empty bins left out of the line instead of sent to -inf."""
    return np.where(fraction > 0, fraction, np.nan)


def rate_distribution_curves(frame: Frame | None) -> hv.Overlay:
    """The 10-ms population rate's distribution, tails on a log axis (population.rate_distribution)."""
    dims = [hv.Dimension("rate", label="population rate per unit", unit="Hz"),
            hv.Dimension("fraction", label="fraction of 10-ms bins")]
    if frame is None:
        return _real_and_generated([], [], dims, interpolation="steps-mid")
    real, gen = frame.evaluation.real_stats, frame.stats
    x_r, p_r = rate_distribution(real.pop_rate_hz, real.pop_ms, real.n_units)
    x_g, p_g = rate_distribution(gen.pop_rate_hz, gen.pop_ms, gen.n_units)
    return _real_and_generated((x_r, _tail(p_r)), (x_g, _tail(p_g)), dims, interpolation="steps-mid")


def count_distribution_curves(frame: Frame | None) -> hv.Overlay:
    """How many units spike in a 1-ms bin (Spike-GAN's spike-count distribution), on a log axis."""
    dims = [hv.Dimension("units", label="units spiking in a bin"), hv.Dimension("fraction", label="fraction of bins")]
    if frame is None:
        return _real_and_generated([], [], dims, interpolation="steps-mid")
    hists = [s.pop_count_hist / s.pop_count_hist.sum() for s in (frame.evaluation.real_stats, frame.stats)]
    k = np.arange(len(hists[0]))
    return _real_and_generated((k, _tail(hists[0])), (k, _tail(hists[1])), dims, interpolation="steps-mid")


def autocorrelation_curves(frame: Frame | None) -> hv.Overlay:
    """Autocorrelation of the 10-ms population rate (population.autocorrelation): how long bursts
    last; independent spikes drop to 0 after lag 0."""
    dims = [hv.Dimension("lag", unit="ms"), hv.Dimension("acf", label="autocorrelation")]
    if frame is None:
        return _real_and_generated([], [], dims)
    curves = []
    for s in (frame.evaluation.real_stats, frame.stats):
        acf = autocorrelation(s.pop_rate_hz, int(round(ACF_MAX_MS / s.pop_ms)))
        curves.append((np.arange(1, len(acf)) * s.pop_ms, acf[1:]))
    return _real_and_generated(*curves, dims)


def correlation_scatter(frame: Frame | None) -> hv.Overlay:
    """Each pair's 10-ms count correlation, generated against real: the matrices' similarity."""
    dims = [hv.Dimension("real_r", label="real count correlation"),
            hv.Dimension("generated_r", label="generated count correlation")]
    opts = dict(size=3, alpha=0.4)
    if frame is None:
        return _against_diagonal([], dims, [dims[1]], None, **opts)
    iu = np.triu_indices(frame.stats.n_units, 1)
    real, gen = frame.evaluation.real_stats.corr[iu], frame.stats.corr[iu]
    ok = np.isfinite(real) & np.isfinite(gen)
    real, gen = real[ok], gen[ok]
    span = (min(real.min(initial=0), gen.min(initial=0)), max(real.max(initial=0.1), gen.max(initial=0.1)))
    return _against_diagonal((real, gen), dims, [dims[1]], span, **opts)


def correlation_image(stats, title: str) -> hv.Image:
    n = 2 if stats is None else stats.n_units
    C = np.zeros((n, n)) if stats is None else np.where(np.eye(n, dtype=bool), np.nan, stats.corr)
    return hv.Image((np.arange(n), np.arange(n), C), ["unit i", "unit j"],
                    hv.Dimension("r", label="count correlation")).relabel(title).opts(framewise=True)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:.4g}"


def summary_table(frame: Frame | None) -> pd.DataFrame:
    """Medians real vs generated, and the distances of stats.compare_stats."""
    if frame is None:
        return pd.DataFrame(columns=["statistic", "real", "generated"])
    ev = frame.evaluation
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
    return once_ready(state, "Firing statistics", "frame", lambda: statistics_views(state))


FIDELITY_ROWS = (("count_ratio", "spikes / real"), ("rate_spearman", "per-unit rate Spearman"),
                 ("active_fraction", "real active units that fire"), ("isi_ks", "ISI distance (KS)"),
                 ("median_cv", "median ISI CV"), ("median_fano_100ms", "median Fano factor (100 ms)"),
                 ("corr_similarity_10ms", "pairwise correlation similarity (10 ms)"),
                 ("synchrony", "synchrony (≥2 units in a bin)"),
                 ("corr_similarity_20ms", "pairwise correlation similarity (20 ms)"),
                 ("mean_corr_20ms", "mean pairwise correlation (20 ms)"),
                 ("pop_rate_ks_10ms", "population-rate distribution distance (KS, 10 ms)"),
                 ("pop_rate_w1_10ms", "population-rate distribution distance (Wasserstein / mean rate)"),
                 *((quantile_key(q), f"population rate, {100 * q:g}th percentile (Hz)") for q in QUANTILES),
                 *((sync_key(ms, f), f"bins with ≥{100 * f:g} % of units active ({ms:g} ms)")
                   for ms in SYNC_MS for f in SYNC_FRACTIONS),
                 ("pop_acf_time_ms", "population-rate correlation time (ms, lags ≤500 ms)"),
                 ("pop_acf_mad", "population-rate autocorrelation distance"),
                 ("count_tv_1ms", "units-spiking-per-bin distribution distance (TV)"))


def fidelity_table(frame: Frame | None) -> pd.DataFrame:
    """Generated against real on the window (stats.fidelity_report), beside the real-vs-real
    ceiling (the stretch just before the window) and the rate-matched Poisson floor."""
    columns = ["statistic", "real", "generated", "ceiling (real vs real)", "floor (Poisson)"]
    if frame is None:
        return pd.DataFrame(columns=columns)
    f = frame.fidelity
    entries = [f["real"], f["model"], f["ceiling"] or {}, f["floor"]]
    return pd.DataFrame([(label, *(_fmt(e.get(key)) for e in entries)) for key, label in FIDELITY_ROWS],
                        columns=columns)


def generated(frame: Frame):
    """What the statistics plots are drawn from: the generated trains' statistics (with the real
    ones of the same evaluation), unchanged by a threshold that does not change the trains."""
    return frame.stats


def statistics_views(state: DashboardState) -> pn.Column:
    """Real vs generated firing statistics at the current threshold (all from the frame)."""
    fr = state.param.frame
    common = dict(responsive=True, height=320, show_grid=True)
    rates = streamed(state, "frame", rate_scatter, drawn_from=generated).opts(
        title="Per-unit rate, generated vs real", logx=True, logy=True, **common)
    isi = streamed(state, "frame", isi_curves, drawn_from=generated).opts(
        title="ISI distribution (pooled)", logx=True, legend_position="top_right", **common)
    pop = streamed(state, "frame", population_rate, drawn_from=generated).opts(
        title="Population rate (10 ms bins)", legend_position="top_right",
        **(common | {"tools": ["xwheel_zoom"], "active_tools": ["xwheel_zoom"]}))
    rate_dist = streamed(state, "frame", rate_distribution_curves, drawn_from=generated).opts(
        title="Population-rate distribution (10 ms bins)", logy=True, legend_position="top_right", **common)
    counts = streamed(state, "frame", count_distribution_curves, drawn_from=generated).opts(
        title="Units spiking per 1-ms bin", logy=True, legend_position="top_right", **common)
    acf = streamed(state, "frame", autocorrelation_curves, drawn_from=generated).opts(
        title="Population-rate autocorrelation", legend_position="top_right", **common)
    pairs = streamed(state, "frame", correlation_scatter, drawn_from=generated).opts(
        title="Pairwise count correlations (10 ms), generated vs real", **common)
    corr_opts = dict(cmap="RdBu_r", clim=(-0.1, 0.1), frame_width=320, frame_height=320, colorbar=True,
                     xaxis=None, yaxis=None, tools=["hover"])
    corr_real = streamed(state, "frame", lambda f: correlation_image(f and f.evaluation.real_stats, "real"),
                         drawn_from=lambda f: f.evaluation).opts(
        title="Count correlations, real (10 ms)", **corr_opts)
    corr_gen = streamed(state, "frame", lambda f: correlation_image(f and f.stats, "generated"),
                        drawn_from=generated).opts(
        title="Count correlations, generated", **corr_opts)
    table = pn.widgets.Tabulator(pn.bind(kept(summary_table), fr), show_index=False, disabled=True,
                                 sizing_mode="stretch_width", layout="fit_columns")
    fidelity = pn.widgets.Tabulator(pn.bind(kept(fidelity_table), fr), show_index=False, disabled=True,
                                    sizing_mode="stretch_width", layout="fit_columns")
    hv_pane = lambda obj: pn.pane.HoloViews(obj, sizing_mode="stretch_width", linked_axes=False)  # noqa: E731
    return pn.Column(
        pn.Row(hv_pane(rates), hv_pane(isi), sizing_mode="stretch_width"),
        hv_pane(pop),
        pn.Row(hv_pane(rate_dist), hv_pane(counts), sizing_mode="stretch_width"),
        pn.Row(hv_pane(acf), hv_pane(pairs), sizing_mode="stretch_width"),
        pn.Row(*(pn.pane.HoloViews(c, linked_axes=False, sizing_mode="fixed") for c in (corr_real, corr_gen))),
        pn.Column("#### Fidelity: generated vs real, between the Poisson floor and the real-vs-real "
                  "ceiling (`spikeviz generate --json` reports the same)", fidelity),
        pn.Column("#### Summary, real vs generated, and distances (0 = identical)", table),
        sizing_mode="stretch_width")
