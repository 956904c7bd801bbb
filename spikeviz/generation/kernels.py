"""The compiled decoder (numba): `decode`, the free-running loop, and its building blocks (layer
norm, affine maps, a transformer block's KV-cache step, a log that vectorises).

It reads its model and its settings as fused.Weights and fused.Draw (spikeviz.generation.fused
builds them). All its compiled code stays in this one file: numba checks a cached function
against the file that defines it only, so a changed function in another file would leave the
old one running from the cache.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

LN_EPS = 1e-5


class Blocks(NamedTuple):
    """Every transformer block's step weights (Block.step_weights, in its order), each stacked on
    a leading layer axis: `x[layer]` is a contiguous view, and one type serves any depth."""

    ln1_w: np.ndarray
    ln1_b: np.ndarray
    qkv_w: np.ndarray
    qkv_b: np.ndarray
    proj_w: np.ndarray
    proj_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    fc1_w: np.ndarray
    fc1_b: np.ndarray
    fc2_w: np.ndarray
    fc2_b: np.ndarray


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
    """The work buffers of `step_blocks`, made once per run: (ln, qkv, attention, scores, MLP,
    cos, sin)."""
    d, dff, half = blocks.ln1_w.shape[1], blocks.fc1_b.shape[1], inv_freq.shape[0]
    return (np.empty(d, np.float32), np.empty(3 * d, np.float32), np.empty(d, np.float32),
            np.empty(context, np.float32), np.empty(dff, np.float32),
            np.empty(half, np.float32), np.empty(half, np.float32))


@numba.njit(cache=True, fastmath=FASTMATH)
def step_blocks(h, work, blocks, keys, values, inv_freq, n_heads, pos):
    """Token h (d,) at position `pos` through every block (`Blocks`) and its KV ring buffer, in
    place.

    The caches are (layers, heads, hd, context): attention's loops over the cached positions then
    run along contiguous memory.
    """
    a, qkv, att, scores, ff, cs, sn = work
    d = h.shape[0]
    hd = d // n_heads
    half = hd // 2
    context = keys.shape[3]
    slot = pos % context
    m = min(pos + 1, context)
    scale = np.float32(1.0 / math.sqrt(hd))
    for i in range(half):
        ang = pos * inv_freq[i]       # float64: positions run into the millions
        cs[i], sn[i] = math.cos(ang), math.sin(ang)
    B = blocks
    for li in range(B.ln1_w.shape[0]):
        Kc, Vc = keys[li], values[li]
        layer_norm(h, B.ln1_w[li], B.ln1_b[li], a)
        affine(B.qkv_w[li], a, B.qkv_b[li], qkv, False)
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
        affine(B.proj_w[li], att, B.proj_b[li], h, True)
        layer_norm(h, B.ln2_w[li], B.ln2_b[li], a)
        affine(B.fc1_w[li], a, B.fc1_b[li], ff, False)
        for r in range(ff.shape[0]):
            ff[r] = 0.5 * ff[r] * (1.0 + math.erf(ff[r] / math.sqrt(2.0)))
        affine(B.fc2_w[li], ff, B.fc2_b[li], h, True)


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


@numba.njit(cache=True)
def _exceeds(latent, p):
    """Whether Phi(-latent) < p: a joint draw's spike. Most cells have a small p and a latent
    nowhere near its quantile; bounds at 1, 2 and 3 (Phi(-1) = 0.1587, Phi(-2) = 0.02275,
    Phi(-3) = 0.00135, each rounded down) decide them without the erfc, with the same answer."""
    if latent <= 1.0 and p <= 0.1586:
        return False
    if latent <= 2.0 and p <= 0.02274:
        return False
    if latent <= 3.0 and p <= 0.001349:
        return False
    return 0.5 * math.erfc(latent / math.sqrt(2.0)) < p


@numba.njit(cache=True)
def _draw(g, p, x, out, probs, D, factors, last, rng):
    """Bin g's spikes from probabilities p: forced (teacher), per-unit thresholds, Bernoulli, or
    Bernoulli drawn jointly (D.loadings: the shared `factors` move first, `last` holds each
    unit's last drawn spike for the dead time); fed back through x."""
    forced, thresholds, L = D.forced, D.thresholds, D.loadings   # fields read once, not per unit
    joint = forced.shape[0] == 0 and thresholds.shape[0] == 0 and L.shape[1] > 0
    if joint:
        s = math.sqrt(1.0 - D.factor_a * D.factor_a)
        for i in range(L.shape[1]):
            factors[i] = D.factor_a * factors[i] + s * rng.standard_normal()
    for j in range(p.shape[0]):
        if forced.shape[0] > 0:
            x[j] = forced[g, j]
        elif thresholds.shape[0] > 0:
            x[j] = 1.0 if p[j] >= thresholds[j] else 0.0
        elif joint:
            latent = D.unique[j] * rng.standard_normal()
            for i in range(L.shape[1]):
                latent += L[j, i] * factors[i]
            spike = g - last[j] >= D.dead_bins and _exceeds(latent, p[j])
            x[j] = 1.0 if spike else 0.0
            if spike:
                last[j] = g
        else:
            x[j] = 1.0 if rng.random() < p[j] else 0.0
        out[g, j] = np.uint8(x[j])
        if probs.shape[0] > 0:
            probs[g, j] = p[j]


@numba.njit(cache=True)
def _control(g, p, mean, bias, D):
    """Slow integral control of each unit's offset toward its target rate (mirrors
    calibration.RateController), within max_shift of D.bias."""
    alpha = 1.0 / D.tau
    for j in range(p.shape[0]):
        mean[j] += alpha * (p[j] - mean[j])
    if (g + 1) % D.every == 0:
        for j in range(p.shape[0]):
            b = bias[j] + D.ctrl_gain * (math.log(D.rates[j]) - math.log(max(mean[j], 1e-7)))
            bias[j] = min(max(b, D.bias[j] - D.max_shift), D.bias[j] + D.max_shift)


@numba.njit(cache=True, fastmath=FASTMATH)
def _features(W, x, tr, w):
    """Generalist._features of every unit (columns of tr (K, n), x (n,)): rows 0..K of w
    (K + 3, n) the features, row K + 1 the base logits; the logs batched in one `log_inplace`."""
    K, n = tr.shape
    rate = w[K + 2]
    mix = W.lift_mix
    for j in range(n):
        rate[j] = tr[K - 1, j] + W.rate_floor
    for k in range(K - 1):
        for j in range(n):
            w[1 + k, j] = ((tr[k, j] + mix * rate[j]) / ((1.0 + mix) * rate[j])
                           if W.normalize else tr[k, j] + 1e-4)
    for j in range(n):
        w[0, j] = (x[j] + mix * rate[j]) / ((1.0 + mix) * rate[j]) if W.normalize else 1.0
        w[K, j] = rate[j] / W.ref_rate
        q = min(tr[W.base_index, j] + W.base_mix * rate[j], 0.99)
        w[K + 1, j] = q / (1.0 - q)
    log_inplace(w[:K + 2].reshape(-1))
    for j in range(n):
        for k in range(K - 1):
            w[1 + k, j] *= 1.0 if W.normalize else 0.25
        w[0, j] = w[0, j] * 0.25 if W.normalize else x[j]
        w[K, j] *= 0.25


@numba.njit(cache=True)
def _scratch(W, K, N):
    """The per-run buffers of `_advance` and `_readout`: (stream h, block work, keys, values,
    transformer tokens, unit features, population features, population traces, population
    spike, hidden layer, its per-unit copy)."""
    L, d = W.blocks.ln1_w.shape[0], W.blocks.ln1_w.shape[1]
    cache = (L, W.n_heads, d // W.n_heads, W.context)
    dff = W.head_b.shape[0]
    return (np.empty(d, np.float32), scratch(W.blocks, W.inv_freq, W.context),
            np.zeros(cache, np.float32), np.zeros(cache, np.float32),
            np.empty(0 if W.generalist else (K + 1) * N, np.float32),
            np.empty((K + 3, N), np.float32), np.empty((K + 3, 1), np.float32),
            np.empty((K, 1), np.float32), np.empty(1, np.float32), np.empty(dff, np.float32),
            np.empty(dff, np.float32))


@numba.njit(cache=True, fastmath=FASTMATH)
def _advance(W, x, tr, pos, S):
    """Bin x (its traces tr already updated) into the sequence at `pos`: the transformer's token
    through the blocks, or the generalist's population state into its hidden layer."""
    h, work, keys, values, tokens, _, pw, ptr, xm, hidden, _ = S
    K, N = tr.shape
    if not W.generalist:
        for k in range(K):      # logs apart from the trace update: the update then vectorizes
            for j in range(N):
                tokens[(k + 1) * N + j] = math.log(tr[k, j] + np.float32(W.trace_eps)) / 4.0
        tokens[:N] = x
        affine(W.embed_w, tokens, W.embed_b, h, False)
        step_blocks(h, work, W.blocks, keys, values, W.inv_freq, W.n_heads, pos)
        return
    if not W.population:
        hidden[:] = W.head_b
        return
    for k in range(K):
        s = 0.0
        for j in range(N):
            s += tr[k, j]
        ptr[k, 0] = s / N
    s = 0.0
    for j in range(N):
        s += x[j]
    xm[0] = s / N
    _features(W, xm, ptr, pw)
    affine(W.embed_w, pw[:K + 1, 0], W.embed_b, h, False)
    step_blocks(h, work, W.blocks, keys, values, W.inv_freq, W.n_heads, pos)
    layer_norm(h, W.lnf_w, W.lnf_b, work[0])
    affine(W.head_w, work[0], W.head_b, hidden, False)


@numba.njit(cache=True, fastmath=FASTMATH)
def _readout(W, x, tr, S, logits):
    """The logits (N,) of the next bin after `_advance`."""
    h, work, _, _, tokens, w, _, _, _, hidden, v = S
    K, N = tr.shape
    if not W.generalist:
        a = work[0]
        layer_norm(h, W.lnf_w, W.lnf_b, a)
        affine(W.head_w, a, W.head_b, logits, False)
        own = W.own
        for f in range(K + 1):
            for j in range(N):
                logits[j] += own[f, j] * tokens[f * N + j]
        return
    _features(W, x, tr, w)
    dff = hidden.shape[0]
    own, out_w, g = W.own, W.out_w, W.guard     # fields read once, not per unit
    for j in range(N):
        # hidden units innermost, over contiguous rows of own (unit_in.weight.T): SIMD lanes
        for r in range(dff):
            v[r] = hidden[r]
        for k in range(K + 1):
            fk = w[k, j]
            for r in range(dff):
                v[r] += own[k, r] * fk
        s = W.out_b
        for r in range(dff):
            s += out_w[r] * max(v[r], 0.0)
        logits[j] = g[0] * w[K + 1, j] + g[1] * s + g[2]


@numba.njit(cache=True, fastmath=FASTMATH)
def decode(W: NamedTuple, D: NamedTuple, traces: np.ndarray, prompt: np.ndarray, n: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Feed `prompt` (at least one row; its traces before it: `traces` (K, N)), then draw n bins
    under the model W (fused.Weights) and the settings D (fused.Draw) with the random numbers of
    `rng` (seeded from D.seed: numba's Generator draws normals 8x faster than its legacy
    np.random): (spikes (n, N), probabilities (n, N), or (0, N) unless D.record)."""
    tr = traces.copy()
    K, N = tr.shape
    S = _scratch(W, K, N)
    logits = np.empty(N, np.float32)
    p = np.empty(N, np.float32)
    x = np.zeros(N, np.float32)
    out = np.zeros((n, N), np.uint8)
    probs = np.zeros((n if D.record else 0, N), np.float32)
    bias = D.bias.copy()
    mean = D.rates.copy()
    factors = np.zeros(D.loadings.shape[1])
    for i in range(factors.shape[0]):      # stationary from the first bin (no draw without them)
        factors[i] = rng.standard_normal()
    last = np.full(N, -(1 << 40), np.int64)
    decay, anchor = W.decay, D.anchor
    n_prompt = prompt.shape[0]
    for t in range(n_prompt + n - 1):
        if t < n_prompt:
            for j in range(N):
                x[j] = prompt[t, j]
        for k in range(K):
            for j in range(N):
                tr[k, j] = decay[k] * tr[k, j] + (1.0 - decay[k]) * x[j]
        if t >= n_prompt and anchor.shape[0] > 0:
            for j in range(N):
                tr[K - 1, j] = anchor[j]
        _advance(W, x, tr, t, S)
        if t < n_prompt - 1:
            continue
        _readout(W, x, tr, S, logits)
        g = t - n_prompt + 1            # the bin these probabilities are for
        for j in range(N):
            p[j] = 1.0 / (1.0 + math.exp(-(D.gain * logits[j] + bias[j])))
        _draw(g, p, x, out, probs, D, factors, last, rng)
        if D.rates.shape[0] > 0:
            _control(g, p, mean, bias, D)
    return out, probs
