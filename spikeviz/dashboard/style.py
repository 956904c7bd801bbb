"""The page's look, shared by the opening page (dashboard/opening.py) and the full one: its
template, title, colours, raster styles, style sheets and Panel extensions. Light: Panel only."""
from __future__ import annotations

import panel as pn
from bokeh.palettes import Viridis256

TITLE = "spikeviz: real vs generated spike trains"
ACCENT = "#1f4e9c"
SIDEBAR_WIDTH = 340
RASTER_HEIGHTS = {"overview": 210, "real": 220, "generated": 220, "probabilities": 250}   # pixels
UNIT_LABEL, SESSION_UNIT_LABEL = "unit (model column)", "unit (recorded order)"
# Short enough for a laptop-wide plot (the joint draws: their checkbox and the page's description).
GENERATED_TITLE = "Generated spikes (teacher-forced: by the draw rule; free-running: the model's own)"
# Each raster's colours, title and x label (empty: its time dimension's).
RASTER_STYLES = {
    "overview": (["#b5b5b5", "#000000"], "Whole session (test split shaded blue, evaluated window red)",
                 "session time (s)"),
    "real": (["#9a9a9a", "#000000"], "Real spikes in the evaluated window", ""),
    "generated": (["#f1a9a0", "#8b0000"], GENERATED_TITLE, ""),
    "probabilities": (Viridis256, "Predicted spike probability (max per pixel)", "time (s)"),
}
# The overview's boxes: the test split and the evaluated window.
SPANS = {"test": dict(fill_color="#1f4e9c", fill_alpha=0.13, line_alpha=0),
         "window": dict(fill_color="#c0392b", fill_alpha=0.2, line_color="#c0392b", line_alpha=0.9)}
CSS = """
.sv-cards {display: flex; flex-wrap: wrap; gap: 6px; margin: 2px 0 4px 0;}
.sv-card {border: 1px solid #dfe3ea; border-radius: 6px; padding: 4px 10px; min-width: 84px;
          background: #fafbfd;}
.sv-card .k {font-size: 10.5px; color: #5b6472; text-transform: uppercase; letter-spacing: .04em;}
.sv-card .v {font-size: 19px; font-weight: 600; color: #1d2633; font-variant-numeric: tabular-nums;}
.sv-card .s {font-size: 11px; color: #6b7482;}
.sv-note {font-size: 12px; color: #5b6472;}
"""
WAITING_CSS = """
.sv-waiting {border: 1px dashed #c4cad4; border-radius: 6px; background: #f4f6f9; color: #5b6472;
             padding: 6px 12px; font-size: 13px;}
.sv-stale {opacity: 0.3; filter: grayscale(1); pointer-events: none;}
.sv-hidden {visibility: hidden;}
"""


def extension() -> None:
    """The page's Panel extensions and style sheets: loaded with the page's first HTML, so the
    full page can be put into an opening page already shown."""
    pn.extension("tabulator", "filedropper", sizing_mode="stretch_width", raw_css=[CSS, WAITING_CSS],
                 notifications=False)


def template(sidebar: pn.viewable.Viewable, main: pn.viewable.Viewable) -> pn.template.BootstrapTemplate:
    """The offline Bootstrap template around one sidebar column and one main column."""
    return pn.template.BootstrapTemplate(title=TITLE, sidebar=[sidebar], main=[main],
                                         header_background=ACCENT, sidebar_width=SIDEBAR_WIDTH)
