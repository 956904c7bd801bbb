"""Eight browser sessions against one `panel serve` on 127.0.0.1 keep independent state: each sets
its own threshold and reads back its own readout, none sees another's."""
from __future__ import annotations

import pytest

from ..browser import browser_marks, card, chromium, drawn, idle, record_errors, wait_until

pytestmark = browser_marks

SESSIONS = 8
THRESHOLDS = [0.02 + 0.015 * i for i in range(SESSIONS)]


def as_float(text: str) -> float:
    return float(text.replace(",", ""))


def test_eight_sessions_keep_their_own_threshold(sessions_server):
    url = sessions_server   # (shared with the random walk)
    with chromium() as browser:
        contexts = [browser.new_context(viewport={"width": 1400, "height": 900})
                    for _ in range(SESSIONS)]
        try:
            pages = [c.new_page() for c in contexts]
            errors = [record_errors(page) for page in pages]
            for page in pages:
                page.goto(f"{url}/sessions_app", timeout=120_000)
            for i, page in enumerate(pages):
                wait_until(page, lambda: idle(page), 240, f"session {i}'s first evaluation")
            first = {card(p, "threshold") for p in pages}
            assert len(first) == 1, first   # same data, same preset: the same start everywhere

            # Each session types its own threshold once, all before any reads back.
            for page, t in zip(pages, THRESHOLDS):
                box = page.locator(".sv-threshold input").first
                box.fill(f"{t:.4f}")
                box.press("Enter")
            for i, page in enumerate(pages):
                wait_until(page, lambda: card(page, "threshold") not in first and card(page, "f1"),
                           120, f"session {i}'s readout")
            # Let any cross-talk arrive, then read every readout again.
            pages[0].wait_for_timeout(1500)
            shown = [as_float(card(p, "threshold")) for p in pages]
            for t, value in zip(THRESHOLDS, shown):
                assert value == pytest.approx(t, rel=0.01), (THRESHOLDS, shown)
            f1 = [card(p, "f1") for p in pages]
            assert len(set(f1)) == SESSIONS, f1   # distinct thresholds, distinct operating points
            predicted = [card(p, "spikes-predicted--real") for p in pages]
            assert len(set(predicted)) == SESSIONS, predicted
            # The plots added after each page's first picture, while thresholds were typed, all arrive.
            for i, page in enumerate(pages):
                wait_until(page, lambda: drawn(page), 60, f"session {i}'s rasters")
            assert errors == [[]] * SESSIONS
            # Every page idle before it closes: a page closed under a busy server made the server
            # write to a closed socket, and the traceback it logged failed the run.
            for i, page in enumerate(pages):
                wait_until(page, lambda: idle(page), 60, f"session {i} idle")
            url.assert_clean("eight sessions")
        finally:
            for c in contexts:
                c.close()
