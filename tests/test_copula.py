"""Joint draws (generation.copula): each unit keeps its probability, shared factors make units fire together, and the fit finds the recording's co-firing on the rows it is given."""
import numpy as np
import pytest

import spikeviz
from spikeviz.errors import SpikevizError
from spikeviz.evaluation.pipeline import Prediction, joint_copula, teacher_trains
from spikeviz.generation.calibration import identity
from spikeviz.generation.copula import PopulationCopula, fit_copula
from spikeviz.generation.logits import logits
from spikeviz.generation.predict import draw_spikes
from spikeviz.measures.population import count_correlations, similarity, window_sums


def probabilities(T: int, N: int, seed: int = 0, top: float = 0.05) -> np.ndarray:
    """Per-unit rates from 0.2 % to `top` a bin, varying over time as a model's would."""
    rng = np.random.default_rng(seed)
    base = np.geomspace(0.002, top, N)
    return (base * np.exp(0.3 * rng.standard_normal((T, N)))).clip(0, 0.5).astype(np.float32)


def assemblies(N: int, k: int = 2, scale: float = 0.8) -> np.ndarray:
    """Loadings of k disjoint assemblies of units (a unit loads on its assembly's factor)."""
    L = np.zeros((N, k), np.float32)
    L[np.arange(N), np.arange(N) % k] = scale
    return L


def corr20(Y: np.ndarray) -> np.ndarray:
    return count_correlations(window_sums(Y, 20))


def test_each_unit_keeps_its_probability():
    P = probabilities(200_000, 16)
    Y = PopulationCopula(assemblies(16), tau_ms=1.0).draw(P, seed=1)
    expected, got = P.sum(0, dtype=np.float64), Y.sum(0, dtype=np.float64)
    # Correlated draws spread a count more than independent ones: a generous 6 sd.
    assert np.all(np.abs(got - expected) < 6 * np.sqrt(expected) + 5), (got / expected)


def test_shared_factors_make_units_fire_together_and_zero_loadings_do_not():
    P = probabilities(60_000, 16)
    joint = PopulationCopula(assemblies(16), tau_ms=20.0).draw(P, seed=2)
    alone = PopulationCopula(np.zeros((16, 2), np.float32), tau_ms=20.0).draw(P, seed=2)
    C, C0 = corr20(joint), corr20(alone)
    same = (np.arange(16)[:, None] % 2) == (np.arange(16)[None, :] % 2)
    off = ~np.eye(16, dtype=bool)
    assert np.nanmean(C[same & off]) > 0.1                 # an assembly co-fires
    assert abs(np.nanmean(C[~same])) < 0.02                # the two assemblies do not
    assert abs(np.nanmean(C0[off])) < 0.02                 # zero loadings: independent
    # Zero loadings keep the counts (and are flagged, so the pipeline draws as before).
    assert PopulationCopula(np.zeros((16, 2), np.float32), 20.0).independent
    assert abs(alone.sum() / P.sum() - 1) < 0.02


def test_a_dead_time_spaces_a_units_spikes_and_keeps_its_rate(monkeypatch):
    """No two drawn spikes of a unit closer than dead_bins, across the chunks an hour is drawn
    in too; the raised probabilities keep each unit's count."""
    from spikeviz.generation import copula
    from spikeviz.measures.stats import isi_values

    monkeypatch.setattr(copula, "_ROWS", 7_000)        # chunk edges inside the draw
    cop = PopulationCopula(assemblies(16), tau_ms=20.0, dead_bins=12)
    # Up to 20 Hz: a 12-ms dead time at most a quarter of a unit's time, as real intervals allow.
    matched = cop.rate_matched(probabilities(30_000, 16, seed=1, top=0.02), rounds=4)   # a warm-up
    P = probabilities(100_000, 16, top=0.02)
    Y = matched.draw(P, seed=1)
    assert isi_values(Y).min() >= 12
    free = PopulationCopula(assemblies(16), tau_ms=20.0).draw(P, seed=1)
    assert isi_values(free).min() < 12                 # the control: without it they are closer
    # Gains fitted on a warm-up of bursty draws: a unit's own is noisy, their total is not.
    ratio = Y.sum(0) / P.sum(0, dtype=np.float64)
    assert abs(Y.sum() / P.sum(dtype=np.float64) - 1) < 0.08 and np.all(np.abs(ratio - 1) < 0.25)
    unmatched = cop.draw(P, seed=1).sum() / P.sum(dtype=np.float64)
    assert unmatched < 0.9                             # the control: the dead time drops spikes


def test_the_fit_finds_a_dead_time_where_the_real_intervals_have_one():
    P = probabilities(20_000, 32, seed=3)
    Y = PopulationCopula(assemblies(32, k=2, scale=0.7), tau_ms=20.0, dead_bins=30).draw(P, seed=6)
    fitted = fit_copula(P, Y)
    assert fitted.dead_bins > 1 and fitted.fit["isi_ks"][1] < fitted.fit["isi_ks"][0]


def test_draws_are_seeded():
    P = probabilities(5_000, 8)
    cop = PopulationCopula(assemblies(8), tau_ms=20.0)
    np.testing.assert_array_equal(cop.draw(P, seed=4), cop.draw(P, seed=4))
    assert not np.array_equal(cop.draw(P, seed=4), cop.draw(P, seed=5))


def test_the_fit_finds_assemblies_and_their_level():
    P = probabilities(20_000, 32, seed=3)
    truth = PopulationCopula(assemblies(32, k=2, scale=0.7), tau_ms=20.0)
    Y = truth.draw(P, seed=6)
    fitted = fit_copula(P, Y)
    assert not fitted.independent and fitted.fit["corr_mse"][1] < fitted.fit["corr_mse"][0]
    real, again = corr20(truth.draw(P, seed=7)), corr20(fitted.draw(P, seed=7))
    assert similarity(real, again) > 0.5
    off = ~np.eye(32, dtype=bool)
    assert 0.5 < np.nanmean(again[off]) / np.nanmean(real[off]) < 2.0


def test_the_fit_of_independent_spikes_adds_little_correlation():
    P = probabilities(20_000, 32, seed=8)
    Y = draw_spikes(P, seed=9)
    fitted = fit_copula(P, Y)
    C = corr20(fitted.draw(P, seed=10))
    assert abs(np.nanmean(C[~np.eye(32, dtype=bool)])) < 0.01


def test_too_little_to_fit_draws_independently_and_bad_shapes_are_refused():
    P = probabilities(100, 32)
    assert fit_copula(P, draw_spikes(P)).independent                 # 5 windows of 20 ms
    assert fit_copula(probabilities(20_000, 3), np.zeros((20_000, 3), np.uint8)).independent
    with pytest.raises(SpikevizError, match="one shape"):
        fit_copula(P, np.zeros((100, 31), np.uint8))
    with pytest.raises(SpikevizError, match="draws 32 units"):
        PopulationCopula(np.zeros((32, 2), np.float32), 5.0).draw(np.zeros((10, 4)))


def test_teacher_trains_draw_jointly_only_where_asked():
    """Bernoulli teacher-forced draws go through the copula; joint=False, threshold rules and
    free runs do not, and an independent copula draws exactly as before it existed."""
    P = probabilities(4_000, 16)
    cal = identity(16)
    scored = type("Scored", (), {})()
    cop = PopulationCopula(assemblies(16), 20.0)
    pred = Prediction(P, scored, cal, cop)
    Pc = cal.probabilities(logits(P))
    np.testing.assert_array_equal(teacher_trains(pred, seed=3), cop.draw(Pc, 3))
    np.testing.assert_array_equal(teacher_trains(pred, seed=3, joint=False), draw_spikes(Pc, seed=3))
    assert joint_copula(pred, "teacher", "bernoulli") is cop
    assert joint_copula(pred, "free", "bernoulli") is None
    assert joint_copula(pred, "teacher", "lift") is None
    assert joint_copula(pred, "teacher", "bernoulli", joint=False) is None
    alone = Prediction(P, scored, cal, PopulationCopula(np.zeros((16, 2), np.float32), 20.0))
    np.testing.assert_array_equal(teacher_trains(alone, seed=3), draw_spikes(Pc, seed=3))


def test_on_a_real_recording_joint_draws_raise_the_correlations_towards_the_real():
    """The bundled in vivo session, a GLM's teacher-forced probabilities: the fit on the first
    20 s, scored on the next 20 s."""
    from spikeviz.data.binning import bin_range
    from spikeviz.models.baselines import make_baseline

    rec = spikeviz.load_session("invivo_NYU-40_2021-04-14_001").slice(600.0, 700.0)
    X = bin_range(rec, list(rec.unit_ids), 1.0, 0, 100_000)
    glm = make_baseline("glm-coupled").fit(X[:60_000])
    P = glm.predict(X[59_999:-1])                      # P[t] predicts X[60_000 + t]
    Y = X[60_000:]
    fitted = fit_copula(P[:20_000], Y[:20_000])
    real = corr20(Y[20_000:40_000])
    joint = similarity(real, corr20(fitted.draw(P[20_000:40_000], seed=0)))
    alone = similarity(real, corr20(draw_spikes(P[20_000:40_000], seed=0)))
    assert joint > alone + 0.05, (joint, alone)


def test_the_guard_keeps_independent_draws_when_the_intervals_would_suffer(monkeypatch):
    """Joint draws whose ISI distribution on the fitted rows is ISI_SLACK further from the real
    one than independent draws' are not used; the evidence stays with the copula."""
    from spikeviz.generation import copula

    P = probabilities(20_000, 32, seed=3)
    Y = PopulationCopula(assemblies(32, k=2, scale=0.7), tau_ms=20.0).draw(P, seed=6)
    monkeypatch.setattr(copula, "ISI_SLACK", -1.0)    # any joint draw now counts as worse
    guarded = fit_copula(P, Y)
    assert guarded.independent and guarded.fit["corr_mse"][1] < guarded.fit["corr_mse"][0]
    monkeypatch.setattr(copula, "ISI_SLACK", 1.0)
    assert not fit_copula(P, Y).independent


def test_the_page_stores_a_copula_and_reads_back_the_same_draws(tmp_path, monkeypatch):
    """A default window's copula is stored beside its predictions (dashboard.compute): read back,
    it draws the same trains."""
    from spikeviz.dashboard.compute import _stored_copula

    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    P = probabilities(20_000, 32, seed=3)
    fitted = fit_copula(P, PopulationCopula(assemblies(32, k=2, scale=0.7), 20.0,
                                            dead_bins=15).draw(P, seed=6))
    assert not fitted.independent and fitted.gains is not None
    stored = _stored_copula("k", lambda: fitted)
    again = _stored_copula("k", lambda: pytest.fail("fitted again instead of read"))
    assert again is not stored and (again.tau_ms, again.dead_bins, again.fit) == \
        (fitted.tau_ms, fitted.dead_bins, fitted.fit)
    np.testing.assert_array_equal(again.draw(P, seed=1), fitted.draw(P, seed=1))
