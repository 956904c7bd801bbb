"""Score histograms against scikit-learn: AUCs, curves, operating points, presets, per-unit AUCs."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

import spikeviz
from spikeviz import SpikevizError
from spikeviz.models.baselines import EWMAPredictor
from spikeviz.measures.likelihood import LogLikelihood, bits_per_spike, reliability
from spikeviz.measures.metrics import (THRESHOLD_RULES, ScoreHistogram,
                              level_edges, pr_auc, roc_auc, score_level,
                              scores_histograms, threshold_preset)
from spikeviz.data.binning import split_bounds

RNG = np.random.default_rng(7)


def _scores(kind: str, n: int = 400_000):
    if kind == "uniform":
        p = RNG.random(n)
        y = RNG.random(n) < p ** 3
    elif kind == "imbalanced":          # spike-like: rare positives, logit-normal scores
        y = RNG.random(n) < 0.01
        p = 1 / (1 + np.exp(-(RNG.normal(-6, 1.5, n) + 1.5 * y)))
    elif kind == "ties":                # few distinct values: ties must count half
        p = RNG.integers(0, 20, n) / 19
        y = RNG.random(n) < 0.1 * p
    elif kind == "tiny":                # probabilities far below 2^-32 still keep their order
        p = 10.0 ** RNG.uniform(-40, -2, n)
        y = RNG.random(n) < -np.log10(p) / 400
    return y.astype(np.uint8), p.astype(np.float32)


@pytest.mark.parametrize("kind", ["uniform", "imbalanced", "ties", "tiny"])
def test_aucs_match_sklearn(kind):
    y, p = _scores(kind)
    h = ScoreHistogram.from_scores(y, p)
    assert h.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-3)
    assert h.pr_auc == pytest.approx(average_precision_score(y, p), abs=1e-3)
    assert h.base_rate == pytest.approx(y.mean())
    assert h.chance == {"roc_auc": 0.5, "pr_auc": h.base_rate}
    assert roc_auc(y, p) == h.roc_auc and pr_auc(y, p) == h.pr_auc


def test_float64_and_bool_inputs_agree_with_float32():
    y, p = _scores("imbalanced")
    a = ScoreHistogram.from_scores(y, p)
    b = ScoreHistogram.from_scores(y.astype(bool), p.astype(np.float64))
    assert a.roc_auc == b.roc_auc and a.pr_auc == b.pr_auc


def test_curves_integrate_to_the_aucs():
    y, p = _scores("imbalanced")
    h = ScoreHistogram.from_scores(y, p)
    fpr, tpr, thr = h.roc_curve()
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(thr) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(h.roc_auc, abs=1e-9)
    precision, recall, _ = h.pr_curve()
    assert (precision[0], recall[0]) == (1.0, 0.0)
    assert np.sum(np.diff(recall) * precision[1:]) == pytest.approx(h.pr_auc, abs=1e-9)


def test_operating_point_counts_are_exact_at_the_reported_threshold():
    y, p = _scores("imbalanced")
    h = ScoreHistogram.from_scores(y, p)
    for t in (0.0, 1e-4, 0.003, 0.05, 0.5, 1.0, 2.0):
        op = h.operating_point(t)
        pred = p >= op.threshold
        assert op.threshold <= max(t, 0) or op.predicted_spikes == 0
        assert op.predicted_spikes == pred.sum() and op.tp == (pred & (y == 1)).sum()
        assert op.real_spikes == y.sum() and op.tp + op.fn == op.real_spikes
        assert op.fpr == pytest.approx(op.fp / (y == 0).sum())
        if op.tp:
            assert op.f1 == pytest.approx(2 * op.precision * op.recall / (op.precision + op.recall))


def test_levels_are_monotone_and_edges_exact():
    edges = level_edges()
    assert edges[0] == 0 and np.all(np.diff(edges) > 0) and edges[-1] == 1.0
    for t in (0.0, 1e-45, 1e-40, 1e-30, 2.0 ** -32, 1e-3, 0.3, 1.0):
        t = float(np.float32(t))      # scores are float32
        k = score_level(t)
        assert edges[k] <= t and (k + 1 == len(edges) or t < edges[k + 1])


def test_threshold_presets():
    y, p = _scores("imbalanced")
    h = ScoreHistogram.from_scores(y, p)
    youden = h.operating_point(h.threshold("youden", fpr_cap=0.005))
    assert youden.fpr <= 0.005 and youden.recall > 0
    dens = h.operating_point(h.threshold("density"))
    assert abs(dens.predicted_spikes - dens.real_spikes) <= 0.01 * dens.real_spikes
    best = h.operating_point(h.threshold("max-f1"))
    for t in np.linspace(0.001, 0.5, 50):
        assert h.operating_point(t).f1 <= best.f1 + 1e-12
    assert threshold_preset(y, p, "max-f1") == h.threshold("max-f1")
    assert set(THRESHOLD_RULES) == {"youden", "max-f1", "density"}
    with pytest.raises(SpikevizError, match="unknown threshold preset"):
        h.threshold("otsu")


def test_bad_input_is_refused():
    with pytest.raises(SpikevizError, match="probabilities"):
        ScoreHistogram.from_scores(np.array([0, 1]), np.array([0.2, np.nan]))
    with pytest.raises(SpikevizError, match="probabilities"):
        ScoreHistogram.from_scores(np.array([0, 1]), np.array([0.2, 1.5]))
    with pytest.raises(SpikevizError, match="shape"):
        ScoreHistogram.from_scores(np.array([0, 1]), np.array([0.2]))
    with pytest.raises(SpikevizError, match="0/1"):
        ScoreHistogram.from_scores(np.array([0, 2]), np.array([0.2, 0.3]))
    one_class = ScoreHistogram.from_scores(np.zeros(10), np.linspace(0, 1, 10))
    assert np.isnan(one_class.roc_auc) and np.isnan(one_class.pr_auc)


@pytest.fixture(scope="module")
def real_predictions():
    """EWMA predictions of 20 s of a real test split, strict one step ahead."""
    X = spikeviz.bin_spikes(spikeviz.load_session("invivo_NYU-40_2021-04-14_001")).X
    a = split_bounds(len(X))["test"][0]
    P = EWMAPredictor().predict(X[a - 5000:a + 20_000])[5000:]
    return X[a + 1:a + 20_000], P[:-1]


def test_pooled_and_per_unit_aucs_on_real_predictions(real_predictions):
    Y, P = real_predictions
    pooled, units = scores_histograms(Y, P)
    assert pooled.roc_auc == pytest.approx(roc_auc_score(Y.ravel(), P.ravel()), abs=1e-3)
    assert pooled.pr_auc == pytest.approx(average_precision_score(Y.ravel(), P.ravel()), abs=1e-3)
    assert pooled.n == Y.size and pooled.n_pos == Y.sum()
    cols = [i for i in range(Y.shape[1]) if 0 < Y[:, i].sum()][:40]
    ref_roc = np.array([roc_auc_score(Y[:, i], P[:, i]) for i in cols])
    ref_ap = np.array([average_precision_score(Y[:, i], P[:, i]) for i in cols])
    assert np.abs(units.roc_auc[cols] - ref_roc).max() < 5e-3
    assert np.abs(units.pr_auc[cols] - ref_ap).max() < 5e-3
    silent = Y.sum(0) == 0
    assert np.isnan(units.roc_auc[silent]).all()
    # A unit's histogram gives the same AUC as the vector of per-unit AUCs.
    assert units.unit(cols[0]).roc_auc == pytest.approx(units.roc_auc[cols[0]])
    assert units.summary()["n_units_scored"] == (~silent).sum()


def _units(T=20_000, N=6, seed=11):
    """Labels drawn from known probabilities, rates differing per unit."""
    rng = np.random.default_rng(seed)
    p = np.clip(rng.lognormal(-4.5, 1.0, (T, N)) * np.geomspace(0.3, 3, N), 0, 0.9).astype(np.float32)
    return (rng.random((T, N)) < p).astype(np.uint8), p


def test_log_likelihood_streams_per_unit_and_clips():
    Y, P = _units()
    P[0, 0], P[1, 1] = 0.0, 1.0                     # clipped to 1e-6 and 1 - 1e-6
    q = np.clip(P.astype(np.float64), 1e-6, 1 - 1e-6)
    ref = (Y * np.log(q) + (1 - Y) * np.log(1 - q)).sum(0)
    one = LogLikelihood().add(Y, P)
    np.testing.assert_allclose(one.per_unit, ref, rtol=1e-6)
    streamed = LogLikelihood()
    for s in range(0, len(Y), 3001):
        streamed.add(Y[s:s + 3001], P[s:s + 3001])
    assert streamed.total == pytest.approx(ref.sum(), rel=1e-9)
    assert streamed.n == Y.size and streamed.n_spikes == Y.sum()
    np.testing.assert_array_equal(streamed.spikes, Y.sum(0))
    assert LogLikelihood().add(Y[:, 0], P[:, 0]).total == pytest.approx(ref[0], rel=1e-6)
    with pytest.raises(SpikevizError, match="6 units"):
        streamed.add(Y[:, :2], P[:, :2])
    with pytest.raises(SpikevizError, match="probabilities"):
        LogLikelihood().add(Y, P * 2)


def test_bits_per_spike_by_hand():
    Y, P = _units()
    rate = np.broadcast_to(Y.mean(0), Y.shape).astype(np.float32)
    ll = lambda p: (Y * np.log(np.clip(p, 1e-6, 1 - 1e-6)) + (1 - Y) * np.log1p(
        -np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6))).sum()  # noqa: E731
    ref = (ll(P) - ll(rate)) / Y.sum() / np.log(2)
    assert ref > 0.3                          # the true probabilities beat each unit's rate
    assert bits_per_spike(Y, P, rate) == pytest.approx(ref, rel=1e-5)
    assert bits_per_spike(Y, rate, P) == pytest.approx(-ref, rel=1e-5)
    assert bits_per_spike(Y, rate, rate) == 0
    with pytest.raises(SpikevizError, match="same labels"):
        LogLikelihood().add(Y, P).bits_per_spike(LogLikelihood().add(Y[1:], P[1:]))
    assert np.isnan(bits_per_spike(np.zeros((5, 2)), np.full((5, 2), 0.1), np.full((5, 2), 0.2)))


def test_brier_and_reliability_from_the_histogram():
    Y, P = _units(T=100_000)
    h = ScoreHistogram.from_scores(Y, P)
    assert h.brier == pytest.approx(brier_score_loss(Y.ravel(), P.ravel()), rel=1e-4)
    for spacing in ("quantile", "log"):
        r = reliability(h, 10, spacing)
        assert r["count"].sum() == Y.size
        # Labels are drawn from P: observed frequencies follow the predictions.
        big = r["count"] > 20_000
        np.testing.assert_allclose(r["observed"][big], r["predicted"][big], rtol=0.15, atol=2e-3)
        assert np.all(np.diff(r["predicted"]) > 0)
    q = reliability(h, 10, "quantile")
    assert len(q["count"]) == 10 and q["count"].max() < 1.3 * Y.size / 10
    # Each bin's mean score is the cells' mean score, to the levels' resolution.
    edges = np.quantile(P.ravel(), [0.5])
    lo = P.ravel() < edges[0]
    two = reliability(h, 2, "quantile")
    assert two["predicted"][0] == pytest.approx(P.ravel()[lo].mean(), rel=0.01)
    assert two["observed"][1] == pytest.approx(Y.ravel()[~lo].mean(), rel=0.01)
    with pytest.raises(SpikevizError, match="spacing"):
        reliability(h, 10, "linear")


def test_spike_weighted_per_unit_roc_auc():
    Y, P = _units()
    P[:, 3] = np.random.default_rng(2).random(len(P))    # one unit's scores are noise
    _, units = scores_histograms(Y, P)
    aucs = np.array([roc_auc_score(Y[:, i], P[:, i]) for i in range(Y.shape[1])])
    w = Y.sum(0)
    assert units.roc_auc_spike_weighted == pytest.approx((aucs * w).sum() / w.sum(), abs=2e-3)
    assert units.roc_auc_spike_weighted != pytest.approx(aucs.mean(), abs=2e-3)
    # Pooled over units the rate alone ranks well; within units it is chance.
    rate = np.broadcast_to(Y.mean(0), Y.shape).astype(np.float32)
    pooled, by_unit = scores_histograms(Y, rate)
    assert pooled.roc_auc > 0.65 and by_unit.roc_auc_spike_weighted == pytest.approx(0.5)
    assert by_unit.summary()["roc_auc_spike_weighted"] == pytest.approx(0.5)
