"""Population statistics: known answers, and on real recordings a Poisson surrogate at the floor, a
neighbouring real stretch at the ceiling and a shuffled-in-time copy without correlations."""

import json

import numpy as np
import pytest
from scipy import stats as sps

import spikeviz
from spikeviz import SpikevizError
from spikeviz.measures.population import (autocorrelation, correlation_time, ks_distance, population_distances,
                                          population_stats, rate_distribution, sync_threshold,
                                          wasserstein_distance)
from spikeviz.measures.stats import fidelity_report

# distances that are 0 for the real stretch itself (the smaller the nearer)
DISTANCES = ("pop_rate_ks_10ms", "pop_rate_w1_10ms", "pop_acf_mad")
STRETCHES = {"invitro_210511001_bh": 140.0, "invivo_NYU-40_2021-04-14_001": 2740.0}


@pytest.fixture(scope="module", params=list(STRETCHES))
def stretches(request):
    """Three neighbouring real minutes of a bundled session: before, the real one, after."""
    start = STRETCHES[request.param]
    X = spikeviz.bin_spikes(spikeviz.load_session(request.param), start_s=start, stop_s=start + 180).X
    return X[:60_000], X[60_000:120_000], X[120_000:]


def test_poisson_near_the_floor_and_real_near_the_ceiling(stretches):
    before, real, after = stretches
    rng = np.random.default_rng(11)
    poisson = (rng.random(real.shape) < real.mean(0)).astype(np.uint8)
    r = fidelity_report(real, poisson, after, seed=3)
    floor, ceiling, model = r["floor"], r["ceiling"], r["model"]
    neighbour = fidelity_report(real, before, after)["model"]
    for key in DISTANCES:
        assert ceiling[key] < 0.5 * floor[key], key
        assert model[key] > 0.6 * floor[key], key             # another Poisson draw: the floor
    # Another real minute scores the ceiling's correlations; not its population-rate distribution
    # or autocorrelation: the minute before runs at 0.96x the rate in vitro, and in vivo at 1.29x
    # with bursts twice as long.
    assert abs(floor["corr_similarity_20ms"]) < 0.05 and abs(model["corr_similarity_20ms"]) < 0.05
    assert min(ceiling["corr_similarity_20ms"], neighbour["corr_similarity_20ms"]) > 0.2
    # Real population rates have heavier tails than independent spikes at the same rates.
    assert model["pop_rate_q99.9_hz"] < r["real"]["pop_rate_q99.9_hz"]
    assert abs(model["pop_acf_time_ms"]) < 5 < r["real"]["pop_acf_time_ms"]


def test_shuffled_in_time_copy_loses_correlation(stretches):
    _, real, _ = stretches
    rng = np.random.default_rng(4)
    # Each unit's bins permuted on its own: rates kept, co-firing and bursts gone.
    shuffled = np.take_along_axis(real, rng.permuted(np.broadcast_to(
        np.arange(len(real))[:, None], real.shape), axis=0), 0)
    rolled = np.roll(real, 20_000, axis=0)    # all units together: whole 20-ms windows move
    rs = population_stats(real)
    lost = population_distances(rs, population_stats(shuffled))
    kept = population_distances(rs, population_stats(rolled))
    assert abs(lost["corr_similarity_20ms"]) < 0.05 and kept["corr_similarity_20ms"] == pytest.approx(1)
    assert abs(lost["pop_acf_time_ms"]) < 5
    assert kept["pop_acf_time_ms"] == pytest.approx(population_distances(rs, rs)["pop_acf_time_ms"], rel=0.1)
    assert lost["pop_acf_mad"] > 10 * kept["pop_acf_mad"]
    assert kept["pop_rate_ks_10ms"] == 0 and kept["count_tv_1ms"] == 0 and lost["pop_rate_ks_10ms"] > 0.02


def test_synchrony_counts_units_active_in_a_window():
    assert [sync_threshold(128, f) for f in (0.02, 0.05, 0.10)] == [3, 7, 13]
    assert sync_threshold(20, 0.02) == 2 and sync_threshold(50, 0.10) == 5   # never 1 unit
    X = np.zeros((1000, 50), np.uint8)
    X[0, :5] = 1                  # 5 units in one bin: >= 10 % of 50
    X[100, :3] = 1                # 3 units: >= 5 %
    X[200, :2] = 1                # 2 units: >= 2 % (the floor of 2)
    X[300:305, 0] = 1             # one unit, five spikes: never synchronous
    X[400:405, :5] = np.eye(5, dtype=np.uint8)   # 5 units in one 10-ms window, never in one bin
    s = population_stats(X).synchrony
    assert (s["sync_1ms_2pct"], s["sync_1ms_5pct"], s["sync_1ms_10pct"]) == (0.003, 0.002, 0.001)
    assert (s["sync_10ms_2pct"], s["sync_10ms_5pct"], s["sync_10ms_10pct"]) == (0.04, 0.03, 0.02)


def test_population_rate_tails_and_autocorrelation():
    # 50-ms bursts of 20 % of the units every 200 ms, nothing else.
    X = np.zeros((20_000, 40), np.uint8)
    burst = (np.arange(len(X)) % 200) < 50
    X[burst, :8] = 1
    ps = population_stats(X)
    assert ps.rate_hz.max() == pytest.approx(200.0) and ps.count_pdf[8] == 0.25 == 1 - ps.count_pdf[0]
    acf = ps.acf
    # period 200 ms; the biased estimator's (n - lag) / n, as a linear (not circular) correlation gives
    assert acf[20] == pytest.approx(0.99, abs=1e-3) and acf[10] < -0.2
    rates, fraction = rate_distribution(ps.rate_hz, ps.rate_ms, 40)
    assert len(rates) == 81 and rates[-1] == pytest.approx(200.0)      # 0..80 spikes in a window
    assert fraction[0] == 0.75 and fraction[-1] == 0.25 and fraction.sum() == pytest.approx(1)
    d = population_distances(ps, ps)
    assert d["pop_rate_q95_hz"] == pytest.approx(200.0) and d["pop_rate_ks_10ms"] == 0
    assert d["corr_similarity_20ms"] is None                 # 8 identical units, 32 silent
    # Half the rate in every burst: Wasserstein is half the mean rate, the tails halve.
    half = X.copy()
    half[:, :4] = 0
    h = population_distances(ps, population_stats(half))
    assert h["pop_rate_w1_10ms"] == pytest.approx(0.5) and h["pop_rate_q99.9_hz"] == pytest.approx(100.0)
    assert h["count_tv_1ms"] == pytest.approx(0.25)
    silent = population_distances(ps, population_stats(np.zeros_like(X)))
    assert silent["pop_acf_time_ms"] is None and silent["pop_acf_mad"] is None
    # Too short for the 500-ms lags: no correlation time, but the lags it has are compared.
    short = population_stats(X[:400])
    assert len(short.acf) == 40 and correlation_time(short.acf, 10.0, 50) is None
    assert population_distances(ps, short)["pop_acf_time_ms"] is None
    assert population_distances(ps, short)["pop_acf_mad"] > 0


def test_count_correlations_are_of_20_ms_windows():
    rng = np.random.default_rng(3)
    on = np.flatnonzero(rng.random(3000) < 0.5) * 20      # starts of active 20-ms windows
    X = np.zeros((60_000, 3), np.uint8)
    X[on, 0] = X[on + 10, 1] = 1                          # the same 20-ms window, other 10-ms halves
    X[on[on < 59_960] + 25, 2] = 1                        # the next 20-ms window
    corr = population_stats(X).corr
    assert corr[0, 1] == pytest.approx(1.0) and abs(corr[0, 2]) < 0.1


def test_ks_and_wasserstein_distances_are_scipys():
    rng = np.random.default_rng(1)
    for a, b in ((rng.poisson(3, 500), rng.poisson(4, 700)), (rng.normal(size=50), rng.normal(size=80)),
                 (np.zeros(30), rng.exponential(size=40)), (np.array([2.0]), np.array([2.0, 5.0]))):
        assert ks_distance(a, b) == pytest.approx(sps.ks_2samp(a, b).statistic)
        assert wasserstein_distance(a, b) == pytest.approx(sps.wasserstein_distance(a, b))


def test_bad_input_is_named():
    with pytest.raises(SpikevizError, match="matrix"):
        population_stats(np.zeros(100, np.uint8))
    with pytest.raises(SpikevizError, match="at least 20 bins"):
        population_stats(np.zeros((15, 4), np.uint8))
    with pytest.raises(SpikevizError, match="bin_ms"):
        population_stats(np.zeros((100, 4), np.uint8), bin_ms=0)
    with pytest.raises(SpikevizError, match="same units"):
        population_distances(population_stats(np.zeros((100, 4))), population_stats(np.zeros((100, 5))))
    with pytest.raises(SpikevizError, match="fraction"):
        sync_threshold(10, 0)
    with pytest.raises(SpikevizError, match="lag"):
        autocorrelation(np.ones(10), 0)


def test_generate_json_and_the_dashboard_table_carry_them(tmp_path, capsys):
    from spikeviz.cli import main
    from spikeviz.dashboard.statistics import FIDELITY_ROWS

    assert main(["generate", "--checkpoint", "generalist-focal", "--session", "invitro_210511001_bh",
                 "--seconds", "2", "--start", "10", "--json", "--out", str(tmp_path / "g.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    for who in ("real", "model", "floor", "ceiling"):
        assert {key for key, _ in FIDELITY_ROWS} <= set(report[who])
    assert report["real"]["corr_similarity_20ms"] == pytest.approx(1)
    assert report["model"]["sync_10ms_10pct"] > 0


def test_population_views_draw_a_real_window_with_their_empty_layers():
    """The page builds its plots empty and feeds them later: a view has the same layers with and
    without data (a layer added later never reached the browser) and draws every one."""
    from spikeviz.dashboard import statistics
    from spikeviz.dashboard.cache import LRUCache
    from spikeviz.dashboard.state import BASELINE_ONLY, DashboardState

    state = DashboardState(threaded=False, window_length=10, cache=LRUCache(), checkpoint=BASELINE_ONLY,
                           session="invitro_210511001_bh")
    assert state.error == "", state.error
    for view in (statistics.rate_distribution_curves, statistics.count_distribution_curves,
                 statistics.autocorrelation_curves, statistics.correlation_scatter):
        empty, drawn = list(view(None)), list(view(state.frame))
        assert [type(e) for e in empty] == [type(e) for e in drawn], view.__name__
        assert all(len(e) > 1 for e in drawn), view.__name__
        # The generated trains drawn, not the real ones again: curves real and generated, or
        # pairs' real against generated correlations.
        real, generated = (drawn[1].dimension_values(0), drawn[1].dimension_values(1)) \
            if view is statistics.correlation_scatter else (drawn[0].dimension_values(1), drawn[1].dimension_values(1))
        assert not np.array_equal(real, generated, equal_nan=True), view.__name__
