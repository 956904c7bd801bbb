"""The spike transformer is causal for every preset, its KV cache matches the full forward pass."""
import numpy as np
import pytest
import torch

from spikeviz.models.build import build_model
from spikeviz.models.model import PRESETS, ModelConfig, compute_traces, final_traces, preset_config
from spikeviz.generation.predict import predict_next, windows


def make(preset, n_units=12, **overrides):
    torch.manual_seed(0)
    cfg = preset_config(preset, n_units)
    model = build_model(ModelConfig.from_dict(cfg.to_dict() | overrides)).eval()
    model.meta = {"bin_ms": 1.0}
    if preset == "generalist":   # untrained, its correction is 0: give it one to check
        torch.nn.init.normal_(model.out.weight, std=0.5)
    return model


def spikes(T, N, density=0.08, seed=0):
    return (np.random.default_rng(seed).random((T, N)) < density).astype(np.uint8)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_predictions_never_see_the_future_and_do_see_the_past(preset):
    model = make(preset)
    # Longer than the context (several windows) except for the paper preset's 15,625 bins.
    T = 300 if preset == "paper" else 3 * model.config.context + 17
    X = spikes(T, 12)
    P = predict_next(model, X)
    assert P.shape == X.shape and P.dtype == np.float32
    for t in (1, T // 3, T // 2 + 5, T - 2):
        Y = X.copy()
        Y[t:] = 1 - Y[t:]                      # change every bin from t on
        Q = predict_next(model, Y)
        assert np.array_equal(P[:t], Q[:t]), f"prediction before {t} saw bin {t} or later"
        assert not np.allclose(P[t:], Q[t:]), "predictions ignore the past"


def test_every_kept_position_has_half_a_context_of_past():
    for T, C in ((1000, 256), (257, 256), (100, 256), (5000, 64), (130, 64)):
        wins = windows(T, C)
        L = min(T, C)
        kept = np.zeros(T, dtype=int)
        for k, (start, keep) in enumerate(wins):
            stop = wins[k + 1][1] if k + 1 < len(wins) else T
            assert start + L >= stop
            if k:
                assert keep - start >= L // 2
            kept[keep:stop] += 1
        assert (kept == 1).all()


@pytest.mark.parametrize("preset", ["fast", "transfer", "paper", "generalist"])
@torch.inference_mode()
def test_kv_cache_steps_equal_the_full_forward(preset):
    model = make(preset, context=40)
    X = spikes(100, 12)
    state = model.start(12)
    stepped = np.stack([torch.sigmoid(model.step(torch.from_numpy(x.astype(np.float32)), state))
                        .numpy() for x in X[:40]])
    np.testing.assert_allclose(stepped, predict_next(model, X[:40]), atol=2e-6)
    # Past the context the cache slides: each step equals a forward pass on the last 40 bins.
    for x in X[40:70]:
        last = torch.sigmoid(model.step(torch.from_numpy(x.astype(np.float32)), state)).numpy()
    tr = compute_traces(X[:70], model.config.trace_taus)
    ref = torch.sigmoid(model(torch.from_numpy(X[30:70][None].astype(np.float32)),
                              torch.from_numpy(tr[30:70][None])))[0, -1].numpy()
    np.testing.assert_allclose(last, ref, atol=2e-5)


@pytest.mark.parametrize("preset", ["transfer", "generalist"])
def test_unit_agnostic_models_take_any_unit_count(preset):
    model = make(preset)
    for n in (3, 12, 200):
        assert predict_next(model, spikes(150, n)).shape == (150, n)
    # Units are treated alike: permuting units permutes the predictions.
    X = spikes(150, 12)
    perm = np.random.default_rng(1).permutation(12)
    np.testing.assert_allclose(predict_next(model, X)[:, perm], predict_next(model, X[:, perm]),
                               atol=1e-5)


def test_traces_in_pieces_equal_traces_at_once():
    X = spikes(500, 5)
    whole = compute_traces(X, (3.0, 50.0))
    first = compute_traces(X[:123], (3.0, 50.0))
    rest = compute_traces(X[123:], (3.0, 50.0), first[-1])
    np.testing.assert_allclose(np.concatenate((first, rest)), whole, atol=1e-6)
    a = np.exp(-1 / 3.0)
    np.testing.assert_allclose(whole[1, 0], a * whole[0, 0] + (1 - a) * X[1], atol=1e-6)


def test_final_traces_are_the_last_row_of_the_traces():
    """final_traces, what a free run starts from, is compute_traces(X)[-1]: multi-spike bins,
    a single bin and an empty past (zeros) included."""
    X = spikes(3000, 6) + spikes(3000, 6)
    taus = (2.0, 50.0, 5000.0)
    for past in (X, X[:1], X[:-7]):
        np.testing.assert_allclose(final_traces(past, taus), compute_traces(past, taus)[-1],
                                   rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(final_traces(X[:0], taus), np.zeros((3, 6), np.float32))


def test_config_round_trip():
    cfg = preset_config("fast", 128)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
