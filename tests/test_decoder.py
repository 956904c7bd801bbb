"""The compiled decoder (spikeviz.generation.fused) equals its reference, the torch model stepped
bin by bin by generate's torch loop (predict.run_eager), over presets, depths, ablations, unit
counts, contexts, densities, positions past the context, the held rate trace and the rate
controller; and its probabilities equal a forward pass over the window before each bin."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeviz.generation import fused
from spikeviz.generation.kernels import _exceeds, log_inplace
from spikeviz.generation.predict import run_eager
from spikeviz.models.build import build_model
from spikeviz.models.model import compute_traces, final_traces, preset_config


def spikes(T, N, seed=0, density=0.1):
    return (np.random.default_rng(seed).random((T, N)) < density).astype(np.uint8)


@st.composite
def cases(draw):
    """A small random model (every weight perturbed, so that each one counts), a past, a prompt
    and the settings of a deterministic run: forced bins or per-unit thresholds."""
    preset = draw(st.sampled_from(["fast", "generalist"]))
    switches = ({"normalize": draw(st.booleans()), "population": draw(st.booleans())}
                if preset == "generalist" else {})
    context = draw(st.sampled_from([4, 8, 16, 32]))
    N = draw(st.integers(1, 12))
    cfg = preset_config(preset, N, n_layers=draw(st.integers(1, 2)), context=context, **switches)
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        if preset == "fast" and not draw(st.booleans()):
            model.own.zero_()      # without the own-history path
        if preset == "generalist":
            model.guard.copy_(torch.tensor([1.0, 1.0, 0.0]) + 0.3 * torch.randn(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    density = draw(st.floats(0.005, 0.4))
    past = (rng.random((draw(st.integers(0, 3000)), N)) < density).astype(np.uint8)
    prompt = (rng.random((draw(st.integers(1, 2 * context)), N)) < density).astype(np.uint8)
    n = draw(st.integers(1, 3 * context))          # runs past the context
    forced = rng.random((n, N)) < density if draw(st.booleans()) else None
    control = draw(st.booleans())
    settings_ = fused.draw_settings(
        draw(st.floats(0.3, 2.0)), rng.normal(-2.0, 1.0, N), record=True,
        thresholds=rng.uniform(0.02, 0.5, N), forced=forced,
        anchor=rng.uniform(0.002, 0.1, N) if draw(st.booleans()) else None,
        rates=rng.uniform(0.01, 0.2, N) if control else None,
        control={"tau": 20.0, "every": draw(st.integers(1, 5)), "gain": 0.3, "max_shift": 1.0})
    return model, final_traces(past, cfg.trace_taus), prompt, n, settings_


@settings(max_examples=20, deadline=None)
@given(cases())
def test_compiled_decoder_equals_the_torch_step(case):
    model, traces, prompt, n, draw = case
    out, P = fused.run(model, traces, prompt, n, draw)
    ref_out, ref_P = run_eager(model, traces, prompt, n, draw)
    # A threshold draw may flip where p sits on the threshold within float32 rounding: from the
    # first such bin on the two runs feed back different spikes, so only the bins up to it count.
    differ = np.flatnonzero((out != ref_out).any(1))
    last = n if len(differ) == 0 else differ[0] + 1
    if len(differ):
        g = differ[0]
        flipped = out[g] != ref_out[g]
        assert np.all(np.abs(ref_P[g, flipped] - draw.thresholds[flipped]) < 1e-4), g
    np.testing.assert_allclose(P[:last], ref_P[:last], atol=1e-5)


def test_fused_free_run_matches_forward():
    torch.manual_seed(1)
    model = build_model(preset_config("fast", 10, context=48)).eval()
    with torch.no_grad():
        model.own.normal_(0, 0.5)          # the own-history path, zero when untrained
    assert fused.supported(model) and not fused.supported(
        build_model(preset_config("transfer", 10)))
    full = spikes(160, 10)
    tr = compute_traces(full, model.config.trace_taus)
    a = 53
    # Prompt full[a:100] after its traces, then bins 100.. forced to the real ones: the fused
    # loop's probability for bin t must equal a forward pass over the (<= 48) bins before it.
    _, P = fused.free_run(model, tr[a - 1], full[a:100], 60, 1.0, np.zeros(10),
                          forced=full[100:160])
    with torch.inference_mode():
        for t in (100, 101, 130, 159):
            lo = max(a, t - 48)
            ref = torch.sigmoid(model(torch.from_numpy(full[lo:t][None].astype(np.float32)),
                                      torch.from_numpy(tr[lo:t][None])))[0, -1].numpy()
            np.testing.assert_allclose(P[t - 100], ref, atol=1e-5)
    # The affine calibration map and the rate controller act in the loop.
    hi, _ = fused.free_run(model, tr[a - 1], full[a:100], 2000, 1.0, np.full(10, 2.0))
    lo_, _ = fused.free_run(model, tr[a - 1], full[a:100], 2000, 1.0, np.full(10, -2.0))
    assert hi.mean() > 2 * lo_.mean()
    rates = np.full(10, 0.02, np.float32)
    held, _ = fused.free_run(model, tr[a - 1], full[a:100], 4000, 1.0, np.full(10, 2.0),
                             rates=rates, control={"gain": 0.05, "max_shift": 4.0})
    assert held[2000:].mean() < 0.5 * hi[:2000].mean()


def test_fused_log_is_as_accurate_as_float32():
    """The compiled loop's vectorised log: within a few float32 rounding steps of the true log,
    from near-silent traces to saturated odds."""
    a = np.geomspace(1e-7, 1e4, 100_001).astype(np.float32)
    out = a.copy()
    log_inplace(out)
    exact = np.log(a.astype(np.float64))
    assert np.all(np.abs(out - exact) <= 4e-7 * np.maximum(np.abs(exact), 1.0))


def test_joint_spike_shortcuts_decide_as_the_normal_tail():
    """The joint draw's bounds before the erfc (kernels._exceeds) never change a decision: on
    a grid through each bound, with probabilities on both sides of each tail."""
    tails = [0.5 * math.erfc(b / math.sqrt(2.0)) for b in (1.0, 2.0, 3.0)]
    ps = sorted({q * f for q in tails for f in (0.999, 0.9999, 1.0001, 1.001)}
                | set(np.geomspace(1e-6, 0.99, 60).tolist()))
    for latent in np.linspace(-6.0, 6.0, 1201).tolist() + [0.999999, 1.999999, 2.999999]:
        for p in ps:
            assert _exceeds(latent, p) == (0.5 * math.erfc(latent / math.sqrt(2.0)) < p), (latent, p)


@pytest.mark.parametrize("switches", [{}, {"normalize": False}, {"population": False}])
def test_fused_generalist_free_run_matches_forward(switches):
    """The generalist's compiled free-running step gives forward's probabilities (past its
    context too), with its guard applied, in the ablations too."""
    torch.manual_seed(0)
    model = build_model(replace(preset_config("generalist", 10), **switches)).eval()
    with torch.no_grad():
        model.out.weight.normal_(0, 0.5)
        model.out.bias.fill_(0.3)
        model.guard.copy_(torch.tensor([1.3, 0.7, -0.2]))
    assert fused.supported(model)
    full = spikes(400, 10, density=0.05)
    tr = compute_traces(full, model.config.trace_taus)
    a, C = 53, model.config.context
    _, P = fused.free_run(model, tr[a - 1], full[a:100], 300, 1.0, np.zeros(10),
                          forced=full[100:400])
    with torch.inference_mode():
        for t in (100, 101, 250, 399):
            lo = max(a, t - C)
            ref = torch.sigmoid(model(torch.from_numpy(full[lo:t][None].astype(np.float32)),
                                      torch.from_numpy(tr[lo:t][None])))[0, -1].numpy()
            np.testing.assert_allclose(P[t - 100], ref, atol=1e-5)


def test_joint_draws_fire_together_in_the_compiled_decoder_and_its_reference():
    """A copula's free-running draws (fused.draw_settings(copula=...)): units co-fire, none
    within the dead time of its own last spike, at the rate of the other loop. The compiled loop
    and run_eager draw from different generators: compared by their statistics. (Gain 0: every
    bin's p is sigmoid(-3), whatever the model makes of its draws.)"""
    from spikeviz.generation.copula import PopulationCopula
    from spikeviz.measures.population import count_correlations, window_sums
    from spikeviz.measures.stats import isi_values

    torch.manual_seed(0)
    model = build_model(preset_config("generalist", 8)).eval()
    traces = final_traces(spikes(500, 8, density=0.02), model.config.trace_taus)
    prompt = spikes(64, 8, seed=1, density=0.02)
    copula = PopulationCopula(np.full((8, 1), 0.8, np.float32), tau_ms=20.0, dead_bins=3)
    off = ~np.eye(8, dtype=bool)
    rates = []
    for run in (fused.run, run_eager):
        out = run(model, traces, prompt, 6000, fused.draw_settings(0.0, np.full(8, -3.0), seed=1,
                                                                   copula=copula))[0]
        assert isi_values(out).min() >= 3
        assert np.nanmean(count_correlations(window_sums(out, 20))[off]) > 0.1, run
        rates.append(out.mean())
    alone = fused.run(model, traces, prompt, 6000, fused.draw_settings(0.0, np.full(8, -3.0), seed=1))[0]
    assert abs(np.nanmean(count_correlations(window_sums(alone, 20))[off])) < 0.05
    # The rate of the library's own draws from the same p (bunched spikes lose some to the dead
    # time); a shared slow factor makes any one run's rate noisy (seeds 0-3: 0.028-0.040).
    P = np.full((6000, 8), 1 / (1 + np.exp(3)), np.float32)
    reference = np.mean([copula.draw(P, seed=s).mean() for s in range(4)])
    assert all(abs(r / reference - 1) < 0.35 for r in rates), (rates, reference)
