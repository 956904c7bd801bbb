"""Raster images drawn by datashader for the plots' ranges and sizes, and shared by the server's sessions."""
from __future__ import annotations

import hashlib

import datashader as ds
import datashader.transfer_functions as tf
import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from ..data.store import Cache, content_key
from .cache import VIEW_CACHE
from .spread import spread

PIXEL_STEP = 16   # image sizes are drawn in steps of this many pixels (_pixels)


def shaded_raster(element: hv.Points | hv.Image, cmap, x_range=None, y_range=None, width=None,
                  height=None, scale=1.0) -> hv.RGB:
    """The element in the plot's current range and pixels, drawn by datashader: spike counts per
    pixel with single spikes spread to stay visible when zoomed out, or an image's maximum per
    pixel; colour-mapped here (histogram-equalised, empty pixels transparent).

    Done in the browser, colour-mapping four raster images took it most of a second on 2 cores;
    HoloViews' aggregate, dynspread and shade operations cost the server about 50 ms each. The
    spreading is spread.spread's, datashader's dynspread in NumPy."""
    x, y = element.kdims
    rgba, bounds = rgba_image(element, cmap, x_range, y_range, width, height, scale)
    return hv.RGB(rgba, [x, y], **({} if bounds is None else {"bounds": bounds}))


def rgba_image(element: hv.Points | hv.Image, cmap, x_range=None, y_range=None, width=None,
               height=None, scale=1.0) -> tuple[np.ndarray, tuple | None]:
    """shaded_raster's picture as an RGBA array (rows top-down) and its bounds (x0, y0, x1, y1);
    a 1 x 1 transparent pixel and None when there is nothing to draw."""
    x, y = element.kdims
    x_range, y_range = x_range or element.range(0), y_range or element.range(1)
    if not _drawable(x_range, y_range):
        return np.zeros((1, 1, 4), np.uint8), None   # nothing to draw yet
    canvas = ds.Canvas(plot_width=max(1, int((width or 600) * scale)),
                       plot_height=max(1, int((height or 220) * scale)), x_range=x_range, y_range=y_range)
    if isinstance(element, hv.Image):
        agg = canvas.raster(element.data[element.vdims[0].name], agg="max")
    else:
        agg = canvas.points(element.data, x.name, y.name, ds.count())
        agg = agg.copy(data=spread(agg.data))
    image = tf.shade(agg, cmap=cmap, how="eq_hist", min_alpha=255)
    rgba = np.flipud(image.data.view(np.uint8).reshape(*image.shape, 4))   # rows top-down
    return rgba, (x_range[0], y_range[0], x_range[1], y_range[1])


def shared(make, source=lambda value: value):
    """`make(value)`, made once for all the sessions that show the same `source(value)` (the very
    same object): every page opens on the shared cache's recording, window and evaluation, and
    each page made their views' data again."""
    def made(value):
        kept = None if value is None else source(value)   # held by the entry: its id names no other object
        return VIEW_CACHE.get((make.__qualname__, id(kept)), lambda: (kept, make(value)))[1]

    return made


def drawn_once(element, x_range=None, y_range=None, **kwargs) -> hv.RGB:
    """shaded_raster's image, drawn once for the same element (made by `shared`), ranges, size and
    colours, whichever session asks: HoloViews draws a new plot twice, the second time over the
    ranges the first took from the data, and every page opens on the same view. Each call gets
    its own element: HoloViews sets a plot's options on the element it is given."""
    x_range, y_range = x_range or element.range(0), y_range or element.range(1)
    kwargs |= {side: _pixels(kwargs.get(side)) for side in ("width", "height")}
    options = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(kwargs.items()))

    def draw() -> tuple:
        image = shaded_raster(element, x_range=x_range, y_range=y_range, **kwargs)
        return element, image.data, image.bounds.lbrt()

    def stored() -> tuple:
        # A whole element (a view as it opens) is kept on disk too: a fresh server's first page
        # then shows it without datashader compiling its kernels (4-12 s on 2 cores).
        if (x_range, y_range) != (element.range(0), element.range(1)) or not _drawable(x_range, y_range):
            return draw()
        key = content_key("raster-image", _digest(element), x_range, y_range, options, ds.__version__)
        rgba = Cache(memo=True).array(key, "rgba.npy", lambda: draw()[1])
        return element, np.asarray(rgba), (x_range[0], y_range[0], x_range[1], y_range[1])

    _, rgba, bounds = VIEW_CACHE.get(("image", id(element), x_range, y_range, options), stored)
    return hv.RGB(rgba, element.kdims, bounds=bounds)


def _pixels(n: int | None, step: int = PIXEL_STEP) -> int | None:
    """A plot's side in pixels to the nearest multiple of `step`: the browser stretches an image to
    its plot, and the same view in a plot a few pixels narrower (a scroll bar shown or not) is the
    same picture, read from the disk, not drawn again by kernels a fresh server compiles first."""
    return None if n is None else max(step, step * round(n / step))


def _drawable(x_range, y_range) -> bool:
    return bool(np.all(np.isfinite([*x_range, *y_range])) and x_range[1] > x_range[0] and y_range[1] > y_range[0])


def _digest(element: hv.Points | hv.Image) -> str:
    """A hash of what the element draws: its type, dimensions and every column's values."""
    digest = hashlib.sha256(f"{type(element).__name__} {element.dimensions()}".encode())
    data = element.data
    for name in [*getattr(data, "coords", ()), *data]:   # an Image's xarray coordinates, then columns
        values = np.ascontiguousarray(np.asarray(data[name]))
        digest.update(f"{name} {values.dtype} {values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def warm_up() -> None:
    """Compile datashader's kernels for the page's two kinds of raster (spike points, a
    probability image), as a first draw does: a fresh server's first zoom no longer waits."""
    points = hv.Points(pd.DataFrame({"time": [0.0, 1.0], "unit": [0.0, 1.0]}), ["time", "unit"])
    # As a window's: a transposed (time, unit) array, downsampled in time, upsampled across units.
    image = hv.Image(xr.DataArray(np.zeros((64, 2), np.float32).T, coords={"unit": [0.0, 1.0], "time": np.arange(64.0)},
                                  dims=("unit", "time"), name="p"), ["time", "unit"], "p")
    for element, x_range in ((points, None), (image, None), (image, (1.5, 5.5))):   # the last zoomed in
        shaded_raster(element, ["#000000", "#ffffff"], x_range, width=16, height=4)
