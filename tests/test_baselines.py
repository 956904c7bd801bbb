"""Baselines: beat chance on real bundled data, strictly causal, calibrated GLM intercept."""
import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError
from spikeviz.baselines import (BASELINES, RATE_WEIGHTS, EWMAPredictor, GLMPredictor,
                                RatePredictor, TunedEWMAPredictor, make_baseline)
from spikeviz.metrics import ScoreHistogram
from spikeviz.predictor import Predictor, split_bounds


def _stretches(name, train_s=150, test_s=30):
    """The last train_s of the train split and test_s of the test split with 10 s of past."""
    X = spikeviz.bin_spikes(spikeviz.load_session(name)).X
    s = split_bounds(len(X))
    (_, b), (a, _) = s["train"], s["test"]
    return X[b - train_s * 1000:b], X[a - 10_000:a + test_s * 1000], 10_000


@pytest.fixture(scope="module", params=["invitro_210511001_bh", "invivo_NYU-40_2021-04-14_001"])
def data(request):
    return _stretches(request.param)


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_beats_chance_on_real_data(data, name):
    train, test, warm = data
    p = make_baseline(name).fit(train)
    assert isinstance(p, Predictor) and p.name == name
    P = p.predict(test)
    assert P.shape == test.shape and P.dtype == np.float32
    assert P.min() >= 0 and P.max() <= 1
    h = ScoreHistogram.from_scores(test[warm + 1:], P[warm:-1])
    assert h.roc_auc > 0.6
    assert h.pr_auc > 1.5 * h.base_rate


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_are_causal(name):
    """Changing the future never changes a past prediction."""
    rng = np.random.default_rng(1)
    X = (rng.random((3000, 12)) < 0.05).astype(np.uint8)
    p = make_baseline(name).fit(X)
    P = p.predict(X)
    for t0 in (0, 1, 700, 2999):
        Y = X.copy()
        Y[t0 + 1:] = rng.random(Y[t0 + 1:].shape) < 0.3
        np.testing.assert_array_equal(p.predict(Y)[:t0 + 1], P[:t0 + 1])


def test_ewma_follows_its_definition():
    X = np.zeros((200, 2), np.uint8)
    X[10, 0] = 1
    P = EWMAPredictor(tau_ms=50).predict(X)
    a = np.exp(-1 / 50)
    assert P[9, 0] == 0 and P[10, 0] == pytest.approx(1 - a)
    assert P[60, 0] == pytest.approx((1 - a) * a ** 50, rel=1e-5)
    assert not P[:, 1].any()
    # 2-ms bins: the same time constant in ms.
    assert EWMAPredictor(tau_ms=50, bin_ms=2).predict(X)[11, 0] == pytest.approx(
        (1 - np.exp(-2 / 50)) * np.exp(-2 / 50), rel=1e-5)


def _modulated(rng, T, N, period, base=0.01, depth=0.9):
    """Spikes whose rate switches between base (1 +- depth) every `period` bins."""
    gain = 1 + depth * np.where(rng.random((T // period + 1, N)) < 0.5, -1, 1)
    p = base * np.repeat(gain, period, axis=0)[:T]
    return (rng.random((T, N)) < p).astype(np.uint8)


@pytest.mark.parametrize("criterion", ["pr_auc", "loglik"])
def test_tuned_ewma_picks_the_time_constant_of_the_data(criterion):
    """Rates that switch every 30 ms want a short tau, every 4 s a long one."""
    rng = np.random.default_rng(5)
    fast = TunedEWMAPredictor(criterion=criterion).fit(_modulated(rng, 40_000, 16, 30, base=0.2))
    slow = TunedEWMAPredictor(criterion=criterion).fit(_modulated(rng, 40_000, 16, 4000))
    assert fast.tau_ms <= 10 and slow.tau_ms >= 200


def test_tuned_ewma_is_the_ewma_mixed_with_a_rate_floor():
    rng = np.random.default_rng(6)
    X = _modulated(rng, 20_000, 6, 500)
    X[:, 5] = 0                                    # a unit silent on the fitting stretch
    p = TunedEWMAPredictor(bin_ms=2.0).fit(X)
    assert p.tau_ms in p.taus_ms and p.rate_weight in RATE_WEIGHTS
    np.testing.assert_allclose(p.rates, (X.sum(0) + 0.5) / (len(X) + 1), rtol=1e-6)
    P = p.predict(X)
    E = EWMAPredictor(p.tau_ms, bin_ms=2.0).predict(X)
    np.testing.assert_allclose(P, (1 - p.rate_weight) * E + p.rate_weight * p.rates, rtol=1e-5)
    assert P.min() > 0 and P.dtype == np.float32
    with pytest.raises(SpikevizError, match="rates for 6 units"):
        p.predict(X[:, :3])
    with pytest.raises(SpikevizError, match="not fitted"):
        TunedEWMAPredictor().predict(X)
    with pytest.raises(SpikevizError, match="criterion"):
        TunedEWMAPredictor(criterion="f1")


def test_rate_predictor_uses_train_rates_or_given_ones():
    X = np.zeros((100, 3), np.uint8)
    X[::10, 0] = 1
    X[::4, 2] = 1
    p = RatePredictor().fit(X)
    np.testing.assert_allclose(p.rates, [0.1, 0, 0.25])
    P = RatePredictor(np.array([0.5, 0.1, 0.2])).predict(np.zeros((5, 3), np.uint8))
    assert P.shape == (5, 3) and P[4, 0] == np.float32(0.5)
    with pytest.raises(SpikevizError, match="not fitted"):
        RatePredictor().predict(X)
    with pytest.raises(SpikevizError, match="rates for 2 units"):
        RatePredictor(np.ones(2)).predict(X)


def test_glm_intercept_is_corrected_for_subsampling():
    """On structureless spikes at 2 % the GLM must predict about 2 %, although it fits on a
    balanced subsample."""
    rng = np.random.default_rng(3)
    X = (rng.random((60_000, 16)) < 0.02).astype(np.uint8)
    glm = GLMPredictor(max_samples=20_000).fit(X)
    P = glm.predict(X[:20_000])
    assert P[12_000:].mean() == pytest.approx(0.02, rel=0.1)
    assert len(glm.coef) == len(glm.feature_names)


def test_glm_learns_history_dependence():
    """Units that fire in bursts: the GLM must rank the bin after a spike higher."""
    rng = np.random.default_rng(4)
    X = (rng.random((40_000, 8)) < 0.005).astype(np.uint8)
    X[1:] |= X[:-1] & (rng.random(X[1:].shape) < 0.5).astype(np.uint8)
    glm = GLMPredictor(max_samples=40_000).fit(X[:30_000])
    h = ScoreHistogram.from_scores(X[30_001:], glm.predict(X[30_000:])[:-1])
    # A third of the spikes follow a spike: ROC about 1/3 + 2/3 * 0.5.
    assert h.roc_auc > 0.62 and glm.coef[0] > 0


def test_unknown_and_unfitted():
    with pytest.raises(SpikevizError, match="unknown baseline"):
        make_baseline("lstm")
    with pytest.raises(SpikevizError, match="not fitted"):
        GLMPredictor().predict(np.zeros((10, 2), np.uint8))
    with pytest.raises(SpikevizError, match="spikes and silent bins"):
        GLMPredictor().fit(np.zeros((100, 2), np.uint8))
    with pytest.raises(SpikevizError, match=r"\(T, N\)"):
        EWMAPredictor().predict(np.zeros(10, np.uint8))
