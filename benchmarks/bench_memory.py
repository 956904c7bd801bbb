"""Peak memory of the served dashboard with the 1-hour in vivo session open; last line JSON.

    .venv/bin/python benchmarks/bench_memory.py [--length 300]

Serves app.py on 127.0.0.1, opens it in headless Chromium (Debian's /usr/bin/chromium), selects
the in vivo session (3,541 s, 458k spikes), evaluates a window of --length s (default the longest,
300 s), zooms the rasters
in and out, and samples the resident memory of the server process. Goal: < 2 GB.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import PeakRSS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIVO = "invivo_NYU-40_2021-04-14_001"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def counts(page) -> str:
    """The readout's predicted / real spike counts: they change with every new evaluation."""
    card = page.locator(".sv-readout #sv-spikes-predicted--real .v")
    return card.first.inner_text() if card.count() else ""


def wait_idle(page, before: str | None = None, timeout_s: float = 900.0) -> None:
    """Until a readout other than `before` is shown and the status line (running jobs) is empty."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = page.locator(".sv-status").first.inner_text().strip()
        now = counts(page)
        if now and now != before and not status:
            return
        page.wait_for_timeout(500)
    raise TimeoutError("the dashboard did not finish its work")


def main() -> None:
    import argparse

    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", choices=("10", "30", "60", "120", "300"), default="300")
    length = ap.parse_args().length

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "panel"), "serve", "app.py",
                               "--address", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.3).close()
                break
            except OSError:
                time.sleep(0.3)
        with PeakRSS(pid=server.pid) as mem, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/app")
            wait_idle(page)
            out["rss_first_session_mb"] = round(mem.peak_mb)
            before = counts(page)
            page.locator(".sv-session select").first.select_option(VIVO)
            wait_idle(page, before)
            before = counts(page)
            page.locator(".sv-length select").first.select_option(length)
            wait_idle(page, before)
            out["window_s"] = int(length)
            out["rss_vivo_window_mb"] = round(mem.peak_mb)
            out["readout_vivo_window"] = counts(page)
            plot = page.locator(".bk-Canvas").nth(1)
            box = plot.bounding_box()
            for delta in (-600, -600, -600, 900, 900):   # wheel-zoom in to single spikes and out
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.mouse.wheel(0, delta)
                page.wait_for_timeout(800)
            wait_idle(page)
            browser.close()
        out["peak_rss_mb"] = round(mem.peak_mb)
    finally:
        server.terminate()
        server.wait(30)
    out["goal_mb"] = 2048
    out["meets_goal"] = out["peak_rss_mb"] < out["goal_mb"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
