"""Firing statistics on trains with known answers, distances, and speed on a real hour."""

import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError
from spikeviz.measures.stats import compare_stats, firing_stats, spearman, spike_indices, window_counts


@pytest.fixture(scope="module")
def poisson():
    rng = np.random.default_rng(0)
    return (rng.random((400_000, 24)) < np.linspace(0.002, 0.03, 24)).astype(np.uint8)


def test_poisson_trains(poisson):
    s = firing_stats(poisson)
    np.testing.assert_allclose(s.rates_hz, np.linspace(2, 30, 24), rtol=0.1)
    # Bernoulli bins: CV = sqrt(1 - p), Fano = 1 - p (both ~1 at low rates).
    np.testing.assert_allclose(s.cv, 1.0, atol=0.06)
    np.testing.assert_allclose(s.fano, 1.0, atol=0.12)
    assert s.synchrony == pytest.approx(s.synchrony_independent, rel=0.05)
    off = s.corr[~np.eye(24, dtype=bool)]
    assert np.abs(off).max() < 0.05
    assert s.pop_rate_hz.mean() == pytest.approx(s.rates_hz.mean(), rel=1e-3)
    assert s.pop_count_hist.sum() == len(poisson)
    assert s.isi_hist.sum() == poisson.sum() - 24
    assert s.isi_pdf.sum() == pytest.approx(1.0)
    assert s.summary()["median_cv"] == pytest.approx(1.0, abs=0.06)


def test_regular_and_synchronous_trains():
    X = np.zeros((100_000, 3), np.uint8)
    X[::10, 0] = 1           # perfectly regular, 100 Hz
    X[::10, 1] = 1           # the same train: always synchronous with unit 0
    s = firing_stats(X, fano_ms=100)
    assert s.cv[0] == 0
    assert s.isi_hist[0].argmax() == np.searchsorted(s.isi_edges_ms, 10, side="right") - 1
    assert s.fano[0] == 0                     # 10 spikes in every 100-ms window
    assert np.isnan(s.corr[0, 1])            # one spike in every 10-ms window: no variance
    assert s.synchrony == pytest.approx(0.1)
    assert np.isnan(s.cv[2]) and np.isnan(s.fano[2])   # a silent unit
    assert s.rates_hz[0] == pytest.approx(100.0)
    # 2-ms bins: rates and ISIs in real time.
    s2 = firing_stats(X, bin_ms=2.0)
    assert s2.rates_hz[0] == pytest.approx(50.0)
    assert s2.isi_hist[0].argmax() == np.searchsorted(s2.isi_edges_ms, 20, side="right") - 1


def test_correlated_counts():
    rng = np.random.default_rng(2)
    base = rng.random((200_000, 1)) < 0.02
    X = np.concatenate([base, base, rng.random((200_000, 1)) < 0.02], axis=1).astype(np.uint8)
    s = firing_stats(X)
    assert s.corr[0, 1] == pytest.approx(1.0) and abs(s.corr[0, 2]) < 0.05


def test_compare_stats(poisson):
    real = firing_stats(poisson)
    same = compare_stats(real, real)
    assert same["rate_ks"] == 0 and same["rate_corr"] == pytest.approx(1.0)
    assert same["corr_mad"] == 0 and same["isi_tv"] == 0 and same["mean_rate_ratio"] == 1
    rng = np.random.default_rng(5)
    silent_ish = (rng.random(poisson.shape) < 0.001).astype(np.uint8)
    d = compare_stats(real, firing_stats(silent_ish))
    assert d["rate_ks"] > 0.5 and d["mean_rate_ratio"] < 0.2 and d["isi_tv"] > 0.1
    fewer = compare_stats(real, firing_stats(poisson[:, :10]))
    assert fewer["rate_corr"] is None and fewer["corr_mad"] is None and fewer["rate_ks"] > 0


def test_spearman_is_scipys_with_ties():
    sps = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    for a, b in ((rng.poisson(2, 300), rng.poisson(2, 300)), (rng.normal(size=40), rng.normal(size=40)),
                 (np.array([0, 0, 1, 5, 5, 5]), np.array([3, 1, 1, 2, 9, 0]))):
        assert spearman(a, b) == pytest.approx(sps.spearmanr(a, b)[0])
    assert spearman(np.ones(5), np.arange(5)) is None


def test_spike_indices_and_window_counts():
    rng = np.random.default_rng(6)
    for shape in ((1001, 13), (64, 8), (3, 1)):
        X = (rng.random(shape) < 0.1).astype(np.uint8)
        for a, b in zip(spike_indices(X), np.nonzero(X)):
            np.testing.assert_array_equal(a, b)
        n = shape[0] // 2
        np.testing.assert_array_equal(window_counts(X, 2), X[0:2 * n:2] + X[1:2 * n:2])
    bools = firing_stats(rng.random((5000, 4)) < 0.05)   # generated trains may be bool
    assert bools.rates_hz.shape == (4,)
    with pytest.raises(SpikevizError, match="matrix"):
        firing_stats(np.zeros(100, np.uint8))


def test_an_hour_of_128_units():
    X = spikeviz.bin_spikes(spikeviz.load_session("invivo_NYU-40_2021-04-14_001")).X
    assert X.shape[0] > 3_500_000 and X.shape[1] == 128
    s = firing_stats(X)   # its speed: benchmarks/bench_curves.py
    assert s.summary()["mean_rate_hz"] == pytest.approx(1.01, abs=0.01)
    assert s.synchrony > s.synchrony_independent    # in vivo units co-fire beyond chance


def _bursty(T, N, seed):
    """Units that fire together in population events on top of their own Poisson spikes."""
    rng = np.random.default_rng(seed)
    X = rng.random((T, N)) < np.linspace(0.0005, 0.002, N)
    events = rng.random(T) < 0.002
    X[events] |= rng.random((events.sum(), N)) < 0.5
    return X.astype(np.uint8)


def test_fidelity_report_orders_model_floor_and_ceiling():
    from spikeviz.measures.stats import fidelity_report

    real, other = _bursty(60_000, 20, 1), _bursty(60_000, 20, 2)
    r = fidelity_report(real, real.copy(), other, seed=3)
    m, floor, ceil = r["model"], r["floor"], r["ceiling"]
    assert m["count_ratio"] == 1 and m["rate_spearman"] == pytest.approx(1.0)
    assert m["isi_ks"] == 0 and m["corr_similarity_10ms"] == pytest.approx(1.0)
    assert m["active_fraction"] == 1 and m["count_ratio_per_block"] == [1.0] * 6
    # Rate-matched Poisson: right counts, none of the population events.
    assert floor["count_ratio"] == pytest.approx(1.0, abs=0.05) and floor["rate_spearman"] > 0.9
    assert floor["synchrony"] < 0.8 * r["real"]["synchrony"]
    assert floor["corr_similarity_10ms"] < 0.3 < ceil["corr_similarity_10ms"]
    assert ceil["isi_ks"] < 0.05 < fidelity_report(real, real[::-1].repeat(2, 0)[:len(real)]
                                                  )["model"]["isi_ks"]      # ISIs doubled
    # A generator that fades out: its drift shows block by block; silent units are counted.
    fading = real.copy()
    fading[30_000:, ::2] = 0
    d = fidelity_report(real, fading)["model"]
    assert d["count_ratio_per_block"][0] == 1 and d["count_ratio_per_block"][-1] < 0.7
    assert d["rate_hz_per_block"][-1] < d["rate_hz_per_block"][0]
    assert fidelity_report(real, fading[30_000:].repeat(2, 0))["model"]["active_fraction"] == 0.5
    assert r["ceiling"] is not None and fidelity_report(real, real)["ceiling"] is None
    with pytest.raises(SpikevizError, match="same units"):
        fidelity_report(real, real[:, :5])
