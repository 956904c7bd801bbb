"""Free-running generation in one compiled loop (numba): the KV-cache step (a SpikeTransformer's or a Generalist's), calibration and draw fused per bin."""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from . import kernels
from ..models.model import TRACE_EPS, SpikeTransformer
from ..models import generalist as G
from ..models.build import build_model
from ..models.model import preset_config

# The free-running rate controller (_control below; calibration.RateController is its
# reference): every `every` bins each unit's offset moves by `gain` x log(target rate / its mean
# p over ~`tau` bins), within `max_shift` of its calibrated value.
RATE_CONTROL = {"tau": 2000.0, "every": 100, "gain": 0.02, "max_shift": 1.5}


def supported(model) -> bool:
    """Models the fused loop runs: the Generalist, and transformers with one token per bin for
    all units (not `shared_units`) and traces."""
    cfg = model.config
    return cfg.kind == "generalist" or (not cfg.shared_units and bool(cfg.trace_taus))


@numba.njit(cache=True)
def _draw(g, p, x, out, probs, forced, thresholds):
    """Bin g's spikes from probabilities p: forced (teacher), per-unit thresholds or Bernoulli;
    fed back through x."""
    for j in range(p.shape[0]):
        if forced.shape[0] > 0:
            x[j] = forced[g, j]
        elif thresholds.shape[0] > 0:
            x[j] = 1.0 if p[j] >= thresholds[j] else 0.0
        else:
            x[j] = 1.0 if np.random.random() < p[j] else 0.0
        out[g, j] = np.uint8(x[j])
        if probs.shape[0] > 0:
            probs[g, j] = p[j]


@numba.njit(cache=True)
def _control_state(rates, bias, tau):
    """(on, running mean rates, starting offsets, smoothing) of the rate control in `_control`:
    on when target rates are given."""
    return rates.shape[0] > 0, rates.copy(), bias.copy(), 1.0 / tau


@numba.njit(cache=True)
def _control(g, p, mean, alpha, every, bias, ctrl_gain, rates, start, max_shift):
    """Slow integral control of each unit's offset toward its target rate (mirrors
    calibration.RateController)."""
    for j in range(p.shape[0]):
        mean[j] += alpha * (p[j] - mean[j])
    if (g + 1) % every == 0:
        for j in range(p.shape[0]):
            b = bias[j] + ctrl_gain * (math.log(rates[j]) - math.log(max(mean[j], 1e-7)))
            bias[j] = min(max(b, start[j] - max_shift), start[j] + max_shift)


@numba.njit(cache=True, fastmath=kernels.FASTMATH)
def _run(x0, tr, decay, embed_w, embed_b, blocks, lnf_w, lnf_b, head_w, head_b, own_w,
         inv_freq, n_heads, context, pos0, keys, values, gain, bias, prompt, forced, n,
         thresholds, seed, rates, tau, every, ctrl_gain, max_shift, out, probs):
    """Feed `prompt` rows, then draw n bins (Bernoulli when thresholds is empty) into `out`.

    `forced` (n, N), when not empty, replaces the draws (what the tests compare with `forward`);
    `probs` (n, N), when not empty, receives each bin's probabilities. Returns the position.
    """
    np.random.seed(seed)
    K, N = tr.shape
    feats = np.empty((K + 1) * N, np.float32)
    h = np.empty(embed_b.shape[0], np.float32)
    work = kernels.scratch(blocks, inv_freq, context)
    a = work[0]
    logits = np.empty(N, np.float32)
    p = np.empty(N, np.float32)
    x = x0.copy()
    pos = pos0
    control, mean, start, alpha = _control_state(rates, bias, tau)
    n_prompt = prompt.shape[0]
    for t in range(n_prompt + n - 1):
        if t < n_prompt:
            for j in range(N):
                x[j] = prompt[t, j]
        # traces and token features: the spike, then log traces / 4
        for k in range(K):
            for j in range(N):
                tr[k, j] = decay[k] * tr[k, j] + (1.0 - decay[k]) * x[j]
        for k in range(K):      # logs apart from the update: the update then vectorizes
            for j in range(N):
                feats[(k + 1) * N + j] = math.log(tr[k, j] + np.float32(TRACE_EPS)) / 4.0
        feats[:N] = x
        kernels.affine(embed_w, feats, embed_b, h, False)
        kernels.step_blocks(h, work, blocks, keys, values, inv_freq, n_heads, pos)
        pos += 1
        kernels.layer_norm(h, lnf_w, lnf_b, a)
        kernels.affine(head_w, a, head_b, logits, False)
        for f in range(K + 1):
            for j in range(N):
                logits[j] += own_w[f, j] * feats[f * N + j]
        if t < n_prompt - 1:
            continue
        g = t - n_prompt + 1            # the bin these probabilities are for
        for j in range(N):
            p[j] = 1.0 / (1.0 + math.exp(-(gain * logits[j] + bias[j])))
        _draw(g, p, x, out, probs, forced, thresholds)
        if control:
            _control(g, p, mean, alpha, every, bias, ctrl_gain, rates, start, max_shift)
    return pos


@numba.njit(cache=True, fastmath=kernels.FASTMATH)
def _features(x, tr, consts, base_index, normalize, w):
    """Generalist._features of every unit (columns of tr (K, n), x (n,)): rows 0..K of w
    (K + 3, n) the features, row K + 1 the base logits; the logs batched in one `_log`."""
    rate_floor, lift_mix, ref_rate, base_mix = consts[0], consts[1], consts[2], consts[3]
    K, n = tr.shape
    rate = w[K + 2]
    for j in range(n):
        rate[j] = tr[K - 1, j] + rate_floor
    for k in range(K - 1):
        for j in range(n):
            w[1 + k, j] = ((tr[k, j] + lift_mix * rate[j]) / ((1.0 + lift_mix) * rate[j])
                           if normalize else tr[k, j] + 1e-4)
    for j in range(n):
        w[0, j] = (x[j] + lift_mix * rate[j]) / ((1.0 + lift_mix) * rate[j]) if normalize else 1.0
        w[K, j] = rate[j] / ref_rate
        q = min(tr[base_index, j] + base_mix * rate[j], 0.99)
        w[K + 1, j] = q / (1.0 - q)
    kernels.log_inplace(w[:K + 2].reshape(-1))
    for j in range(n):
        for k in range(K - 1):
            w[1 + k, j] *= 1.0 if normalize else 0.25
        w[0, j] = w[0, j] * 0.25 if normalize else x[j]
        w[K, j] *= 0.25


@numba.njit(cache=True, fastmath=kernels.FASTMATH)
def _run_generalist(tr, decay, consts, base_index, normalize, population, pop_w, pop_b, blocks,
                    lnf_w, lnf_b, popin_w, unit_w, unit_b, out_w, out_b, inv_freq, n_heads,
                    context, keys, values, base_gain, corr_gain, anchor, bias, prompt, forced,
                    n, thresholds, seed, rates, tau, every, ctrl_gain, max_shift, out, probs):
    """The Generalist's step (spikeviz.models.generalist) in one loop: feed `prompt`, then draw n bins
    with p = sigmoid(base_gain * base + corr_gain * correction + bias), like _run."""
    np.random.seed(seed)
    K, N = tr.shape
    d = pop_b.shape[0]
    dff = unit_b.shape[0]
    w = np.empty((K + 3, N), np.float32)
    pw = np.empty((K + 3, 1), np.float32)
    ptr = np.empty((K, 1), np.float32)
    xm = np.empty(1, np.float32)
    h = np.empty(d, np.float32)
    work = kernels.scratch(blocks, inv_freq, context)
    a = work[0]
    hp = np.zeros(dff, np.float32)
    v = np.empty(dff, np.float32)
    unit_wt = np.ascontiguousarray(unit_w.T)
    corr = np.empty(N, np.float32)
    p = np.empty(N, np.float32)
    x = np.zeros(N, np.float32)
    pos = 0
    control, mean, start, alpha = _control_state(rates, bias, tau)
    n_prompt = prompt.shape[0]
    for t in range(n_prompt + n - 1):
        if t < n_prompt:
            for j in range(N):
                x[j] = prompt[t, j]
        for k in range(K):
            s = 0.0
            anchored = k == K - 1 and t >= n_prompt and anchor.shape[0] > 0
            for j in range(N):
                # free: the unit's long rate held at `anchor` (the target's) when given
                tr[k, j] = anchor[j] if anchored else decay[k] * tr[k, j] + (1.0 - decay[k]) * x[j]
                s += tr[k, j]
            ptr[k, 0] = s / N
        s = 0.0
        for j in range(N):
            s += x[j]
        xm[0] = s / N
        if population:
            _features(xm, ptr, consts, base_index, normalize, pw)
            kernels.affine(pop_w, pw[:K + 1, 0], pop_b, h, False)
            kernels.step_blocks(h, work, blocks, keys, values, inv_freq, n_heads, pos)
            kernels.layer_norm(h, lnf_w, lnf_b, a)
            kernels.affine(popin_w, a, unit_b, hp, False)
        else:
            for r in range(dff):
                hp[r] = unit_b[r]
        pos += 1
        if t < n_prompt - 1:
            continue
        _features(x, tr, consts, base_index, normalize, w)
        for j in range(N):
            # hidden units innermost, over contiguous rows of unit_w.T: SIMD lanes
            for r in range(dff):
                v[r] = hp[r]
            for k in range(K + 1):
                fk = w[k, j]
                for r in range(dff):
                    v[r] += unit_wt[k, r] * fk
            s = out_b
            for r in range(dff):
                s += out_w[r] * max(v[r], 0.0)
            corr[j] = s
        g = t - n_prompt + 1            # the bin these probabilities are for
        for j in range(N):
            p[j] = 1.0 / (1.0 + math.exp(-(base_gain * w[K + 1, j] + corr_gain * corr[j]
                                           + bias[j])))
        _draw(g, p, x, out, probs, forced, thresholds)
        if control:
            _control(g, p, mean, alpha, every, bias, ctrl_gain, rates, start, max_shift)
    return pos


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _kv(model) -> tuple:
    cfg = model.config
    hd = cfg.d_model // cfg.n_heads
    blocks = numba.typed.List()
    for b in model.blocks:
        blocks.append(tuple(_np(t) for t in b.step_weights()))
    shape = (cfg.n_heads, hd, cfg.context)     # what _blocks reads
    return (blocks, numba.typed.List([np.zeros(shape, np.float32) for _ in model.blocks]),
            numba.typed.List([np.zeros(shape, np.float32) for _ in model.blocks]))


def free_run(model, traces: np.ndarray, prompt: np.ndarray, n: int,
             gain: float, bias: np.ndarray, *, seed: int = 0,
             thresholds: np.ndarray | None = None, rates: np.ndarray | None = None,
             control: dict | None = None, forced: np.ndarray | None = None,
             anchor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """n bins (uint8) after feeding `prompt` (its traces before it: `traces` (K, N)), with
    p = sigmoid(gain * logit + bias); probabilities too when `forced` bins replace the draws.

    A Generalist's logit is its g0 * base + g1 * correction + g2 (spikeviz.models.generalist)."""
    cfg = model.config
    N = prompt.shape[1]
    blocks, keys, values = _kv(model)
    out = np.zeros((n, N), np.uint8)
    empty = np.zeros((0, N), np.float32)
    probs = np.zeros((n, N), np.float32) if forced is not None else empty
    ctl = RATE_CONTROL | (control or {})
    draw = (np.asarray(prompt, np.float32), empty if forced is None else
            np.asarray(forced, np.float32), n,
            np.zeros(0, np.float32) if thresholds is None else np.asarray(thresholds, np.float32),
            seed, np.zeros(0, np.float32) if rates is None else np.asarray(rates, np.float32),
            float(ctl["tau"]), int(ctl["every"]), float(ctl["gain"]), float(ctl["max_shift"]),
            out, probs)
    if cfg.kind == "generalist":
        g0, g1, g2 = (float(v) for v in model.guard)
        consts = np.array([G.RATE_FLOOR, G.LIFT_MIX, G.REF_RATE, G.BASE_RATE_MIX], np.float32)
        _run_generalist(np.array(traces, np.float32), _np(model._decay.view(-1)), consts,
                        model.base_index, cfg.normalize, cfg.population,
                        _np(model.pop_embed.weight), _np(model.pop_embed.bias), blocks,
                        _np(model.ln_f.weight), _np(model.ln_f.bias), _np(model.pop_in.weight),
                        _np(model.unit_in.weight), _np(model.unit_in.bias),
                        _np(model.out.weight.view(-1)), float(model.out.bias.detach()),
                        np.asarray(model._inv_freq, np.float64), cfg.n_heads, cfg.context, keys,
                        values, float(gain * g0), float(gain * g1),
                        np.zeros(0, np.float32) if anchor is None else np.asarray(anchor, np.float32),
                        np.array(bias, np.float32) + np.float32(gain * g2), *draw)
    else:
        _run(np.zeros(N, np.float32), np.array(traces, np.float32), _np(model._decay.view(-1)),
             _np(model.embed.weight), _np(model.embed.bias), blocks, _np(model.ln_f.weight),
             _np(model.ln_f.bias), _np(model.head.weight), _np(model.head.bias), _np(model.own),
             np.asarray(model._inv_freq, np.float64), cfg.n_heads, cfg.context, 0, keys, values,
             float(gain), np.array(bias, np.float32), *draw)
    return out, (probs if forced is not None else None)


def warm_up() -> None:
    """Load the compiled loops from numba's on-disk cache (the first free run of a process took
    ~1.7 s longer): one bin with a small untrained model of each kind the loop runs."""
    for preset in ("generalist", "fast"):
        model = build_model(preset_config(preset, 2)).eval()
        if supported(model):
            free_run(model, np.zeros((len(model.config.trace_taus), 2), np.float32),
                     np.zeros((1, 2), np.float32), 1, 1.0, np.zeros(2, np.float32))
