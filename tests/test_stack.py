"""The population stack: causal, its GLM when the guard is 0, learns a population effect a GLM
cannot, and free-runs with the very probabilities it predicts."""
import copy

import numpy as np
import pytest

from spikeviz import SpikevizError
from spikeviz.measures.likelihood import LogLikelihood
from spikeviz.models.stack import StackPredictor


def bursty(T: int = 60_000, N: int = 12, seed: int = 0) -> np.ndarray:
    """Units at 5 Hz that, during a population burst (an 80-ms state, 1 in 500 bins starts one),
    fire at 150 Hz, but only from its 20th ms on: a unit's rate depends on how long the population
    has been active, which no linear history filter of a few partners captures."""
    rng = np.random.default_rng(seed)
    state = np.zeros(T, np.int32)
    for s in np.flatnonzero(rng.random(T) < 1 / 500):
        state[s:s + 80] = np.arange(1, min(80, T - s) + 1)
    p = np.where(state >= 20, 0.15, 0.005)[:, None]
    return (rng.random((T, N)) < p).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    return StackPredictor(epochs=4, seed=1).fit(bursty()), bursty(seed=1)[:20_000]


def bits(P, X):
    Y = X[1:]
    rate = np.broadcast_to(X.mean(0), Y.shape)
    return (LogLikelihood().add(Y, P[:-1]).total - LogLikelihood().add(Y, rate).total) / Y.sum()


def test_the_stack_learns_what_its_glm_misses(fitted):
    stack, X = fitted
    assert stack.alpha_ > 0
    gain = bits(stack.predict(X), X) - bits(stack.glm_.predict(X), X)
    assert gain > 0.05, gain       # nats per spike on unseen bins


def test_a_guard_of_zero_is_the_glm(fitted):
    stack, X = fitted
    alpha, stack.alpha_ = stack.alpha_, 0.0
    try:
        np.testing.assert_array_equal(stack.predict(X), stack.glm_.predict(X))
    finally:
        stack.alpha_ = alpha


def test_predictions_never_read_the_future(fitted):
    stack, X = fitted
    P = stack.predict(X[:3000])
    Z = X[:3000].copy()
    Z[2001:] = 1 - Z[2001:]
    np.testing.assert_array_equal(stack.predict(Z)[:2001], P[:2001])


def test_a_free_run_draws_from_the_probabilities_the_stack_predicts(fitted):
    """Replaying the run: bin k is the seeded draw under the prediction from the past and the
    bins before k (one causal predict of the whole sequence gives each of them)."""
    stack, X = fitted
    past, n, seed = X[:3000], 1000, 4
    S = stack.simulate(past, n, seed=seed)
    assert S.shape == (n, X.shape[1]) and S.dtype == np.uint8
    np.testing.assert_array_equal(stack.simulate(past, n, seed=seed), S)
    P = stack.predict(np.concatenate([past, S]))[len(past) - 1:-1]
    rng = np.random.default_rng(seed)
    for k in range(n):
        np.testing.assert_array_equal(S[k], rng.random(X.shape[1]) < P[k], err_msg=f"bin {k}")


def test_bad_input_says_what_is_wrong(fitted):
    stack, X = fitted
    with pytest.raises(SpikevizError, match="not fitted"):
        StackPredictor().predict(X)
    with pytest.raises(SpikevizError, match="fitted on 12 units, data has 3"):
        stack.predict(X[:, :3])
    with pytest.raises(SpikevizError, match="at least"):
        StackPredictor().fit(X[:10])
    with pytest.raises(SpikevizError, match="holdout"):
        StackPredictor(holdout=1.5)


def test_the_command_line_asks_for_the_stack_by_name():
    """`--baselines ...,stack` scores the stack beside the baselines; "all" leaves it out (a
    minute or more to fit); a wrong name lists the choices."""
    import argparse

    from spikeviz.cli import baseline_list
    from spikeviz.models.baselines import ALL_BASELINES
    from spikeviz.models.registry import make_predictor

    assert baseline_list("glm-coupled,stack") == ("glm-coupled", "stack")
    assert "stack" not in baseline_list("all") and baseline_list("all") == ALL_BASELINES
    assert isinstance(make_predictor("stack"), StackPredictor)
    with pytest.raises(argparse.ArgumentTypeError, match="stack"):
        baseline_list("stak")


def test_the_guard_turns_off_a_residual_that_does_not_carry(fitted):
    """On units without population structure (independent Poisson), whatever the residual
    learns is noise: its held-out gain has no interval above 0 and the stack is its GLM."""
    rng = np.random.default_rng(5)
    X = (rng.random((40_000, 10)) < 0.01).astype(np.uint8)
    stack = StackPredictor(epochs=2, seed=2).fit(X)
    assert stack.alpha_ == 0 and not stack.guard_["kept"] and stack.guard_["bins"] == 10_000
    assert fitted[0].guard_["kept"] and fitted[0].guard_["ci95"][0] > 0


def test_the_warm_up_chooses_the_share_again_and_never_reads_past_it(fitted):
    """On a stretch to score, the guard is chosen again on its warm-up: kept where the population
    effect is there, turned off where the recording has changed (no bursts any more), and the bins
    after the warm-up (the scored ones) are never read."""
    stack, X = fitted
    kept = stack.on_warmup(X, 1, 15_000)
    assert kept.alpha_ > 0 and kept.guard_["warm_up"]["kept"] and kept.net_ is stack.net_
    flipped = X.copy()
    flipped[15_000:] = 1 - flipped[15_000:]
    again = stack.on_warmup(flipped, 1, 15_000)
    assert again.alpha_ == kept.alpha_ and again.guard_ == kept.guard_
    rng = np.random.default_rng(6)
    quiet = (rng.random((15_000, X.shape[1])) < X.mean()).astype(np.uint8)   # no bursts
    off = stack.on_warmup(quiet, 1, len(quiet))
    assert off.alpha_ == 0 and not off.guard_["warm_up"]["kept"]
    assert stack.alpha_ > 0 and "warm_up" not in stack.guard_      # the fit is not changed
    glm_only = copy.copy(stack)
    glm_only.alpha_ = 0.0                      # turned off on held-out bins: stays the GLM
    assert glm_only.on_warmup(X, 1, 15_000) is glm_only
    with pytest.raises(SpikevizError, match="warm-up"):
        stack.on_warmup(X, 0, 10)
