"""A model blended with its target's coupled GLM (generation.blend): weighed on the warm-up only,
the GLM fed the recording's column order, a model that knows nothing left out, and the model
alone when the warm-up cannot weigh them."""
import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError
from spikeviz.generation.blend import GLMBlend
from spikeviz.generation.logits import logits
from spikeviz.measures.likelihood import LogLikelihood
from spikeviz.models.glm import CoupledGLMPredictor

LO, HI = 2_000, 12_000     # the warm-up rows; the rows after them are "scored"


class Fixed:
    """A model's stand-in that predicts given probabilities whatever the spikes (over the
    model's columns)."""

    name = "fixed"

    def __init__(self, P: np.ndarray):
        self.P = P

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.P[:len(X)]


@pytest.fixture(scope="module")
def data():
    """A bundled session's first 24 s (16 units): the GLM fitted on the first 8, the rest to predict."""
    rec = spikeviz.load_session("invitro_210511001_bh").slice(0.0, 24.0)
    X = spikeviz.bin_spikes(rec, 1.0).X
    X = X[:, np.argsort(-X.sum(0))[:16]]
    return CoupledGLMPredictor().fit(X[:8_000]), X[8_000:]


def loglik(P, X):
    return LogLikelihood().add(X[HI + 1:], P[HI:-1]).total


def test_a_model_that_knows_nothing_gets_no_weight(data):
    glm, X = data
    noise = np.random.default_rng(0).uniform(0.001, 0.2, X.shape).astype(np.float32)
    blend = GLMBlend(Fixed(noise), glm, np.arange(X.shape[1]), LO, HI)
    P = blend.predict(X)
    a, b, d, _ = blend.weights_
    assert abs(a) < 0.1 and b > 0.5 and d > 0.5, blend.weights_
    # On the rows after the warm-up, the GLM alone up to its recalibration on the warm-up (b, c),
    # which carries to later rows only up to a few thousandths of a nat per spike.
    assert loglik(P, X) > loglik(glm.predict(X), X) - 5e-3 * X[HI + 1:].sum()


def test_the_weights_never_read_a_row_after_the_warm_up(data):
    glm, X = data
    base = Fixed(glm.predict(X) * 0.5)
    later = X.copy()
    later[HI:] = np.random.default_rng(1).random(later[HI:].shape) < 0.2
    weights = []
    for Xr in (X, later):
        blend = GLMBlend(base, glm, np.arange(X.shape[1]), LO, HI)
        blend.predict(Xr)
        weights.append(blend.weights_)
    assert weights[0] == weights[1]


def test_the_glm_sees_the_recorded_order(data):
    glm, X = data
    columns = np.random.default_rng(2).permutation(X.shape[1])   # model column j = recorded columns[j]
    X_model = X[:, columns]
    blend = GLMBlend(Fixed(np.full(X.shape, 0.05, np.float32) + 1e-3 * np.random.default_rng(3)
                           .random(X.shape, np.float32)), glm, columns, LO, HI)
    z = logits(blend.predict(X_model))
    a, b, d, c = blend.weights_
    # The GLM on the recording, in the model's order, and its partners' part.
    z_glm, z_partners = (z[:, columns] for z in glm.logit_parts(X))
    base = logits(blend.base.predict(X_model))
    np.testing.assert_allclose(z, a * base + b * (z_glm - z_partners) + d * z_partners + c,
                               rtol=1e-4, atol=1e-3)
    assert b > 0.5 and d > 0.5


def test_a_silent_warm_up_leaves_the_model_alone(data):
    glm, X = data
    silent = X.copy()
    silent[:HI] = 0
    P = np.full(X.shape, 0.02, np.float32)
    blend = GLMBlend(Fixed(P), glm, np.arange(X.shape[1]), LO, HI)
    np.testing.assert_allclose(blend.predict(silent), P, rtol=1e-5)
    assert blend.weights_ == (1.0, 0.0, 0.0, 0.0)


def test_refusals_say_what_is_wrong(data):
    glm, X = data
    with pytest.raises(SpikevizError, match="permutation"):
        GLMBlend(Fixed(X), glm, [0, 0, 1], LO, HI)
    with pytest.raises(SpikevizError, match="warm-up rows"):
        GLMBlend(Fixed(X), glm, np.arange(X.shape[1]), HI, LO)
    with pytest.raises(SpikevizError, match="cannot predict"):
        GLMBlend(Fixed(X), glm, np.arange(X.shape[1]), LO, HI).predict(X[:HI - 1])


def test_the_glms_parts_in_a_column_order_and_the_pages_one_computation(data):
    """logit_parts(X, columns) is the parts' columns in that order; the page's wrapper computes
    them once for the blend and un-permutes them, bit for bit, for the baseline's row."""
    from spikeviz.dashboard.compute import _LastPrediction

    glm, X = data
    columns = np.random.default_rng(5).permutation(X.shape[1])
    Z, C = glm.logit_parts(X)
    Zc, Cc = glm.logit_parts(X, columns)
    np.testing.assert_array_equal(Zc, Z[:, columns])
    np.testing.assert_array_equal(Cc, C[:, columns])
    calls = []

    class Counted:
        def logit_parts(self, X, columns=None):
            calls.append(columns is not None)
            return glm.logit_parts(X, columns)

    wrapper = _LastPrediction(lambda: Counted())
    blended = GLMBlend(Fixed(glm.predict(X)[:, columns] * 0.5), wrapper, columns, LO, HI)
    blended.predict(X[:, columns])
    np.testing.assert_array_equal(wrapper.predict(X), glm.predict(X))
    assert calls == [True]                  # one computation for the blend and the row
    np.testing.assert_array_equal(wrapper.predict(X), glm.predict(X))
    assert calls == [True, False]           # which the row took: the next one computes


def test_the_sum_in_blocks_is_the_plain_expression(data, monkeypatch):
    """The blend's sum, made in place a block of rows at a time (blocks that do not divide the
    stretch), is a z_model + b z_own + d z_partners + c bit for bit."""
    import spikeviz.generation.blend as blend_module

    glm, X = data
    monkeypatch.setattr(blend_module, "_ROWS", 999)
    columns = np.random.default_rng(3).permutation(X.shape[1])
    base = Fixed(glm.predict(X)[:, columns] * 0.7)
    blend = GLMBlend(base, glm, columns, LO, HI)
    P = blend.predict(X[:, columns])
    a, b, d, c = (np.float32(w) for w in blend.weights_)
    z_glm, z_partners = glm.logit_parts(X, columns)
    z = a * logits(base.predict(X), np.float32) + b * (z_glm - z_partners) + d * z_partners + c
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(P, 1.0 / (1.0 + np.exp(-z)))
