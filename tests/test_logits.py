"""The one logistic solver against closed forms, brute force and scikit-learn; the logit map's composition laws."""
import numpy as np
import pytest
from scipy.optimize import minimize

from spikeviz import SpikevizError
from spikeviz.generation.logits import LogitMap
from spikeviz.models.logistic import LogisticFit, fit_logistic


def _logit(p):
    return np.log(p / (1 - p))


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(n, 2)) * [1.0, 3.0] + [0.5, -2.0]
    y = rng.random(n) < 1 / (1 + np.exp(-(F @ [1.2, -0.4] - 2.5)))
    return F, y.astype(np.uint8)


def test_closed_form_of_a_two_by_two_table():
    """One binary feature: the maximum-likelihood intercept and slope are the two groups'
    log-odds and their difference."""
    x = np.repeat([0.0, 1.0], [300, 200])
    y = np.concatenate([np.arange(300) < 21, np.arange(200) < 58]).astype(np.uint8)
    fit = fit_logistic(y, x[:, None])
    assert fit.intercept == pytest.approx(_logit(21 / 300), abs=1e-9)
    assert fit.coef[0] == pytest.approx(_logit(58 / 200) - _logit(21 / 300), abs=1e-9)
    # An offset moves the intercept by exactly its value.
    assert fit_logistic(y, x[:, None], offset=1.5).intercept == pytest.approx(
        fit.intercept - 1.5, abs=1e-9)


def test_matches_scikit_learn_unpenalised():
    from sklearn.linear_model import LogisticRegression

    F, y = _data()
    fit = fit_logistic(y, F)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(F, y)
    np.testing.assert_allclose(fit.coef, ref.coef_[0], atol=1e-5)
    assert fit.intercept == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_without_an_intercept():
    from sklearn.linear_model import LogisticRegression

    F, y = _data(seed=4)
    fit = fit_logistic(y, F, intercept=False)
    ref = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(F, y)
    np.testing.assert_allclose(fit.coef, ref.coef_[0], atol=1e-5)
    assert fit.intercept == 0.0


def test_a_ridge_penalty_on_the_features_own_scale_matches_scikit_learn():
    """l2 |coef|^2 / 2 on the raw scale, the intercept free: scikit-learn's C = 1 / l2, whatever
    the features' scale (they are standardised inside, the penalty is not)."""
    from sklearn.linear_model import LogisticRegression

    F, y = _data(seed=5)
    F = F * np.array([0.01, 30.0])          # scales far apart: a penalty mapped wrongly shows
    for l2, intercept in ((50.0, True), (np.array([3.0, 0.2]), False)):
        fit = fit_logistic(y, F, intercept=intercept, l2=l2)
        # scikit-learn penalises every weight alike: give it features scaled by 1/sqrt(l2).
        s = np.sqrt(np.broadcast_to(l2, 2))
        ref = LogisticRegression(C=1.0, fit_intercept=intercept, tol=1e-12, max_iter=10_000
                                 ).fit(F / s, y)
        np.testing.assert_allclose(fit.coef, ref.coef_[0] / s, rtol=1e-5, atol=1e-9)
    with pytest.raises(SpikevizError, match="l2 must be"):
        fit_logistic(y, F, l2=-1.0)


def test_group_deviations_are_the_posterior_mode():
    """Shared slope and intercept, per-group deviations under a N(0, sd^2) prior: the same
    optimum as a general-purpose minimiser of the negative log-posterior."""
    rng = np.random.default_rng(1)
    n, G, sd = 3000, 6, 0.5
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    off = rng.normal(-1.0, 0.5, n)
    truth = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x - 1.0 + truth[g] + off)))).astype(np.uint8)
    y[g == 5] = 0                                # a silent group leans on the prior alone

    def neg_log_post(t):
        u = t[0] * x + t[1] + t[2:][g] + off
        return np.logaddexp(0, u).sum() - y @ u + 0.5 * t[2:] @ t[2:] / sd ** 2

    ref = minimize(neg_log_post, np.zeros(2 + G), method="BFGS", options={"gtol": 1e-9}).x
    fit = fit_logistic(y, x[:, None], offset=off, groups=g, n_groups=G, prior_sd=sd)
    np.testing.assert_allclose([fit.coef[0], fit.intercept, *fit.deviations], ref, atol=1e-4)
    assert -3 < fit.deviations[5] < fit.deviations[0]   # pulled down, not to -inf


def test_converges_where_full_newton_steps_overshoot():
    """Offsets of +-12 saturate every probability at the start (the mean rate): the Hessian
    nearly vanishes and full Newton steps run to ~1e12 and never return; steps halved until the
    log-likelihood rises reach the optimum."""
    rng = np.random.default_rng(2)
    off = np.where(rng.random(4000) < 0.5, 12.0, -12.0)
    y = (rng.random(4000) < 0.05).astype(np.uint8)
    fit = fit_logistic(y, offset=off)
    p = 1 / (1 + np.exp(-(fit.intercept + off)))
    assert p.sum() == pytest.approx(y.sum(), abs=1e-6)   # the score equation of the intercept


def test_bad_input_is_refused():
    F, y = _data(100)
    with pytest.raises(SpikevizError, match="labels of 0 and 1"):
        fit_logistic(y * 2.0, F)
    with pytest.raises(SpikevizError, match="prior_sd"):
        fit_logistic(y, F, groups=np.zeros(100, int), n_groups=1)
    with pytest.raises(SpikevizError, match="groups must be"):
        fit_logistic(y, F, groups=np.full(100, 3), n_groups=2, prior_sd=1.0)
    with pytest.raises(SpikevizError, match="both 0 and 1"):
        fit_logistic(np.zeros(100), F)


def test_map_composition_laws():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 4))
    a, b, c = (LogitMap(rng.uniform(0.2, 3.0, 4), rng.normal(size=4)) for _ in range(3))
    np.testing.assert_allclose(a.then(b)(z), b(a(z)))                       # then = apply in turn
    np.testing.assert_allclose(a.then(b).then(c)(z), a.then(b.then(c))(z))  # associative
    np.testing.assert_allclose(LogitMap().then(a)(z), a(z))                  # identity, both sides
    np.testing.assert_allclose(a.then(LogitMap())(z), a(z))
    centre = rng.normal(size=4)
    temper = LogitMap.tempering(0.4, centre)
    np.testing.assert_allclose(temper(centre), centre)                      # the centre stays
    np.testing.assert_allclose(temper(z + 1.0) - temper(z), 0.4)            # slopes x0.4


def test_group_layouts_and_starts_reach_one_maximum():
    """Groups laid out as a raveled (time, unit) table take the reshaping path, any other order
    bincount; a start elsewhere changes the steps, not the maximum."""
    rng = np.random.default_rng(5)
    T, G = 400, 7
    off = rng.normal(-2.5, 1.0, (T, G))
    y = (rng.random((T, G)) < 1 / (1 + np.exp(-(off + rng.normal(0, 0.7, G))))).astype(np.uint8)
    y[:, 3] = 0                                   # a silent unit
    g = np.tile(np.arange(G), T)
    kw = dict(n_groups=G, prior_sd=0.75)
    tiled = fit_logistic(y.ravel(), offset=off.ravel(), groups=g, **kw)
    order = rng.permutation(T * G)
    shuffled = fit_logistic(y.ravel()[order], offset=off.ravel()[order], groups=g[order], **kw)
    started = fit_logistic(y.ravel(), offset=off.ravel(), groups=g, **kw,
                           start=LogisticFit(np.zeros(0), 2.0, rng.normal(0, 1, G)))
    for fit in (shuffled, started):
        assert fit.intercept == pytest.approx(tiled.intercept, abs=1e-9)
        np.testing.assert_allclose(fit.deviations, tiled.deviations, atol=1e-9)
    F, yy = _data(seed=6)
    ref = fit_logistic(yy, F)
    fit = fit_logistic(yy, F, start=LogisticFit(np.array([-3.0, 2.0]), 5.0, np.zeros(0)))
    np.testing.assert_allclose(fit.coef, ref.coef, atol=1e-9)
    assert fit.intercept == pytest.approx(ref.intercept, abs=1e-9)
    with pytest.raises(SpikevizError, match="a start needs"):
        fit_logistic(yy, F, start=LogisticFit(np.zeros(1), 0.0, np.zeros(0)))


def test_a_weighted_row_counts_as_that_many_rows():
    """Integer weights give the fit of the rows repeated, on every path (features, a ridge,
    offsets, tiled and shuffled groups, no intercept); so rows kept with probability q and
    weighted 1/q give the full data's fit, not the sample's own."""
    rng = np.random.default_rng(7)
    T, G = 300, 5
    F, y = _data(n=T * G, seed=8)
    off = rng.normal(0, 0.5, T * G)
    g = np.tile(np.arange(G), T)
    w = rng.integers(1, 4, T * G)
    rep = np.repeat(np.arange(T * G), w)
    order = rng.permutation(T * G)
    cases = [dict(features=F, l2=0.3), dict(features=F, offset=off, intercept=False),
             dict(offset=off, groups=g, n_groups=G, prior_sd=0.75),
             dict(features=F[:, :1], offset=off, groups=g, n_groups=G, prior_sd=0.75)]
    for kw in cases:
        def rows(idx):
            return {k: (v[idx] if isinstance(v, np.ndarray) and len(v) == T * G else v)
                    for k, v in kw.items()}
        repeated = fit_logistic(y[rep], **rows(rep))
        for idx in (np.arange(T * G), order):
            weighted = fit_logistic(y[idx], **rows(idx), weights=w[idx])
            np.testing.assert_allclose(weighted.coef, repeated.coef, atol=1e-8)
            np.testing.assert_allclose(weighted.deviations, repeated.deviations, atol=1e-8)
            assert weighted.intercept == pytest.approx(repeated.intercept, abs=1e-8)
    with pytest.raises(SpikevizError, match="weights must be"):
        fit_logistic(y, F, weights=np.zeros(len(y)))


def test_the_in_place_paths_give_the_same_bits():
    """logits on one copy, sigmoid(out=z) and a calibration's row blocks (which keep a 300-s
    window's float64 intermediates out of memory) give exactly what the plain expressions give,
    so generated trains do not change with them."""
    from spikeviz.generation.calibration import TargetCalibration
    from spikeviz.generation.logits import logits
    from spikeviz.models.logistic import sigmoid

    rng = np.random.default_rng(4)
    P = rng.random((20_000, 7), dtype=np.float32) ** 3
    P[0, :3] = (0.0, 1.0, 1e-9)
    kept = P.copy()
    for dtype in (np.float64, np.float32):
        clipped = np.clip(P.astype(dtype), 1e-7, 1 - 1e-7)
        np.testing.assert_array_equal(logits(P, dtype), np.log(clipped / (1 - clipped)))
    np.testing.assert_array_equal(P, kept)                  # the caller's probabilities untouched
    z = logits(P, np.float32) * np.float32(9.0)
    with np.errstate(over="ignore"):
        plain = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_array_equal(sigmoid(z.copy()), plain)
    inplace = z.copy()
    np.testing.assert_array_equal(sigmoid(inplace, out=inplace), plain)
    cal = TargetCalibration(1.3, rng.normal(0, 1, 7).astype(np.float32))
    np.testing.assert_array_equal(cal.recalibrated(P, rows=999), cal.probabilities(logits(P)))
