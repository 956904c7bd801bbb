"""The current view as a PNG, drawn with matplotlib from the same data the page shows (no browser)."""
from __future__ import annotations

import io

import numpy as np

from .compute import Evaluation
from .frames import Frame
from .views import COLORS, color_of

RASTER_S = 5.0   # seconds of raster in the figure: a whole window is a grey wall at print size


def figure_png(ev: Evaluation, frame: Frame, title: str = "", dpi: int = 130) -> bytes:
    """Rasters (first RASTER_S of the window), ROC and PR with the operating point, rates and ISIs."""
    # Imported here: matplotlib is 0.7 s of a fresh server's first page, which never exports.
    # A Figure of its own, not pyplot's: no global state shared by the sessions' threads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8.5), layout="constrained")
    grid = fig.add_gridspec(3, 3)
    s = ev.stretch
    n = int(min(RASTER_S, s.duration_s) * 1000 / s.bin_ms)
    for row, (label, (t, u), color) in enumerate((("real", ev.real, COLORS["real"]),
                                                  ("generated", frame.spikes, COLORS["generated"]))):
        ax = fig.add_subplot(grid[row, :2])
        keep = t < n
        ax.scatter(s.start_s + t[keep] * s.bin_ms / 1000, u[keep], s=1.5, marker="|", c=color, lw=0.6)
        ax.set(ylabel=f"{label}: unit", xlim=(s.start_s, s.start_s + n * s.bin_ms / 1000),
               ylim=(-0.5, ev.P.shape[1] - 0.5))
    ax.set_xlabel("time (s)")
    roc, pr = fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[1, 2])
    for name, h in ev.hists.items():
        width = 2.5 if name == ev.generator.name else 1.2
        fpr, tpr, _ = h.roc_curve()
        roc.plot(fpr, tpr, color=color_of(name), lw=width, label=f"{name} {h.roc_auc:.3f}")
        precision, recall, _ = h.pr_curve()
        pr.plot(recall, precision, color=color_of(name), lw=width, label=f"{name} {h.pr_auc:.3f}")
    roc.plot([0, 1], [0, 1], "--", color=COLORS["chance"], lw=1)
    pr.axhline(ev.hist.base_rate, ls="--", color=COLORS["chance"], lw=1)
    op = frame.op
    roc.plot(op.fpr, op.recall, "o", color="black", ms=7)
    pr.plot(op.recall, op.precision, "o", color="black", ms=7)
    roc.set(xlabel="FPR", ylabel="TPR", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title=f"PR  (threshold {op.threshold:.4g}, F1 {op.f1:.3f})")
    for ax in (roc, pr):
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "upper right")
    rates = fig.add_subplot(grid[2, 0])
    real, gen = ev.real_stats.rates_hz, frame.stats.rates_hz
    floor = max(min(real[real > 0].min(initial=1), gen[gen > 0].min(initial=1)) / 2, 1e-2)
    rates.loglog(np.maximum(real, floor), np.maximum(gen, floor), "o", ms=3, color=COLORS["generated"])
    lim = [floor, max(real.max(initial=1), gen.max(initial=1)) * 2]
    rates.plot(lim, lim, "--", color=COLORS["chance"], lw=1)
    rates.set(xlabel="real rate (Hz)", ylabel="generated rate (Hz)", title="per-unit rate")
    isi = fig.add_subplot(grid[2, 1])
    edges = ev.real_stats.isi_edges_ms
    isi.stairs(ev.real_stats.isi_pdf, edges, color=COLORS["real"], label="real")
    isi.stairs(frame.stats.isi_pdf, edges, color=COLORS["generated"], label="generated")
    isi.set(xscale="log", xlabel="ISI (ms)", ylabel="fraction", title="ISI distribution")
    isi.legend(fontsize=8)
    corr = fig.add_subplot(grid[2, 2])
    C = np.where(np.eye(len(frame.stats.corr), dtype=bool), np.nan, frame.stats.corr)
    im = corr.imshow(C, cmap="RdBu_r", vmin=-0.3, vmax=0.3, origin="lower")
    corr.set(title="generated count correlations", xticks=[], yticks=[])
    fig.colorbar(im, ax=corr, shrink=0.8)
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
