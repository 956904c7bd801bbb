"""Block bootstrap of paired differences: exact point estimates, honest coverage, sane edge cases."""
import numpy as np
import pytest

from spikeviz import SpikevizError
from spikeviz.measures.likelihood import bits_per_spike
from spikeviz.measures.metrics import ScoreHistogram
from spikeviz.measures.uncertainty import (MIN_BLOCKS, BlockScores, block_length, guarded_choice,
                                          paired_block_bootstrap, paired_difference)


def _simulate(rng, n_blocks, block=500, N=8):
    """Rates that share a gain drawn per block (slow drift): the oracle P_a against each unit's
    mean rate P_b. Bins within a block are correlated through the gain, so resampling cells
    instead of blocks understates the spread."""
    r = np.geomspace(0.005, 0.05, N)
    g = rng.lognormal(0, 0.5, n_blocks)
    P_a = np.clip(np.repeat(g, block)[:, None] * r, 0, 1).astype(np.float32)
    Y = (rng.random(P_a.shape) < P_a).astype(np.uint8)
    P_b = np.broadcast_to((r * np.exp(0.125)).astype(np.float32), P_a.shape)   # E[g] = e^(s^2/2)
    return Y, P_a, P_b


def test_block_counts_add_up_to_the_pooled_histogram():
    Y, P_a, _ = _simulate(np.random.default_rng(0), 7)
    b = BlockScores.from_scores(Y, P_a, block_bins=1000)
    h = ScoreHistogram.from_scores(Y, P_a)
    assert b.n_blocks == 4 and b.cells.sum() == Y.size and b.spikes.sum() == Y.sum()
    np.testing.assert_array_equal(b.pos.sum(0), h.pos[b.levels])
    np.testing.assert_array_equal(b.neg.sum(0), h.neg[b.levels])
    assert (h.pos + h.neg)[np.setdiff1d(np.arange(len(h.pos)), b.levels)].sum() == 0
    # Blocks are contiguous: the first block holds the first rows' spikes.
    assert b.spikes[0] == Y[:875].sum()


def test_point_difference_is_the_whole_stretch_difference():
    Y, P_a, P_b = _simulate(np.random.default_rng(1), 20)
    for metric, f in (("pr_auc", lambda P: ScoreHistogram.from_scores(Y, P).pr_auc),
                      ("roc_auc", lambda P: ScoreHistogram.from_scores(Y, P).roc_auc)):
        r = paired_block_bootstrap(Y, P_a, P_b, metric, block_bins=500, n_boot=50)
        assert r["diff"] == pytest.approx(f(P_a) - f(P_b), abs=1e-12)
        assert r["n_blocks"] == 20 and r["n_boot"] == 50
    rate = np.broadcast_to(Y.mean(0), Y.shape).astype(np.float32)
    r = paired_block_bootstrap(Y, P_a, P_b, "bits_per_spike", block_bins=500, n_boot=50)
    assert r["diff"] == pytest.approx(bits_per_spike(Y, P_a, rate) - bits_per_spike(Y, P_b, rate))


def test_identical_predictors_differ_by_exactly_zero():
    Y, P_a, _ = _simulate(np.random.default_rng(2), 20)
    for metric in ("pr_auc", "roc_auc", "bits_per_spike"):
        r = paired_block_bootstrap(Y, P_a, P_a.copy(), metric, block_bins=500, n_boot=50)
        assert r["diff"] == 0 and r["ci95"] == [0.0, 0.0]


def test_a_clearly_better_predictor_excludes_zero_and_the_order_flips_the_sign():
    Y, P_a, P_b = _simulate(np.random.default_rng(3), 30)
    for metric in ("pr_auc", "roc_auc", "bits_per_spike"):
        r = paired_block_bootstrap(Y, P_a, P_b, metric, block_bins=500)
        assert r["diff"] > 0 and r["ci95"][0] > 0 and r["ci95"][0] <= r["diff"] <= r["ci95"][1]
        flipped = paired_block_bootstrap(Y, P_b, P_a, metric, block_bins=500)
        assert flipped["diff"] == pytest.approx(-r["diff"])
        assert flipped["ci95"] == pytest.approx([-r["ci95"][1], -r["ci95"][0]])


def test_intervals_cover_the_true_difference():
    """The bits/spike gain of the oracle over the rate is known from the probabilities: the
    95 % block intervals of 40 independent stretches must cover it nearly always (cell
    resampling covers it about 4 times in 10)."""
    rng = np.random.default_rng(4)
    _, a, b = _simulate(rng, 1000)
    a, b = a.astype(np.float64), b.astype(np.float64)
    truth = ((a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b))).sum()
             / a.sum() / np.log(2))
    covered = 0
    for rep in range(40):
        Y, P_a, P_b = _simulate(rng, 60)
        r = paired_block_bootstrap(Y, P_a, P_b, "bits_per_spike", block_bins=500, seed=rep)
        covered += r["ci95"][0] <= truth <= r["ci95"][1]
    assert covered >= 32


def test_refuses_unpaired_or_bad_input():
    Y, P_a, P_b = _simulate(np.random.default_rng(5), 4)
    a = BlockScores.from_scores(Y, P_a, 500)
    with pytest.raises(SpikevizError, match="same labels"):
        paired_difference(a, BlockScores.from_scores(Y[:1500], P_b[:1500], 500), "pr_auc")
    Y2 = Y.copy()
    Y2[0, 0] ^= 1
    with pytest.raises(SpikevizError, match="same labels"):
        paired_difference(a, BlockScores.from_scores(Y2, P_b, 500), "pr_auc")
    with pytest.raises(SpikevizError, match="unknown metric"):
        paired_difference(a, a, "f1")
    with pytest.raises(SpikevizError, match="probabilities"):
        BlockScores.from_scores(Y, P_a * 50, 500)
    with pytest.raises(SpikevizError, match=r"\(T, N\)"):
        BlockScores.from_scores(Y[:, 0], P_a[:, 0])


def test_a_short_stretch_gets_short_blocks_and_never_a_zero_width_interval():
    """15 s scored in 10-s blocks was one or two blocks: an interval [-0.0092, -0.0092] that reads
    as certainty. Short stretches get 1-s blocks; under 10 of them there is no interval at all."""
    rng = np.random.default_rng(3)
    Y, P_a, P_b = _simulate(rng, 30, block=500)             # 15 000 bins
    assert block_length(len(Y)) == 1500 and block_length(10**6) == 10_000
    r = paired_block_bootstrap(Y, P_a, P_b, "pr_auc")
    assert r["n_blocks"] == 10 and r["ci95"][0] < r["diff"] < r["ci95"][1]
    assert r["ci95"][1] - r["ci95"][0] > 1e-4
    short = paired_block_bootstrap(Y[:9000], P_a[:9000], P_b[:9000], "bits_per_spike")
    assert short["n_blocks"] == 9 < MIN_BLOCKS and short["ci95"] is None
    assert "needs 10" in short["no_interval"] and np.isfinite(short["diff"])


def test_the_guard_keeps_an_option_only_beyond_doubt():
    """The oracle (option 1) beats each unit's mean rate (option 0) clearly: kept. A copy of the
    unchanged model as option 0.5 gains exactly nothing: the unchanged model stays."""
    Y, P_a, P_b = _simulate(np.random.default_rng(3), 20)
    blocks = lambda P: BlockScores.from_scores(Y, P, block_bins=1000)  # noqa: E731
    share, evidence = guarded_choice({0.0: blocks(P_b), 1.0: blocks(P_a)})
    assert share == 1.0 and evidence["kept"] and evidence["ci95"][0] > 0
    share, evidence = guarded_choice({0.0: blocks(P_b), 0.5: blocks(P_b.copy()), 1.0: blocks(P_b * 0.5)})
    assert share == 0.0 and not evidence["kept"], evidence


@pytest.mark.parametrize("ci95", [[-0.01, 0.05], None])
def test_the_guard_turns_off_a_gain_whose_interval_reaches_zero(monkeypatch, ci95):
    """The best option, clearly better, is still turned off when its interval reaches 0 or there
    is none (too few blocks): the rule the stack's and the population states' guards share."""
    import spikeviz.measures.uncertainty as module

    Y, P_a, P_b = _simulate(np.random.default_rng(3), 20)
    blocks = lambda P: BlockScores.from_scores(Y, P, block_bins=1000)  # noqa: E731
    real = module.paired_difference
    monkeypatch.setattr(module, "paired_difference", lambda *a, **k: real(*a, **k) | {"ci95": ci95})
    share, evidence = guarded_choice({0.0: blocks(P_b), 1.0: blocks(P_a)})
    assert evidence["best"] == 1.0 and share == 0.0 and not evidence["kept"]
