"""The page: sidebar controls, the threshold readout and the tabs, on an offline Bootstrap template."""
from __future__ import annotations

import contextlib
import gc
import html
import io
import threading

import pandas as pd
import panel as pn
from threadpoolctl import threadpool_limits

from . import results, shading
from ..evaluation.pipeline import joint_copula
from ..evaluation.stretch import N_UNITS, WARMUP_S
from .frames import Frame
from .jobs import frozen, held
from .window import test_split_s
from .figures import figure_png
from .state import FITTED_STATES, OPEN_CHECKPOINT, OPEN_FILE, PATH_PROMPT, DashboardState
from .trains import as_file, generated_recording
from .upload import MAX_UPLOAD_MB
from .statistics import statistics
from .views import curves, kept, rasters
from . import style
from ..generation import fused


def _card(key: str, value: str, sub: str = "") -> str:
    slug = key.lower().replace(" ", "-").replace("/", "")
    return (f'<div class="sv-card" id="sv-{slug}"><div class="k">{key}</div><div class="v">{value}</div>'
            f'<div class="s">{sub}</div></div>')


def readout(frame: Frame | None, status: str = "", error: str = "") -> str:
    """Operating point of the generator at the current threshold, and its AUCs next to chance;
    without one, the running step, or that a refusal (in the error line above) stopped it."""
    if frame is None:
        if error and not status:
            return '<div class="sv-waiting sv-stopped">Nothing evaluated: see the message above.</div>'
        # (nothing runs while the page waits for a path: no "Evaluating…" then)
        return (f'<div class="sv-waiting">{"" if status == PATH_PROMPT else "Evaluating… "}'
                f'{html.escape(status)}</div>')
    ev = frame.evaluation
    op, h = frame.op, ev.hist
    ratio = op.predicted_spikes / op.real_spikes if op.real_spikes else float("nan")
    cards = [
        _card("threshold", f"{op.threshold:.4g}", f"generator: {ev.generator.name}"
              + (" (scores; free-running samples shown)" if ev.mode == "free" else "")),
        _card("precision", f"{op.precision:.3f}"), _card("recall", f"{op.recall:.3f}"),
        _card("F1", f"{op.f1:.3f}", "at this threshold"), _card("FPR", f"{op.fpr:.4f}"),
        _card("spikes predicted / real", f"{op.predicted_spikes:,} / {op.real_spikes:,}", f"ratio {ratio:.2f}"),
        _card("ROC-AUC", f"{h.roc_auc:.3f}", "chance 0.5"),
        _card("PR-AUC", f"{h.pr_auc:.4f}", f"chance {h.base_rate:.4f}"),
    ]
    return f'<div class="sv-cards">{"".join(cards)}</div>'


def describe(state: DashboardState, *_) -> str:
    """What is evaluated, on what, and where the baselines come from."""
    rec = state.recording
    if rec is None:
        return ""
    a, b = test_split_s(rec)
    info = state.checkpoint_info
    trained = (f"`{info.name}`: trained on **{info.session or 'unknown'}** ({'any domain' if info.any_domain else info.domain or '?'}), "
               f"{info.loss or '?'} loss{', ' + info.preset if info.preset else ''}" if info
               else "no checkpoint: the **population states**, fitted on this recording's train split, generate "
                    "(each bin's units drawn jointly; free runs follow the model's own state chain)"
               if state.checkpoint == FITTED_STATES
               else "no checkpoint: the **coupled GLM baseline**, fitted on this recording's train split, generates")
    ev = state.evaluation
    fitted = (f" Baselines fitted on this recording's train split, as `spikeviz evaluate` does; "
              f"unit order {ev.stretch.unit_order}." if ev else "")
    if ev is not None and ev.blended:
        fitted += (" Teacher-forced, the generalist is blended with the coupled GLM fitted there "
                   "(weights fitted on the warm-up, as `spikeviz evaluate` does; free runs use "
                   "the generalist alone).")
    if ev is not None and ev.mode == "teacher" and ev.fitted is None and \
            joint_copula(ev.predictions[ev.generator.name], "teacher", "bernoulli") is not None:
        fitted += (" Bernoulli draws with \"Draw a bin's units jointly\" on (the default, as "
                   "`spikeviz generate` draws) take a bin's units together: shared slow factors "
                   "and a dead time fitted on the warm-up, each unit at its own rate.")
    if ev is not None and ev.mode == "free" and ev.free_copula is not None:
        fitted += (" The free run draws a bin's units jointly (\"Draw a bin's units jointly\" on, "
                   "as `spikeviz generate --mode free` draws): a copula fitted on the model's own "
                   "predictions over the warm-up.")
    return (f"**{rec.name}**: {rec.n_units} units, {rec.n_spikes:,} spikes, {rec.duration_s:,.0f} s. "
            f"Test split {a:,.0f}–{b:,.0f} s. The evaluated window is predicted strictly one bin "
            f"ahead (up to {N_UNITS} units, 1-ms bins) after {WARMUP_S:g} s of real past, which "
            f"also tunes the threshold presets. Prediction costs seconds per minute of window on 2 "
            f"CPU cores, so the window is capped (default 30 s; the transfer preset is ~30× "
            f"slower).\n\n{trained}.{fitted}")


def fit_controls(state: DashboardState) -> pn.Card:
    """Fine-tune the generalist on the loaded recording's train split, in the background."""
    W = pn.widgets
    return pn.Card(
        pn.pane.Markdown("Fine-tunes the chosen generalist on the first half of the first seconds "
                         "below (the scored test split is never seen); the result is added to the "
                         "checkpoints of this page.", css_classes=["sv-note"]),
        pn.Row(W.FloatInput.from_param(state.param.fit_seconds),
               W.IntInput.from_param(state.param.fit_epochs, css_classes=["sv-fit-epochs"])),
        pn.Row(W.Button.from_param(state.param.fit, button_type="primary", css_classes=["sv-fit"]),
               W.Button.from_param(state.param.cancel_fit, button_type="light", visible=state.param.fit_busy,
                                   css_classes=["sv-cancel-fit"])),
        pn.indicators.Progress(value=state.param.fit_progress, active=state.param.fit_busy, height=10,
                               sizing_mode="stretch_width", visible=state.param.fit_busy),
        pn.pane.Str(state.param.fit_status, styles={"font-size": "12px", "color": "#5b6472"},
                    css_classes=["sv-fit-status"]),
        title="Fit to this recording", collapsed=True, sizing_mode="stretch_width", css_classes=["sv-fit-card"])


def controls(state: DashboardState) -> pn.Column:
    """Sidebar widgets, in the order one makes the choices: one column, so the page's document
    gets one root for them (Bokeh recomputes its models on every root added)."""
    is_ckpt = pn.bind(lambda c: c == OPEN_CHECKPOINT, state.param.checkpoint)
    is_free = pn.bind(lambda m: m == "free", state.param.mode)
    W = pn.widgets
    file_box = when_chosen(state, OPEN_FILE, lambda: [
        drop_zone(state),
        W.TextInput.from_param(state.param.path, name="Path", placeholder="data/… or ./…", css_classes=["sv-path"]),
        pn.Row(W.Select.from_param(state.param.file_format, name="Format"),
               W.RadioButtonGroup.from_param(state.param.file_domain, name="Domain", margin=(26, 5, 5, 5))),
        pn.Row(W.FloatInput.from_param(state.param.tick_ms, name="Tick (ms)"),
               W.FloatInput.from_param(state.param.sample_rate, name="Sample rate (Hz)")),
        W.Button.from_param(state.param.open_file, button_type="primary", css_classes=["sv-open"])])
    ckpt_box = pn.Column(
        W.TextInput.from_param(state.param.checkpoint_path, name="Checkpoint path",
                               placeholder="models/….safetensors"),
        W.Button.from_param(state.param.open_checkpoint, button_type="primary"), visible=is_ckpt)
    busy = pn.Column(
        pn.indicators.Progress(value=state.param.progress, active=state.param.busy, bar_color="primary",
                               sizing_mode="stretch_width", height=14, visible=state.param.busy),
        pn.pane.Str(state.param.status, styles={"font-size": "12px", "color": "#5b6472"},
                    css_classes=["sv-status"]))
    return pn.Column(
        "### Test data",
        W.Select.from_param(state.param.session, name="Session", css_classes=["sv-session"]), file_box,
        "### Model",
        W.RadioButtonGroup.from_param(state.param.direction, name="Direction", button_type="primary",
                                      button_style="outline", orientation="vertical"),
        W.Select.from_param(state.param.checkpoint, name="Checkpoint", css_classes=["sv-checkpoint"]), ckpt_box,
        fit_controls(state),
        "### Generation",
        W.RadioButtonGroup.from_param(state.param.mode, name="Mode", button_type="primary", button_style="outline"),
        pn.Row(W.IntInput.from_param(state.param.seed, name="Seed"),
               W.Select.from_param(state.param.unit_order, name="Unit order")),
        W.FloatSlider.from_param(state.param.free_s, name="Free-running length (s)", visible=is_free),
        window_controls(state),
        W.Select.from_param(state.param.draw, name="Draw rule (teacher-forced)", css_classes=["sv-draw"]),
        W.FloatInput.from_param(state.param.draw_level, name="Rule level",
                                visible=pn.bind(lambda d: d in ("unit-density", "lift"), state.param.draw)),
        W.Checkbox.from_param(state.param.joint, css_classes=["sv-joint"],
                              # the population states draw their own trains: no effect there
                              visible=pn.bind(lambda d, m, c: (d == "bernoulli" or m == "free")
                                              and c != FITTED_STATES, state.param.draw,
                                              state.param.mode, state.param.checkpoint)),
        "### Threshold",
        W.RadioButtonGroup.from_param(state.param.threshold_rule, name="Preset", button_type="primary",
                                      button_style="outline"),
        W.EditableFloatSlider.from_param(state.param.threshold, name="Decision threshold", format="0.0000",
                                         css_classes=["sv-threshold"]),
        # In the sidebar, reachable from every tab (in the Results tab, a download meant a tab
        # switch first).
        "### Downloads", downloads(state),
        busy, sizing_mode="stretch_width")


def when_chosen(state: DashboardState, session: str, build) -> pn.Column:
    """The widgets `build()` makes, shown while `session` is chosen and made when it first is:
    the drop zone's script costs every page a tenth of a second in the browser."""
    box = pn.Column(visible=state.session == session, sizing_mode="stretch_width")

    def follow(chosen: str) -> None:
        if chosen == session and not box.objects:
            box.objects = build()
        box.visible = chosen == session

    state.param.watch(lambda event: follow(event.new), "session")
    follow(state.session)
    return box


def drop_zone(state: DashboardState) -> pn.widgets.FileDropper:
    """Drop a recording (NWB, asdf .mat, a table, a zipped Kilosort/phy folder): it opens with the
    format, tick and sample rate set below; a missing tick or rate is asked for in the error line.

    Any file is taken and its name checked on the server (upload.ACCEPTED, refused in the error
    line): Panel's drop zone checks MIME types, and browsers give .nwb, .mat, .npz and .parquet
    files from disk none, so it turned every one of them away."""
    dropper = pn.widgets.FileDropper(max_file_size=f"{MAX_UPLOAD_MB}MB",
                                     multiple=False, layout="compact", height=90,
                                     sizing_mode="stretch_width", css_classes=["sv-drop"])

    def dropped(event) -> None:
        for name, data in event.new.items():
            state.open_upload(name, data if isinstance(data, bytes) else data.encode())

    dropper.param.watch(dropped, "value")
    return dropper


def window_controls(state: DashboardState) -> pn.Row:
    """Start (inside the test split) and length of the evaluated window; each change re-predicts,
    so the start is sent on release."""
    W = pn.widgets
    return pn.Row(W.FloatSlider.from_param(state.param.window_start, format="0", throttled=True),
                  W.Select.from_param(state.param.window_length, width=90, css_classes=["sv-length"]))


def downloads(state: DashboardState) -> pn.Column:
    """The figures, this evaluation's metrics, the cross-session table and the generated trains
    as files; those of an evaluation wait for one."""
    def png():
        if state.evaluation is None or state.frame is None:
            return None
        title = f"{state.recording.name} · {state.direction} · {state.evaluation.generator.name}"
        return io.BytesIO(figure_png(state.evaluation, state.frame, title))

    def csv(table: pd.DataFrame):
        return io.StringIO(table.to_csv(index=False))

    def trains(name: str):
        if state.frame is None or state.recording is None:
            return None
        return io.BytesIO(as_file(generated_recording(state.frame, state.recording, state.threshold_rule, state.seed, state.draw_level),
                                  name))

    button = dict(button_type="primary", button_style="outline", sizing_mode="stretch_width")
    # An evaluation's files wait for it: a click with none to write did nothing, and logged why.
    evaluated = button | {"disabled": pn.bind(lambda frame: frame is None, state.param.frame)}
    return pn.Column(
        pn.widgets.FileDownload(callback=png, filename="spikeviz_figures.png", label="Figures (PNG)", **evaluated),
        pn.widgets.FileDownload(callback=lambda: csv(results.current_metrics(state.evaluation, state.frame)),
                                filename="spikeviz_metrics.csv", label="This evaluation (CSV)", **evaluated),
        pn.widgets.FileDownload(callback=lambda: csv(results.table_frames(state.cross_table)[1]),
                                filename="spikeviz_cross_session.csv", label="Cross-session table (CSV)",
                                **button),
        pn.widgets.FileDownload(callback=lambda: trains("spikeviz_generated.nwb"), filename="spikeviz_generated.nwb",
                                label="Generated trains (NWB, with provenance)", **evaluated),
        # The CSV with its provenance sidecar, as `spikeviz generate --out x.csv` writes them.
        pn.widgets.FileDownload(callback=lambda: trains("spikeviz_generated.csv"), filename="spikeviz_generated.zip",
                                label="Generated trains (CSV + provenance JSON, zip)", **evaluated),
        css_classes=["sv-downloads"], sizing_mode="stretch_width")


def cross_table_view(table: dict | None) -> pn.viewable.Viewable:
    summary, rows = results.table_frames(table)
    if rows.empty:
        return pn.pane.Markdown(results.MISSING, css_classes=["sv-note"])
    settings = table.get("settings", {})
    grid = dict(show_index=False, disabled=True, sizing_mode="stretch_width", layout="fit_data_stretch")
    return pn.Column(
        pn.pane.Markdown(f"Protocol {settings.get('protocol')}, unit order {settings.get('unit_order')}, "
                         f"first {settings.get('seconds')} s of each test split; mean ± SD per "
                         f"direction and loss, then every cell. Click a header to sort.",
                         css_classes=["sv-note"]),
        pn.widgets.Tabulator(summary, **grid),
        pn.widgets.Tabulator(rows, pagination="local", page_size=25, header_filters=True, **grid))


def results_tab(state: DashboardState) -> pn.Column:
    metrics = pn.widgets.Tabulator(pn.bind(kept(lambda f: results.current_metrics(f and f.evaluation, f)),
                                           state.param.frame),
                                   show_index=False, disabled=True, sizing_mode="stretch_width",
                                   layout="fit_data_stretch")
    return pn.Column("#### This evaluation (click a header to sort)", metrics,
                     pn.Row("#### Cross-session table",
                            pn.widgets.Button.from_param(state.param.compute_table, button_type="light",
                                                         width=200)),
                     pn.panel(pn.bind(cross_table_view, state.param.cross_table)),
                     sizing_mode="stretch_width")


def limit_blas_threads() -> None:
    """One BLAS thread for the server process: with torch's OpenMP pool loaded, OpenBLAS threads
    spin against it on 2 cores and a 6000 x 128 correlation takes 150 ms instead of 2 ms.
    (torch keeps its own threads for predictions.)"""
    threadpool_limits(1, user_api="blas")


def later(build, state: DashboardState) -> pn.param.ParamFunction:
    """`build(state)`, called when the view is first rendered (its tab first shown)."""
    return pn.param.ParamFunction(lambda: build(state), lazy=True, sizing_mode="stretch_width")


def build_app(**state_params) -> pn.template.BootstrapTemplate:
    """A fresh page with its own state: `panel serve` calls this once per browser session.

    `state_params` are initial DashboardState choices (session, checkpoint, window...)."""
    style.extension()
    sidebar, main, _ = page_parts(**state_params)
    return style.template(sidebar, main)


def page_parts(**state_params) -> tuple[pn.Column, pn.Column, DashboardState]:
    """The page's sidebar and main columns, on a new DashboardState(**state_params)."""
    limit_blas_threads()
    state = DashboardState(**state_params)
    pn.state.on_session_destroyed(lambda ctx: state.close())
    main = pn.Column(
        # The error line heads the page: at the foot of the sidebar it was out of sight.
        pn.pane.Alert(state.param.error, alert_type="danger", visible=pn.bind(bool, state.param.error),
                      sizing_mode="stretch_width", css_classes=["sv-error"]),
        pn.pane.Alert(state.param.window_note, alert_type="info", visible=pn.bind(bool, state.param.window_note),
                      sizing_mode="stretch_width", css_classes=["sv-window-note"]),
        pn.pane.HTML(pn.bind(readout, state.param.frame, state.param.status, state.param.error),
                     sizing_mode="stretch_width",
                     css_classes=["sv-readout"]),
        # Only the shown tab is in the page: with every tab rendered, each update laid out the
        # hidden tabs' plots too and blocked the browser for seconds. The other tabs are built when
        # first shown (about a second less before the first page arrives).
        pn.Tabs(("Rasters", rasters(state)), ("Curves", later(curves, state)),
                ("Firing statistics", later(statistics, state)), ("Results", later(results_tab, state)),
                dynamic=True, sizing_mode="stretch_width"),
        pn.pane.Markdown(pn.bind(describe, state, state.param.recording, state.param.checkpoint,
                                 state.param.evaluation), css_classes=["sv-note", "sv-describe"]),
        sizing_mode="stretch_width")
    return controls(state), main, state


def fill(sidebar: pn.Column, main: pn.Column, **state_params) -> None:
    """The page's sidebar and main columns put into an opening page already shown (opening.serve),
    in one message; the process then warms as after `serve`'s first page."""
    doc = pn.state.curdoc
    with held(doc) if doc is not None else contextlib.nullcontext():
        side, body, state = page_parts(**state_params)
        sidebar.objects, main.objects = [side], [body]
        sidebar.css_classes = main.css_classes = []
    warm_after(state)


def warm_up() -> None:
    """Build the opening page once, off any browser session, as a page request builds it: its
    evaluation fills the shared caches, its raster images the view cache, and the first visitor
    no longer pays the first-use costs (datashader compiling its kernels, about 7 s on 2 cores;
    Panel loading its extensions and HoloViews its backend, 0.1 s)."""
    from bokeh.document import Document
    from panel.io.state import set_curdoc

    doc = Document()
    with set_curdoc(doc), doc.models.freeze():
        build_app().server_doc(doc)


_WARMING = threading.Lock()
# Seconds from a page's first trains to the warm-up: the browser is still being sent and drawing
# its rasters then (about 2.5 s), and a warm-up begun at once slowed a plain server's first full
# evaluation by about a second (median 11.1 s against 9.9 s begun 5 s later, six servers each).
WARM_DELAY_S = 5.0


def warm_after(state: DashboardState) -> None:
    """warm_process in the background WARM_DELAY_S after this page's first trains are drawn or
    refused: compiling datashader's kernels holds the interpreter for 3-6 s, and begun as soon
    as the page was shown it delayed a plain server's first full evaluation by as much (12.8 s)."""
    if _WARMING.locked():
        return
    started, doc = threading.Event(), pn.state.curdoc

    def launch() -> None:
        timer = threading.Timer(WARM_DELAY_S, warm_process)
        timer.name, timer.daemon = "spikeviz-warm", True
        timer.start()

    def start(*_) -> None:
        if (state.frame is not None or state.error) and not started.is_set():
            started.set()
            # After the views' changes have gone to the browser (the next tick of its loop).
            if doc is not None and doc.session_context is not None:
                doc.add_next_tick_callback(launch)
            else:
                launch()

    state.param.watch(start, ["frame", "error"])
    start()


def warm_process() -> None:
    """Once per process, what no first page needs: datashader's kernels compiled for zooming
    (a first page reads its images from disk when a server drew them before), numba's
    free-running loops loaded from its disk cache (the first free run took ~1.7 s longer), then the warmed imports and caches frozen
    out of the garbage collector's full collections (~600k objects; a full collection in a page
    request cost 0.55 s). `make serve`'s --setup runs it before listening; a plain `panel serve
    app.py` runs it in the background a few seconds after its first page has drawn its trains
    (warm_after)."""
    if not _WARMING.acquire(blocking=False):
        return   # done, or being done
    shading.warm_up()
    fused.warm_up()
    gc.collect()
    gc.freeze()


def serve(**state_params) -> pn.template.BootstrapTemplate:
    """`build_app(**state_params)`, served into this browser session's document with its model
    graph computed once: Bokeh recomputes it for every root the template adds (0.15-0.3 s of
    every page request on 2 cores). The first page of a process warms the rest of it."""
    doc = pn.state.curdoc
    with frozen(doc) if doc is not None else contextlib.nullcontext():
        style.extension()
        sidebar, main, state = page_parts(**state_params)
        page = style.template(sidebar, main).servable(title="spikeviz")
    warm_after(state)
    return page
