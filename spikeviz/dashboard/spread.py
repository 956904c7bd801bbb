"""Spike counts per pixel spread to stay visible when zoomed out: datashader's dynspread (square, summed) in NumPy."""
from __future__ import annotations

import numpy as np

# dynspread's rule as the rasters use it: spread while no more than 60 % of the drawn pixels have
# a neighbour, by 3 pixels at most.
THRESHOLD, MAX_PX = 0.6, 3


def spread(counts: np.ndarray, threshold: float = THRESHOLD, max_px: int = MAX_PX) -> np.ndarray:
    """`counts` (rows x columns) summed over a square 2 px + 1 pixels a side, px the largest up to
    `max_px` for which at most `threshold` of the drawn pixels have another within 2 px: the
    pixels of datashader's `dynspread(counts, threshold, max_px, shape="square")` (a test checks).

    Here rather than datashader's own because its spreading imports `datashader.composite`, which
    compiles 20 numba ufuncs on import: about 2 s of every server's start on 2 cores, for one sum."""
    drawn = counts != 0
    n = drawn.sum()
    if not n:
        return counts
    table = _summed_area(drawn, 2 * max_px, np.int32)
    px = 0
    for p in range(1, max_px + 1):
        if (drawn & (_box(table, 2 * max_px, 2 * p, counts.shape) > 1)).sum() / n > threshold:
            break
        px = p
    if not px:
        return counts
    return _box(_summed_area(counts, px, np.int64), px, px, counts.shape).astype(counts.dtype)


def _summed_area(a: np.ndarray, pad: int, dtype) -> np.ndarray:
    """The summed-area table of `a` padded with `pad` zeros on every side: entry (y, x) sums the
    padded array's rows < y and columns < x."""
    table = np.zeros((a.shape[0] + 2 * pad + 1, a.shape[1] + 2 * pad + 1), dtype)
    table[pad + 1:pad + 1 + a.shape[0], pad + 1:pad + 1 + a.shape[1]] = a
    np.cumsum(table, 0, out=table)
    np.cumsum(table, 1, out=table)
    return table


def _box(table: np.ndarray, pad: int, r: int, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's sum over the (2r + 1)-pixel square around it (cut at the edges), r <= pad."""
    (m, n), lo, hi = shape, pad - r, pad + r + 1
    rows_in, rows_out = slice(hi, hi + m), slice(lo, lo + m)
    cols_in, cols_out = slice(hi, hi + n), slice(lo, lo + n)
    return table[rows_in, cols_in] - table[rows_out, cols_in] - table[rows_in, cols_out] + table[rows_out, cols_out]
