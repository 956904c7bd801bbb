"""Free-running generation in one compiled loop (numba): the KV-cache step, calibration and draw fused per bin."""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from .calibration import RATE_CONTROL
from .model import TRACE_EPS, SpikeTransformer

LN_EPS = 1e-5


def supported(model: SpikeTransformer) -> bool:
    """Models the fused loop runs: one token per bin for all units (not `shared_units`), with traces."""
    return not model.config.shared_units and bool(model.config.trace_taus)


@numba.njit(cache=True)
def _layer_norm(h, w, b, out):
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
@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _run(x0, tr, decay, embed_w, embed_b, blocks, lnf_w, lnf_b, head_w, head_b, own_w,
         inv_freq, n_heads, context, pos0, keys, values, gain, bias, prompt, forced, n,
         thresholds, seed, rates, tau, every, ctrl_gain, max_shift, out, probs):
    """Feed `prompt` rows, then draw n bins (Bernoulli when thresholds is empty) into `out`.

    `forced` (n, N), when not empty, replaces the draws (what the tests compare with `forward`);
    `probs` (n, N), when not empty, receives each bin's probabilities. Returns the position.
    """
    np.random.seed(seed)
    K, N = tr.shape
    d = embed_b.shape[0]
    hd = d // n_heads
    half = hd // 2
    feats = np.empty((K + 1) * N, np.float32)
    h = np.empty(d, np.float32)
    a = np.empty(d, np.float32)
    att = np.empty(d, np.float32)
    scores = np.empty(context, np.float32)
    zero = np.float32(0.0)
    logits = np.empty(N, np.float32)
    p = np.empty(N, np.float32)
    x = x0.copy()
    pos = pos0
    control = rates.shape[0] > 0
    mean = rates.copy()
    start = bias.copy()
    alpha = 1.0 / tau
    n_prompt = prompt.shape[0]
    for t in range(n_prompt + n - 1):
        if t < n_prompt:
            for j in range(N):
                x[j] = prompt[t, j]
        # traces and token features: the spike, then log traces / 4
        for k in range(K):
            for j in range(N):
                tr[k, j] = decay[k] * tr[k, j] + (1.0 - decay[k]) * x[j]
                feats[(k + 1) * N + j] = math.log(tr[k, j] + TRACE_EPS) / 4.0
        for j in range(N):
            feats[j] = x[j]
        for i in range(d):
            s = embed_b[i]
            for f in range(feats.shape[0]):
                s += embed_w[i, f] * feats[f]
            h[i] = s
        slot = pos % context
        m = min(pos + 1, context)
        for li in range(len(blocks)):
            (ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fc1w, fc1b, fc2w, fc2b) = blocks[li]
            Kc, Vc = keys[li], values[li]
            _layer_norm(h, ln1w, ln1b, a)
            qkv = qkvb.copy()
            for r in range(3 * d):
                s = zero
                for i in range(d):
                    s += qkvw[r, i] * a[i]
                qkv[r] += s
            # rotary positions: pairs (i, i + half) of each head's query and key
            for c in range(2 * n_heads):
                o = c * hd
                for i in range(half):
                    ang = pos * inv_freq[i]
                    cs, sn = math.cos(ang), math.sin(ang)
                    x1, x2 = qkv[o + i], qkv[o + i + half]
                    qkv[o + i] = x1 * cs - x2 * sn
                    qkv[o + i + half] = x1 * sn + x2 * cs
            for hh in range(n_heads):
                for e in range(hd):
                    Kc[hh, slot, e] = qkv[d + hh * hd + e]
                    Vc[hh, slot, e] = qkv[2 * d + hh * hd + e]
                top = -1e300
                for s_ in range(m):
                    s = zero
                    for e in range(hd):
                        s += qkv[hh * hd + e] * Kc[hh, s_, e]
                    s /= math.sqrt(hd)
                    scores[s_] = s
                    top = max(top, s)
                tot = zero
                for s_ in range(m):
                    scores[s_] = math.exp(scores[s_] - top)
                    tot += scores[s_]
                for e in range(hd):
                    s = zero
                    for s_ in range(m):
                        s += scores[s_] * Vc[hh, s_, e]
                    att[hh * hd + e] = s / tot
            for r in range(d):
                s = projb[r]
                for i in range(d):
                    s += projw[r, i] * att[i]
                h[r] += s
            _layer_norm(h, ln2w, ln2b, a)
            ff = fc1b.copy()
            for r in range(ff.shape[0]):
                s = zero
                for i in range(d):
                    s += fc1w[r, i] * a[i]
                v = ff[r] + s
                ff[r] = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
            for r in range(d):
                s = fc2b[r]
                for i in range(ff.shape[0]):
                    s += fc2w[r, i] * ff[i]
                h[r] += s
        pos += 1
        _layer_norm(h, lnf_w, lnf_b, a)
        for j in range(N):
            s = head_b[j]
            for i in range(d):
                s += head_w[j, i] * a[i]
            for f in range(K + 1):
                s += own_w[f, j] * feats[f * N + j]
            logits[j] = s
        if t < n_prompt - 1:
            continue
        g = t - n_prompt + 1            # the bin these probabilities are for
        for j in range(N):
            p[j] = 1.0 / (1.0 + math.exp(-(gain * logits[j] + bias[j])))
            if forced.shape[0] > 0:
                x[j] = forced[g, j]
            elif thresholds.shape[0] > 0:
                x[j] = 1.0 if p[j] >= thresholds[j] else 0.0
            else:
                x[j] = 1.0 if np.random.random() < p[j] else 0.0
            out[g, j] = np.uint8(x[j])
            if probs.shape[0] > 0:
                probs[g, j] = p[j]
        if control:
            # slow integral control of each unit's offset toward its target rate (see
            # calibration.RateController, which this mirrors)
            for j in range(N):
                mean[j] += alpha * (p[j] - mean[j])
            if (g + 1) % every == 0:
                for j in range(N):
                    b = bias[j] + ctrl_gain * (math.log(rates[j]) - math.log(max(mean[j], 1e-7)))
                    bias[j] = min(max(b, start[j] - max_shift), start[j] + max_shift)
    return pos


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def free_run(model: SpikeTransformer, traces: np.ndarray, prompt: np.ndarray, n: int,
             gain: float, bias: np.ndarray, *, seed: int = 0,
             thresholds: np.ndarray | None = None, rates: np.ndarray | None = None,
             control: dict | None = None, forced: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """n bins (uint8) after feeding `prompt` (its traces before it: `traces` (K, N)), with
    p = sigmoid(gain * logit + bias); probabilities too when `forced` bins replace the draws."""
    cfg = model.config
    N = prompt.shape[1]
    hd = cfg.d_model // cfg.n_heads
    blocks = numba.typed.List()
    for b in model.blocks:
        w = [_np(t) for t in b.step_weights()]
        blocks.append(tuple(w))
    keys = numba.typed.List([np.zeros((cfg.n_heads, cfg.context, hd), np.float32)
                             for _ in model.blocks])
    values = numba.typed.List([np.zeros((cfg.n_heads, cfg.context, hd), np.float32)
                               for _ in model.blocks])
    out = np.zeros((n, N), np.uint8)
    empty = np.zeros((0, N), np.float32)
    probs = np.zeros((n, N), np.float32) if forced is not None else empty
    ctl = RATE_CONTROL | (control or {})
    _run(np.zeros(N, np.float32), np.array(traces, np.float32), _np(model._decay.view(-1)),
         _np(model.embed.weight), _np(model.embed.bias), blocks, _np(model.ln_f.weight),
         _np(model.ln_f.bias), _np(model.head.weight), _np(model.head.bias), _np(model.own),
         np.asarray(model._inv_freq, np.float64), cfg.n_heads, cfg.context, 0, keys, values,
         float(gain), np.array(bias, np.float32), np.asarray(prompt, np.float32),
         empty if forced is None else np.asarray(forced, np.float32), n,
         np.zeros(0, np.float32) if thresholds is None else np.asarray(thresholds, np.float32),
         seed, np.zeros(0, np.float32) if rates is None else np.asarray(rates, np.float32),
         float(ctl["tau"]), int(ctl["every"]), float(ctl["gain"]), float(ctl["max_shift"]),
         out, probs)
    return out, (probs if forced is not None else None)
