"""Raster images are drawn once per element, ranges and size, whichever session asks, and each caller gets its own element."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeviz.dashboard import shading, spread, views
from spikeviz.dashboard.cache import VIEW_CACHE, LRUCache


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
    options = dict(cmap=["#ffffff", "#000000"], width=48, height=32)
    first = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **options)
    again = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **options)
    assert VIEW_CACHE.misses == misses + 1          # drawn once
    assert again is not first and again.data is first.data   # each plot sets options on its own element
    zoomed = shading.drawn_once(a, (0.0, 1.0), (0.0, 2.0), **options)
    assert VIEW_CACHE.misses == misses + 2 and zoomed.bounds.lbrt() == (0.0, 0.0, 1.0, 2.0)
    resized = shading.drawn_once(a, (0.0, 2.0), (0.0, 2.0), **(options | {"width": 80}))
    assert resized.data.shape[:2] == (32, 80)


def test_a_plot_a_few_pixels_narrower_shows_the_same_picture():
    """Sizes are drawn in steps of PIXEL_STEP pixels: a scroll bar shown or not (1025 or 1021
    pixels wide) is one image, read again rather than drawn by kernels a fresh server compiles."""
    element = hv.Points(pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 2.0, 1.0]}), ["x", "y"])
    misses = VIEW_CACHE.misses
    wide = shading.drawn_once(element, (0.0, 2.0), (0.0, 2.0), cmap=["#ffffff", "#000000"], width=1025, height=173)
    narrow = shading.drawn_once(element, (0.0, 2.0), (0.0, 2.0), cmap=["#ffffff", "#000000"], width=1021, height=175)
    assert VIEW_CACHE.misses == misses + 1 and narrow.data is wide.data
    assert wide.data.shape[:2] == (176, 1024)
    other = shading.drawn_once(element, (0.0, 2.0), (0.0, 2.0), cmap=["#ffffff", "#000000"], width=1040, height=173)
    assert other.data.shape[:2] == (176, 1040)


def test_a_whole_view_is_kept_on_disk_and_a_zoomed_one_is_not(tmp_path, monkeypatch):
    """A fresh server's first page reads the opening images a server drew before: datashader is
    not called for them (its first call compiles for seconds); zoomed images stay in memory."""
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    element = hv.Points(pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 2.0, 1.0]}), ["x", "y"])
    whole = (0.0, 2.0), (0.0, 2.0)
    options = dict(cmap=["#ffffff", "#000000"], width=40, height=20)
    first = shading.drawn_once(element, *whole, **options)
    shading.drawn_once(element, (0.0, 1.0), (0.0, 2.0), **options)
    assert len(list(tmp_path.rglob("rgba.npy"))) == 1

    drawn = []
    monkeypatch.setattr(shading, "VIEW_CACHE", LRUCache())   # another server
    real = shading.shaded_raster
    monkeypatch.setattr(shading, "shaded_raster", lambda *a, **k: (drawn.append(1), real(*a, **k))[1])
    again = shading.drawn_once(hv.Points(element.data.copy(), ["x", "y"]), *whole, **options)
    assert not drawn and np.array_equal(again.data, first.data) and again.bounds.lbrt() == first.bounds.lbrt()
    moved = element.data.assign(y=[0.0, 1.0, 2.0])   # other spikes: drawn, not read
    shading.drawn_once(hv.Points(moved, ["x", "y"]), *whole, **options)
    assert drawn == [1]


def test_warming_compiles_what_the_page_draws():
    """After warm_up, a window's probability image, whole or zoomed, compiles no datashader kernel."""
    import datashader.resampling as resampling
    import numba

    def compiled() -> int:
        return sum(len(f.signatures) for f in vars(resampling).values() if isinstance(f, numba.core.dispatcher.Dispatcher))

    shading.warm_up()
    warmed = compiled()
    ev = type("Ev", (), {"P": np.random.default_rng(0).random((3000, 128), np.float32),
                         "stretch": type("S", (), {"start_s": 0.0, "bin_ms": 1.0})})()
    image = views.probability_image(ev)
    shading.shaded_raster(image, ["#ffffff", "#000000"], width=600, height=230)
    shading.shaded_raster(image, ["#ffffff", "#000000"], (1.0, 1.2), width=600, height=230)
    assert compiled() == warmed


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), st.floats(0.0, 0.4), st.integers(0, 2**31 - 1))
def test_the_spread_is_datashaders_dynspread(rows, columns, density, seed):
    """spread.spread draws the pixels of datashader's dynspread (square, summed), which the
    rasters used before: any size, from empty to dense, counts above one included."""
    import datashader.transfer_functions as tf
    import xarray as xr

    rng = np.random.default_rng(seed)
    counts = (rng.random((rows, columns)) < density) * rng.integers(1, 4, (rows, columns))
    counts = counts.astype(np.uint32)
    theirs = tf.dynspread(xr.DataArray(counts, dims=("y", "x")), threshold=spread.THRESHOLD,
                          max_px=spread.MAX_PX, shape="square")
    mine = spread.spread(counts)
    assert mine.dtype == counts.dtype
    np.testing.assert_array_equal(mine, theirs.data)


def test_a_one_unit_recordings_probabilities_draw():
    """One row gives HoloViews and datashader no spacing (NaN bounds: the page's evaluation of a
    one-unit file failed): it is drawn as one band across its unit's row."""
    ev = type("Ev", (), {"P": np.random.default_rng(0).random((3000, 1), np.float32),
                         "stretch": type("S", (), {"start_s": 0.0, "bin_ms": 1.0})})()
    image = views.probability_image(ev)
    assert image.range(1) == (-0.5, 0.5)
    rgba = shading.shaded_raster(image, ["#ffffff", "#000000"], width=600, height=230).data
    assert rgba.shape == (230, 600, 4) and (rgba[..., 3] > 0).all()
