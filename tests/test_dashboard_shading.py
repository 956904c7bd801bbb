"""Raster images are drawn once per element, ranges and size, whichever session asks, and each caller gets its own element."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd

from spikeviz.dashboard import shading
from spikeviz.dashboard.cache import VIEW_CACHE


def test_the_same_objects_give_the_same_data_and_image_once():
    source = np.arange(3.0)
    make_calls = []

    def points(value):
        make_calls.append(value)
        return hv.Points(pd.DataFrame({"x": value, "y": value}), ["x", "y"])

    made = shading.shared(points)
    a, b = made(source), made(source)
    assert a is b and len(make_calls) == 1          # two sessions, one element
    assert made(source.copy()) is not a             # equal values, another object: made again

    misses = VIEW_CACHE.misses
    options = dict(cmap=["#ffffff", "#000000"], width=40, height=20)
    first = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **options)
    again = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **options)
    assert VIEW_CACHE.misses == misses + 1          # drawn once
    assert again is not first and again.data is first.data   # each plot sets options on its own element
    zoomed = shading.drawn_once(a, (0.0, 1.0), (0.0, 2.0), **options)
    assert VIEW_CACHE.misses == misses + 2 and zoomed.bounds.lbrt() == (0.0, 0.0, 1.0, 2.0)
    resized = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **(options | {"width": 80}))
    assert resized.data.shape[:2] == (20, 80)
