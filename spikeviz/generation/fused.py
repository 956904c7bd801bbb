"""The compiled decoder's front (spikeviz.generation.kernels runs it): one free-running loop for
every model it runs (a SpikeTransformer with traces, a Generalist), the model's step,
calibration, draw and rate control fused per bin.

The loop reads a model as one structure, `Weights`, built once from the torch module by
`weights`, and a run's draw and control settings as another, `Draw` (`draw_settings`); one
compiled loop serves both kinds. The torch module is the reference: its `step`
(spikeviz.models), driven by generate's torch loop `predict.run_eager`, must give the same
probabilities and spikes, and tests/test_decoder.py checks that over presets, depths, ablations,
past contexts, the held rate trace and the rate controller.

How to change the model: change the torch module (its `forward` and its `step`, which
tests/test_model.py holds together), then the parameters `weights` reads here and the step that
uses them in kernels.py (`_advance`, `_readout`, `_features`, `step_blocks`), and run
tests/test_decoder.py: it fails until the two agree. A new setting of a run goes into `Draw`,
`draw_settings`, kernels.decode and `predict.run_eager`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from . import kernels
from .copula import unique_scales
from ..models.model import TRACE_EPS
from ..models import generalist as G
from ..models.build import build_model
from ..models.model import preset_config

# The free-running rate controller (kernels._control; calibration.RateController is its
# reference): every `every` bins each unit's offset moves by `gain` x log(target rate / its mean
# p over ~`tau` bins), within `max_shift` of its calibrated value.
RATE_CONTROL = {"tau": 2000.0, "every": 100, "gain": 0.02, "max_shift": 1.5}


class Weights(NamedTuple):
    """A model as the compiled decoder reads it (`weights`). Both kinds have one type, fields the
    other kind lacks left empty, so that one compiled loop serves both.

    The transformer: tokens [spike, log(trace + eps) / 4] of all units -> `embed` -> blocks ->
    ln_f -> `head` (N logits) + `own` (K + 1, N) x the unit's own features. The generalist: the
    population's features -> `embed` -> blocks -> ln_f -> `head` (its pop_in, with unit_in's bias:
    the hidden layer's population part) and, per unit, relu(hidden + `own` (K + 1, d_ff) x its
    features) . out_w + out_b = its correction; logit = guard . (base, correction, 1).
    """

    generalist: bool
    population: bool            # generalist: the population stream runs (else it adds 0)
    normalize: bool             # generalist: rate-normalised inputs (else raw log traces)
    base_index: int             # generalist: the trace of its EWMA base
    decay: np.ndarray           # (K,) each trace's decay per bin
    embed_w: np.ndarray
    embed_b: np.ndarray
    blocks: kernels.Blocks
    lnf_w: np.ndarray
    lnf_b: np.ndarray
    inv_freq: np.ndarray        # float64: rotary frequencies
    n_heads: int
    context: int
    head_w: np.ndarray
    head_b: np.ndarray
    own: np.ndarray
    out_w: np.ndarray           # generalist: (d_ff,)
    out_b: float
    guard: np.ndarray           # generalist: (g0, g1, g2)
    # Constants as fields, not globals: numba's cache would keep a changed global's old value.
    trace_eps: float
    rate_floor: float
    lift_mix: float
    ref_rate: float
    base_mix: float


class Draw(NamedTuple):
    """A free run's settings (`draw_settings`): p = sigmoid(gain * logit + bias), then the draw.
    Empty arrays mean "none"."""

    gain: float
    bias: np.ndarray            # (N,) offsets; the rate controller moves a copy
    seed: int
    thresholds: np.ndarray      # (N,) p >= threshold spikes; empty: Bernoulli
    forced: np.ndarray          # (n, N) bins that replace the draws (teacher forcing)
    anchor: np.ndarray          # (N,) the long-rate trace held here while free (calibration)
    rates: np.ndarray           # (N,) the rate controller's targets; empty: no control
    tau: float
    every: int
    ctrl_gain: float
    max_shift: float
    record: bool                # keep each bin's probabilities
    # Joint Bernoulli draws (generation.copula): a unit spikes where Phi(-g) < p, g = loadings .
    # f + unique e, f unit-variance AR(1) factors (factor_a per bin), and not within dead_bins
    # of its last drawn spike. loadings (N, 0): independent draws.
    loadings: np.ndarray
    unique: np.ndarray
    factor_a: float
    dead_bins: int


def supported(model: torch.nn.Module) -> bool:
    """Models the compiled decoder runs: the Generalist, and transformers with one token per bin
    for all units (not `shared_units`) and traces."""
    cfg = model.config
    return cfg.kind == "generalist" or (not cfg.shared_units and bool(cfg.trace_taus))


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def weights(model: torch.nn.Module) -> Weights:
    """`model` (a supported one) as the compiled decoder reads it."""
    cfg = model.config
    per_layer = zip(*([_np(t) for t in b.step_weights()] for b in model.blocks))
    blocks = kernels.Blocks(*(np.stack(w) for w in per_layer))
    gen = cfg.kind == "generalist"
    if gen:
        embed, head_w, head_b = model.pop_embed, model.pop_in.weight, model.unit_in.bias
        own, out_w, out_b, guard = (model.unit_in.weight.T, model.out.weight.view(-1),
                                    model.out.bias, model.guard)
    else:
        embed, head_w, head_b = model.embed, model.head.weight, model.head.bias
        own, out_w, out_b, guard = model.own, torch.zeros(0), torch.zeros(1), torch.zeros(3)
    return Weights(
        generalist=gen, population=bool(cfg.population), normalize=bool(cfg.normalize),
        base_index=int(model.base_index) if gen else 0, decay=_np(model._decay.view(-1)),
        embed_w=_np(embed.weight), embed_b=_np(embed.bias), blocks=blocks,
        lnf_w=_np(model.ln_f.weight), lnf_b=_np(model.ln_f.bias),
        inv_freq=np.asarray(model._inv_freq, np.float64), n_heads=int(cfg.n_heads),
        context=int(cfg.context), head_w=_np(head_w), head_b=_np(head_b), own=_np(own),
        out_w=_np(out_w), out_b=float(out_b.detach()), guard=_np(guard), trace_eps=TRACE_EPS,
        rate_floor=G.RATE_FLOOR, lift_mix=G.LIFT_MIX, ref_rate=G.REF_RATE,
        base_mix=G.BASE_RATE_MIX)


def _f32(a, empty: tuple[int, ...]) -> np.ndarray:
    return np.zeros(empty, np.float32) if a is None else np.ascontiguousarray(a, np.float32)


def draw_settings(gain: float, bias: np.ndarray, *, seed: int = 0,
                  thresholds: np.ndarray | None = None, rates: np.ndarray | None = None,
                  control: dict | None = None, forced: np.ndarray | None = None,
                  anchor: np.ndarray | None = None, record: bool | None = None,
                  copula=None) -> Draw:
    """The settings of a free run over len(bias) units (RATE_CONTROL updated by `control`);
    `record` (default: when `forced`) keeps the probabilities; `copula` (a
    generation.copula.PopulationCopula) draws a bin's units jointly (its gains left out: the
    closed-loop offsets and the rate controller hold the rates)."""
    N = len(bias)
    ctl = RATE_CONTROL | (control or {})
    joint = copula is not None and not copula.independent
    L = copula.loadings if joint else np.zeros((N, 0), np.float32)
    return Draw(gain=float(gain), bias=_f32(bias, (N,)).copy(), seed=int(seed),
                thresholds=_f32(thresholds, (0,)), forced=_f32(forced, (0, N)),
                anchor=_f32(anchor, (0,)), rates=_f32(rates, (0,)), tau=float(ctl["tau"]),
                every=int(ctl["every"]), ctrl_gain=float(ctl["gain"]),
                max_shift=float(ctl["max_shift"]),
                record=forced is not None if record is None else bool(record),
                loadings=np.ascontiguousarray(L, np.float32),
                unique=unique_scales(L),
                factor_a=float(np.exp(-copula.bin_ms / copula.tau_ms)) if joint else 0.0,
                dead_bins=int(copula.dead_bins) if joint else 1)


def run(model: torch.nn.Module, traces: np.ndarray, prompt: np.ndarray, n: int, draw: Draw
        ) -> tuple[np.ndarray, np.ndarray | None]:
    """n bins (uint8) after feeding `prompt` (at least one row; its traces before it: `traces`
    (K, N)) under `draw`, and their probabilities when draw.record (else None)."""
    out, probs = kernels.decode(weights(model), draw, np.array(traces, np.float32),
                                np.ascontiguousarray(prompt, np.float32), int(n),
                                np.random.default_rng(draw.seed))
    return out, (probs if draw.record else None)


def free_run(model: torch.nn.Module, traces: np.ndarray, prompt: np.ndarray, n: int,
             gain: float, bias: np.ndarray, **settings) -> tuple[np.ndarray, np.ndarray | None]:
    """`run` with the settings of `draw_settings(gain, bias, **settings)`: p = sigmoid(gain *
    logit + bias), probabilities too when `forced` bins replace the draws.

    A Generalist's logit is its g0 * base + g1 * correction + g2 (spikeviz.models.generalist)."""
    return run(model, traces, prompt, n, draw_settings(gain, bias, **settings))


def warm_up() -> None:
    """Load the compiled loop from numba's on-disk cache (the first free run of a process took
    ~1.7 s longer): one bin with a small untrained model of each kind the loop runs."""
    for preset in ("generalist", "fast"):
        model = build_model(preset_config(preset, 2)).eval()
        if supported(model):
            free_run(model, np.zeros((len(model.config.trace_taus), 2), np.float32),
                     np.zeros((1, 2), np.float32), 1, 1.0, np.zeros(2, np.float32))
