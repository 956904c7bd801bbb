"""The evaluated window: its default, where it may start inside the test split, and its lengths."""
from __future__ import annotations

import math

from ..data.binning import SPLIT_FRACTIONS, SPLIT_NAME
from ..errors import SpikevizError
from ..evaluation.stretch import WARMUP_S
from ..data.recording import Recording

DEFAULT_LENGTH_S = 30.0   # the default window: with its warm-up, 60 s of bins to predict
WINDOW_LENGTHS_S = (10, 30, 60, 120, 300)


def test_split_s(recording: Recording) -> tuple[float, float]:
    """Start and end (s) of the chronological test split (binning.SPLIT_FRACTIONS)."""
    a, b = SPLIT_FRACTIONS["test"]
    return a * recording.duration_s, b * recording.duration_s


def start_bounds(recording: Recording, length: float) -> tuple[float, float]:
    """Whole seconds a window of `length` s may start at: inside the test split, after the warm-up."""
    a, b = test_split_s(recording)
    lo = float(math.ceil(max(a, WARMUP_S)))
    return lo, float(max(lo + 1, math.floor(b - length)))


def window_for(recording: Recording, start: float, length: float) -> tuple[float, float]:
    """The window from `start`, cut at the end of the test split."""
    return round(start, 3), round(min(start + length, test_split_s(recording)[1]), 3)


def default_window(recording: Recording, length_s: float = DEFAULT_LENGTH_S) -> tuple[float, float]:
    """The first `length_s` seconds of the test split from its first allowed start (start_bounds:
    after WARMUP_S, like `spikeviz table`): the window a page opens on."""
    start, stop = test_split_s(recording)
    if not stop - max(start, WARMUP_S) >= 1.0:
        shortest = (WARMUP_S + 1.0) / SPLIT_FRACTIONS["test"][1]
        raise SpikevizError(f"{recording.duration_s:g} s is too short for the dashboard: it scores "
                            f"the test split ({SPLIT_NAME}) after {WARMUP_S:g} s of real past, so it "
                            f"needs more than {shortest:g} s", recording.source.get("path"))
    return window_for(recording, start_bounds(recording, length_s)[0], length_s)
