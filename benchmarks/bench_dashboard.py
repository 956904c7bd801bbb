"""Dashboard latency: threshold change -> every view's new data, zoomed re-aggregation of the 1-h raster,
the switch to free running, and the served page in headless Chromium from a cold server. Prints one JSON object on the last line.

    .venv/bin/python benchmarks/bench_dashboard.py [--repeats 5] [--runs 5] [--screens DIR] [--serve plain]

Each page run starts a fresh `panel serve app.py`, as `make serve` does (`--setup
spikeviz/dashboard/warm.py`) or, with `--serve plain`, without `--setup`; it opens the page as soon
as the server listens, then times from the page request: the first real raster, the first full evaluation (readout shown, no job running, every
raster drawn), the same two for a second page opened after it, an unseen session switch and a switch back to the seen session. Medians over --runs servers.
The first raster's time is split at the browser's marks: `html_s` when the page's HTML had
arrived (the server builds the whole document first), `scripts_s` when its scripts had run.
--screens saves screenshots at 1 s and 5 s after the request and after the session switch, from
one more server, timed apart (its page waits for the screenshots).

The free-running switch covers a whole 60-s window (the teacher-forced evaluation of that window,
timed in the same run, beside it).

Goals: threshold < 150 ms, zoom < 200 ms, free-running 60-s window < 3 s (issue 13), first real
raster < 2 s, first full evaluation < 5 s, seen-session switch < 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import holoviews as hv

from spikeviz.dashboard import app, shading, views
from spikeviz.dashboard import statistics as stats_tab
from spikeviz.dashboard.cache import LRUCache
from spikeviz.dashboard.state import BASELINE_ONLY, DashboardState

ROOT = Path(__file__).resolve().parents[1]
VIVO = "invivo_NYU-40_2021-04-14_001"
WIDTH, HEIGHT = 1200, 230   # a raster plot's pixels on a laptop-sized page


def aggregate(points: hv.Points, x_range: tuple[float, float], y_range: tuple[float, float]) -> hv.RGB:
    """What the raster view computes on a pan or zoom: its image for one viewport."""
    return shading.shaded_raster(points, ["#9a9a9a", "#000000"], x_range, y_range, WIDTH, HEIGHT)


def threshold_views(state: DashboardState, threshold: float) -> None:
    """Move the threshold, then build the data of every view that follows it."""
    state.threshold = threshold
    ev, fr = state.evaluation, state.frame
    gen = views.generated_points(fr)
    a, b = ev.stretch.start_s, ev.stretch.start_s + ev.stretch.duration_s
    aggregate(gen, (a, b), (-0.5, ev.P.shape[1] - 0.5))
    views.roc_marker(fr), views.pr_marker(fr), app.readout(fr)
    stats_tab.rate_scatter(fr), stats_tab.isi_curves(fr), stats_tab.population_rate(fr)
    stats_tab.correlation_image(fr.stats, "generated"), stats_tab.summary_table(fr)


def bench_threshold(repeats: int) -> dict:
    app.limit_blas_threads()   # as the served app does
    state = DashboardState(threaded=False)
    assert not state.error, state.error
    presets = state.evaluation.thresholds
    values = sorted(presets.values())
    grid = [values[0] * 0.8, *values, values[-1] * 1.25]
    threshold_views(state, grid[0])   # warm caches and numba
    misses, times = state.cache.misses, []
    for _ in range(repeats):
        for thr in grid:
            t0 = time.perf_counter()
            threshold_views(state, thr)
            times.append(time.perf_counter() - t0)
    return {"threshold_ms_median": round(1000 * statistics.median(times), 1),
            "threshold_ms_max": round(1000 * max(times), 1), "threshold_runs": len(times),
            "threshold_generator": state.evaluation.generator.name,
            "threshold_window_s": round(state.evaluation.stretch.duration_s, 1),
            "predictions_recomputed": state.cache.misses - misses}


def bench_free(repeats: int) -> dict:
    """The switch to free running over a whole 60-s window (its closed-loop fit included) against
    the teacher-forced evaluation of that window before it (not a default window: predicted, not
    read from disk), each repeat with a fresh in-memory cache."""
    app.limit_blas_threads()
    teacher, free = [], []
    for _ in range(repeats + 1):      # the first also loads numba's compiled loops
        t0 = time.perf_counter()
        state = DashboardState(threaded=False, cache=LRUCache(), window_length=60, free_s=60.0)
        teacher.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        state.mode = "free"
        free.append(time.perf_counter() - t0)
        assert not state.error, state.error
    n = len(state.evaluation.free)
    return {"free_switch_s_median": round(statistics.median(free[1:]), 2),
            "free_bins": n, "free_generator": state.evaluation.generator.name,
            "teacher_window_s_median": round(statistics.median(teacher[1:]), 2),
            "free_over_teacher": round(statistics.median(free[1:]) / statistics.median(teacher[1:]), 2)}


def bench_zoom(repeats: int) -> dict:
    state = DashboardState(threaded=False, session=VIVO, checkpoint=BASELINE_ONLY,
                           window_length=10)
    points = views.overview_points(state.recording)
    y = (-0.5, state.recording.n_units - 0.5)
    end = state.recording.duration_s
    aggregate(points, (0, end), y)
    ranges = [(0, end), (1000, 2000), (1700, 1760), (1750, 1751), (1750.2, 1750.25)]
    times = {}
    for r in ranges:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            aggregate(points, r, y)
            runs.append(time.perf_counter() - t0)
        times[f"{r[1] - r[0]:g}s"] = round(1000 * statistics.median(runs), 1)
    zoomed = [v for k, v in times.items() if k != f"{end:g}s"]
    return {"zoom_ms_median": round(statistics.median(zoomed), 1), "zoom_ms_max": max(zoomed),
            "zoom_ms_by_range": times, "zoom_points": len(points.data)}


SERVE = {"make": ["--setup", "spikeviz/dashboard/warm.py"], "plain": []}   # extra `panel serve` arguments


def _start_server(serve: str) -> tuple[subprocess.Popen, int, float]:
    """A fresh `panel serve app.py` (SERVE[serve]); returns it, its port and its start-up seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    server = subprocess.Popen([str(Path(sys.executable).parent / "panel"), "serve", "app.py",
                               *SERVE[serve], "--address", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})   # this checkout
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server, port, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise TimeoutError("panel serve did not start listening")


def _wait(page, condition, t0: float, timeout_s: float = 300.0) -> float:
    """Seconds since t0 when `condition()` first holds (polled every 50 ms)."""
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("the page did not get there")
        page.wait_for_timeout(50)
    return time.perf_counter() - t0


def _card(page, key: str) -> str:
    cards = page.locator(f".sv-readout #sv-{key} .v")
    return cards.first.inner_text() if cards.count() else ""


def _idle(page) -> bool:
    status = page.locator(".sv-status pre")
    return bool(_card(page, "f1")) and (status.count() == 0 or status.first.inner_text().strip() == "")


def _drawn(page, rasters=(".sv-real",)) -> bool:
    for raster in (page.locator(f"{r} canvas") for r in rasters):
        if not (raster.count() and raster.first.is_visible()):
            return False
    return True


def _evaluated(page) -> bool:
    """The readout is shown, no job runs and every raster is drawn (three come after the first)."""
    return _idle(page) and _drawn(page, (".sv-overview", ".sv-real", ".sv-generated", ".sv-probabilities"))


def _page_marks(page) -> dict:
    """Where the first raster's time went, from the browser's own marks (seconds after it began
    the navigation): the page's HTML arrived (the server builds the document before sending it)
    and its scripts had run (then the document comes over the websocket and is drawn)."""
    html, scripts = page.evaluate("(n => [n.responseEnd, n.domContentLoadedEventEnd])"
                                  "(performance.getEntriesByType('navigation')[0])")
    return {"html_s": html / 1000, "scripts_s": scripts / 1000}


def page_run(browser, screens: Path | None, serve: str) -> dict:
    """One cold server, one page: the times a person waits."""
    server, port, startup = _start_server(serve)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        t0 = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/app", wait_until="commit", timeout=120_000)
        out = {"server_start_s": startup}
        if screens:
            for at in (1.0, 5.0):
                page.wait_for_timeout(max(0.0, at - (time.perf_counter() - t0)) * 1000)
                page.screenshot(path=str(screens / f"page_{at:g}s.png"))
        out["first_real_raster_s"] = _wait(page, lambda: _drawn(page), t0)
        out |= _page_marks(page)
        out["first_evaluation_s"] = _wait(page, lambda: _evaluated(page), t0)
        # A second visitor, once the first page is shown (a plain server has warmed by then).
        second = browser.new_page(viewport={"width": 1500, "height": 1000})
        t3 = time.perf_counter()
        second.goto(f"http://127.0.0.1:{port}/app", wait_until="commit", timeout=120_000)
        out["second_page_raster_s"] = _wait(second, lambda: _drawn(second), t3)
        out["second_page_evaluation_s"] = _wait(second, lambda: _evaluated(second), t3)
        second.close()
        first = _card(page, "spikes-predicted--real")
        page.wait_for_timeout(1000)
        select = page.locator(".sv-session select").first
        t1 = time.perf_counter()
        select.select_option(VIVO)
        page.get_by_text("458,082 spikes").first.wait_for(timeout=300_000)
        out["unseen_switch_s"] = _wait(page, lambda: _idle(page) and _card(page, "spikes-predicted--real") not in ("", first), t1)
        vivo = _card(page, "spikes-predicted--real")
        if screens:
            page.wait_for_timeout(1500)
            page.screenshot(path=str(screens / "page_after_switch.png"))
        page.wait_for_timeout(1000)
        t2 = time.perf_counter()
        select.select_option(index=0)
        out["seen_switch_s"] = _wait(page, lambda: _idle(page) and _card(page, "spikes-predicted--real") not in ("", vivo), t2)
        page.close()
        return {k: round(v, 2) for k, v in out.items()}
    finally:
        server.kill()
        server.wait(10)


def bench_page(runs: int, screens: Path | None, serve: str) -> dict:
    from playwright.sync_api import sync_playwright

    ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            # Screenshots wait for their moments: that run is timed apart, not in the medians.
            shots = page_run(browser, screens, serve) if screens else None
            results = [page_run(browser, None, serve) for _ in range(runs)]
        finally:
            browser.close()
    out = {"serve": " ".join(["panel serve app.py", *SERVE[serve]]), "page_runs": results} | ({"screenshot_run": shots} if shots else {})
    for key in results[0]:
        out[f"{key}_median"] = round(statistics.median(r[key] for r in results), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="cold servers for the page timings")
    parser.add_argument("--screens", type=Path, default=None, help="folder for screenshots")
    parser.add_argument("--only", choices=("page", "compute"), default=None)
    parser.add_argument("--serve", choices=tuple(SERVE), default="make",
                        help="make: with --setup, as `make serve`; plain: `panel serve app.py` alone")
    args = parser.parse_args()
    if args.screens:
        args.screens.mkdir(parents=True, exist_ok=True)
    out = {}
    if args.only != "page":
        out |= bench_threshold(args.repeats) | bench_zoom(args.repeats) | bench_free(args.repeats)
    if args.only != "compute":
        out |= bench_page(args.runs, args.screens, args.serve)
    goals = {"threshold_ms_median": 150, "zoom_ms_max": 200, "free_switch_s_median": 3,
             "first_real_raster_s_median": 2,
             "first_evaluation_s_median": 5, "seen_switch_s_median": 1}
    out["goals"] = goals
    out["meets_goals"] = {k: out[k] < v for k, v in goals.items() if k in out}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
