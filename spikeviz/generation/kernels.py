"""Compiled building blocks of the fused free-running loops (numba): layer norm, affine maps, a
transformer block's KV-cache step, and a log that vectorises."""
from __future__ import annotations

import math

import numba
import numpy as np

LN_EPS = 1e-5


@numba.njit(cache=True)
def layer_norm(h, w, b, out):
    d = h.shape[0]
    mean = 0.0
    for i in range(d):
        mean += h[i]
    mean /= d
    var = 0.0
    for i in range(d):
        var += (h[i] - mean) ** 2
    inv = 1.0 / math.sqrt(var / d + LN_EPS)
    for i in range(d):
        out[i] = (h[i] - mean) * inv * w[i] + b[i]


# Reassociation lets the dot products vectorize; no NaN/inf assumptions.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, fastmath=FASTMATH)
def affine(w, x, b, out, add):
    """out = w @ x + b, or out += w @ x + b when `add` (a residual)."""
    for r in range(w.shape[0]):
        s = b[r]
        for i in range(x.shape[0]):
            s += w[r, i] * x[i]
        out[r] = out[r] + s if add else s


@numba.njit(cache=True)
def scratch(blocks, inv_freq, context):
    """The work buffers of `_blocks`, made once per run: (ln, qkv, attention, scores, MLP,
    cos, sin)."""
    ln1w, fc1b, half = blocks[0][0], blocks[0][9], inv_freq.shape[0]
    d, dff = ln1w.shape[0], fc1b.shape[0]
    return (np.empty(d, np.float32), np.empty(3 * d, np.float32), np.empty(d, np.float32),
            np.empty(context, np.float32), np.empty(dff, np.float32),
            np.empty(half, np.float32), np.empty(half, np.float32))


@numba.njit(cache=True, fastmath=FASTMATH)
def step_blocks(h, work, blocks, keys, values, inv_freq, n_heads, pos):
    """Token h (d,) at position `pos` through every block and its KV ring buffer, in place.

    The caches are (heads, hd, context): attention's loops over the cached positions then run
    along contiguous memory.
    """
    a, qkv, att, scores, ff, cs, sn = work
    d = h.shape[0]
    hd = d // n_heads
    half = hd // 2
    context = keys[0].shape[2]
    slot = pos % context
    m = min(pos + 1, context)
    scale = np.float32(1.0 / math.sqrt(hd))
    for i in range(half):
        ang = pos * inv_freq[i]       # float64: positions run into the millions
        cs[i], sn[i] = math.cos(ang), math.sin(ang)
    for li in range(len(blocks)):
        (ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fc1w, fc1b, fc2w, fc2b) = blocks[li]
        Kc, Vc = keys[li], values[li]
        layer_norm(h, ln1w, ln1b, a)
        affine(qkvw, a, qkvb, qkv, False)
        # rotary positions: pairs (i, i + half) of each head's query and key
        for c in range(2 * n_heads):
            o = c * hd
            for i in range(half):
                x1, x2 = qkv[o + i], qkv[o + i + half]
                qkv[o + i] = x1 * cs[i] - x2 * sn[i]
                qkv[o + i + half] = x1 * sn[i] + x2 * cs[i]
        for hh in range(n_heads):
            q = hh * hd
            for e in range(hd):
                Kc[hh, e, slot] = qkv[d + q + e]
                Vc[hh, e, slot] = qkv[2 * d + q + e]
            scores[:m] = 0.0
            for e in range(hd):
                qe = qkv[q + e] * scale
                for s in range(m):
                    scores[s] += qe * Kc[hh, e, s]
            top = scores[:m].max()
            tot = np.float32(0.0)
            for s in range(m):
                scores[s] = math.exp(scores[s] - top)
                tot += scores[s]
            for e in range(hd):
                v = np.float32(0.0)
                for s in range(m):
                    v += scores[s] * Vc[hh, e, s]
                att[q + e] = v / tot
        affine(projw, att, projb, h, True)
        layer_norm(h, ln2w, ln2b, a)
        affine(fc1w, a, fc1b, ff, False)
        for r in range(ff.shape[0]):
            ff[r] = 0.5 * ff[r] * (1.0 + math.erf(ff[r] / math.sqrt(2.0)))
        affine(fc2w, ff, fc2b, h, True)


@numba.njit(cache=True, fastmath=FASTMATH)
def log_inplace(a):
    """Natural log of positive float32 a (1-D, contiguous), in place: Cephes' logf (relative
    error < 2e-7) on the exponent and mantissa bits, so the loop vectorizes (libm's log, called
    per element, took ~40 % of a generalist's free run)."""
    bits = a.view(np.int32)
    e = np.empty(a.shape[0], np.float32)
    for i in range(a.shape[0]):
        b = bits[i]
        e[i] = np.float32(((b >> 23) & 0xFF) - 127)
        bits[i] = (b & 0x007FFFFF) | 0x3F800000           # the mantissa m, in [1, 2)
    for i in range(a.shape[0]):
        m = a[i]
        big = m > np.float32(1.41421356)
        x = np.float32(0.5) * m - np.float32(1.0) if big else m - np.float32(1.0)
        k = e[i] + np.float32(1.0) if big else e[i]
        z = x * x
        y = ((((((((np.float32(7.0376836292e-2) * x - np.float32(1.1514610310e-1)) * x
                   + np.float32(1.1676998740e-1)) * x - np.float32(1.2420140846e-1)) * x
                 + np.float32(1.4249322787e-1)) * x - np.float32(1.6668057665e-1)) * x
               + np.float32(2.0000714765e-1)) * x - np.float32(2.4999993993e-1)) * x
             + np.float32(3.3333331174e-1)) * x * z
        a[i] = (x + y - np.float32(0.5) * z - np.float32(2.12194440e-4) * k
                + np.float32(0.693359375) * k)
