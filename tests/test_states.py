"""The population-state model: its filter is the exact hidden-Markov posterior, it is causal, its
free runs keep which units burst together without running away, and its units' refractoriness
keeps a dead time without changing their counts."""
import itertools

import numpy as np
import pytest

from spikeviz import SpikevizError
from spikeviz.data.catalog import load_session
from spikeviz.data.io import write_recording
from spikeviz.measures.population import count_correlations, window_sums
from spikeviz.models.registry import make_predictor
from spikeviz.models.states import PopulationStates



def burst_chain(rng: np.random.Generator, n_blocks: int, enter: float = 0.02) -> np.ndarray:
    """Each 10-ms block's state: 0 quiet, 1 or 2 one assembly's burst (entered with probability
    `enter` each, left with probability 0.2 a block)."""
    state = np.zeros(n_blocks, np.int64)
    for b in range(1, n_blocks):
        s = state[b - 1]
        if s == 0:
            state[b] = rng.choice(3, p=[1 - 2 * enter, enter, enter])
        else:
            state[b] = 0 if rng.random() < 0.2 else s
    return state


def assemblies(T: int = 200_000, seed: int = 0, enter: float = 0.02) -> np.ndarray:
    """Two assemblies of 6 units (0-5 and 6-11) that burst at 80 Hz apart from each other, each
    for 50 ms on average (a 10-ms block ends a burst with probability 0.2), each entered with
    probability `enter` a block; 2 Hz otherwise."""
    rng = np.random.default_rng(seed)
    state = burst_chain(rng, T // 10, enter)
    p = np.full((3, 12), 0.002)
    p[1, :6] = p[2, 6:] = 0.08
    rates = np.repeat(p[state], 10, axis=0)
    return (rng.random(rates.shape) < rates).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    return PopulationStates(n_states=(3, 6)).fit(assemblies()), assemblies(seed=1)[:60_000]


def corr(X):
    return count_correlations(window_sums(X, 20))


def test_free_runs_keep_which_units_burst_together(fitted):
    model, X = fitted
    run = model.simulate(X[:10_000], 100_000, seed=3)
    real, gen = corr(X), corr(run)
    within = lambda C: np.mean([C[i, j] for i, j in itertools.combinations(range(6), 2)])  # noqa: E731
    across = lambda C: C[:6, 6:].mean()  # noqa: E731
    assert within(real) > 0.3 and abs(across(real)) < 0.05
    assert within(gen) > 0.6 * within(real), (within(gen), within(real))
    assert abs(across(gen) - across(real)) < 0.03, (across(gen), across(real))
    assert 0.85 < run.mean() / X.mean() < 1.15            # no runaway, no silence


def test_the_chain_follows_a_drifted_warm_up_and_never_reads_after_it(fitted):
    """Bursts five times rarer than in training: the warm-up's transitions take over, so a free
    run from it bursts as rarely; the same process as in training changes little; the bins after
    the warm-up (the scored ones) are never read, and the fit itself is not changed."""
    model, _ = fitted
    fitted_chain = model.transitions_.copy()
    X = assemblies(90_000, seed=4, enter=0.004)
    warm = 30_000
    drifted = model.on_warmup(X, 1, warm)
    assert drifted.warmup_["kept"] and drifted.warmup_["share"] >= 0.5, drifted.warmup_
    np.testing.assert_array_equal(model.transitions_, fitted_chain)
    real = X[warm:].mean()
    runs = {name: np.mean([m.simulate(X[:warm], 60_000, seed=s).mean() for s in range(3)])
            for name, m in (("fitted", model), ("drifted", drifted))}
    assert abs(runs["drifted"] / real - 1) < 0.5 * abs(runs["fitted"] / real - 1), (runs, real)
    same = model.on_warmup(assemblies(90_000, seed=4), 1, warm)   # the training's own process
    assert not same.warmup_["kept"] and same.transitions_ is model.transitions_, same.warmup_
    flipped = X.copy()
    flipped[warm:] = 1 - flipped[warm:]
    again = model.on_warmup(flipped, 1, warm)
    np.testing.assert_array_equal(again.transitions_, drifted.transitions_)
    assert again.warmup_ == drifted.warmup_
    with pytest.raises(SpikevizError, match="warm-up"):
        model.on_warmup(X, 0, 10)


def test_the_population_level_alone_merges_the_assemblies():
    """The ablation: states from the population's level cannot tell which assembly bursts, so its
    free runs correlate units across assemblies that never fire together."""
    level = PopulationStates(n_states=(3, 6), by="level").fit(assemblies())
    run = level.simulate(assemblies(seed=1)[:10_000], 100_000, seed=3)
    assert corr(run)[:6, 6:].mean() > 0.1


def recovery_factors(model, X):
    """Row t: each unit's recovery factor in bin t, from its own last spike in X[..t-1] (1 with
    none within the factor's lags), written out directly."""
    R = 0 if model.recovery_ is None else model.recovery_.shape[1]
    F = np.ones((len(X) + 1, X.shape[1]))
    for t in range(len(X) + 1):
        for u in range(X.shape[1]):
            fired = np.flatnonzero(X[:t, u])
            if len(fired) and t - fired[-1] <= R:
                F[t, u] = model.recovery_[u, t - fired[-1] - 1]
    return F


def exact_posterior(model, X):
    """Row t: P(state of bin t+1 | X[..t]), by summing over every path of block states; a unit's
    probability in a bin is its state's rate times its recovery factor there."""
    K, block, T = len(model.rates_), model.block, len(X)
    F = recovery_factors(model, X)
    n_blocks = T // block + 1
    out = np.zeros((T, K))
    for path in itertools.product(range(K), repeat=n_blocks):
        prior = model.occupancy_[path[0]] * np.prod(
            [model.transitions_[a, b] for a, b in zip(path, path[1:])])
        states = np.repeat(path, block)
        like = 1.0
        for t in range(T):
            r = model.rates_[states[t]] * F[t]
            like *= np.prod(np.where(X[t] == 1, r, 1 - r))
            out[t, states[t + 1]] += prior * like
    return out / out.sum(1, keepdims=True)


@pytest.mark.parametrize("recovery", [None, [[0.1, 0.5, 0.9], [1.0, 1.0, 1.0], [0.02, 0.02, 0.6]]])
def test_the_filter_is_the_exact_posterior(recovery):
    model = PopulationStates(bin_ms=5.0)           # blocks of 2 bins
    model.rates_ = np.array([[0.05, 0.1, 0.02], [0.6, 0.3, 0.5]])
    model.transitions_ = np.array([[0.9, 0.1], [0.3, 0.7]])
    model.occupancy_ = np.array([0.75, 0.25])
    model.recovery_ = None if recovery is None else np.array(recovery)
    X = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [0, 0, 0]],
                 np.uint8)
    exact = exact_posterior(model, X)
    np.testing.assert_allclose(model.posterior(X), exact, rtol=1e-9)
    np.testing.assert_allclose(model.predict(X),
                               exact @ model.rates_ * recovery_factors(model, X)[1:], rtol=1e-6)


def test_a_free_run_changes_state_only_where_a_block_starts():
    """Blocks are counted on from the real past: after 7 bins of it, the state may change at
    generated bins 3, 13, 23, ... and nowhere else (50 units make each bin's state visible)."""
    model = PopulationStates()                     # blocks of 10 bins
    model.rates_ = np.array([[1e-6] * 50, [0.9] * 50])
    model.transitions_ = np.full((2, 2), 0.5)
    model.occupancy_ = np.array([0.5, 0.5])
    run = model.simulate(np.zeros((7, 50), np.uint8), 400, seed=1)
    state = run.sum(1) > 20
    changes = np.flatnonzero(state[1:] != state[:-1]) + 1
    assert len(changes) > 10 and set(changes % 10) == {3}, changes


def dead_time(T: int = 200_000, seed: int = 0, dead: int = 3) -> np.ndarray:
    """The assemblies with every unit silent for `dead` - 1 bins after its own spike (no ISI
    under `dead` ms) and bursts at 15 % a bin, so that the dead time removes a good share of
    the burst spikes: 4 units."""
    rng = np.random.default_rng(seed)
    state = burst_chain(rng, T // 10)
    p = np.full((3, 4), 0.01)
    p[1, :2] = p[2, 2:] = 0.15
    rates = np.repeat(p[state], 10, axis=0)
    U = rng.random(rates.shape)
    X = np.zeros(rates.shape, np.uint8)
    last = np.full(4, -dead)
    for t in range(T):
        fire = (U[t] < rates[t]) & (t - last >= dead)
        X[t] = fire
        last[fire] = t
    return X


@pytest.fixture(scope="module")
def dead_fitted():
    return PopulationStates(n_states=(3, 6)).fit(dead_time()), dead_time(seed=1)[:100_000]


def short_isis(X, below: int) -> int:
    return sum(int((np.diff(np.flatnonzero(X[:, u])) < below).sum()) for u in range(X.shape[1]))


def test_a_dead_time_in_the_data_is_kept_with_the_counts(dead_fitted):
    """Units silent for 2 ms after each spike: a free run keeps the dead time (under 1 in 1000 of
    its spikes starts an ISI under 3 ms; without the recovery factor over 1 in 10 do) and each
    unit's count (the in-state rates make up for the suppression: they are 12-37 % higher than
    the states' alone, without which the counts of units 1 and 2 fall by about a fifth)."""
    model, X = dead_fitted
    assert short_isis(X, 3) == 0
    np.testing.assert_array_less(model.recovery_[:, :2], 0.01)
    run = model.simulate(X[:10_000], 100_000, seed=3)
    assert short_isis(run, 3) < 0.001 * run.sum()
    ratio = run.sum(0) / X.sum(0)
    assert np.all((0.85 < ratio) & (ratio < 1.15)), ratio
    plain = PopulationStates(n_states=(3, 6), refractory_ms=0).fit(dead_time())
    assert np.all(model.rates_.max(0) > 1.1 * plain.rates_.max(0))
    bare = plain.simulate(X[:10_000], 100_000, seed=3)
    assert short_isis(bare, 3) > 0.1 * bare.sum()
    assert 0.85 < bare.sum() / X.sum() < 1.15                 # the states alone keep the counts;
    dropped = model.recovery_
    model.recovery_ = None                                    # the factor dropped from the fitted
    try:                                                      # model breaks both
        fast = model.simulate(X[:10_000], 100_000, seed=3)
    finally:
        model.recovery_ = dropped
    assert short_isis(fast, 3) > 0.1 * fast.sum()
    assert fast.sum() > 1.15 * X.sum()
    # The past's last spike counts: a unit that fired in the last past bin waits out its dead time.
    past = np.zeros((30, 4), np.uint8)
    past[-1] = 1
    starts = np.stack([model.simulate(past, 2, seed=s) for s in range(200)])
    assert starts.sum() == 0


def test_the_recovery_factor_only_suppresses():
    """Units that excite themselves (after a spike, 40 % a bin for 3 bins, against 0.5-3 %
    otherwise): the factor stays at 1 where they do (it is capped: the own-history term that
    could also excite made bursting units run away), no probability exceeds the state's rate, and
    a free run keeps the count."""
    rng = np.random.default_rng(4)
    T = 200_000
    X = np.zeros((T, 6), np.uint8)
    last = np.full(6, -100)
    U = rng.random((T, 6))
    base = np.where(np.repeat(rng.random(T // 10) < 0.3, 10)[:, None], 0.03, 0.005)
    for t in range(T):
        p = np.where(t - last <= 3, 0.4, base[t])
        X[t] = U[t] < p
        last[X[t] == 1] = t
    model = PopulationStates(n_states=(3, 6)).fit(X)
    assert model.recovery_.shape == (6, 20)
    assert np.all(model.recovery_ <= 1.0) and np.all(model.recovery_ > 0.0)
    np.testing.assert_array_equal(model.recovery_[:, :3], 1.0)
    Z = X[:20_000]
    in_state = (model.posterior(Z) @ model.rates_).astype(np.float32)
    assert np.all(model.predict(Z) <= in_state * (1 + 1e-6))
    run = model.simulate(Z, 100_000, seed=1)
    assert 0.85 < run.mean() / X.mean() < 1.15


@pytest.mark.parametrize("which", ["fitted", "dead_fitted"])
def test_predictions_and_teacher_draws_never_read_the_future(which, request):
    model, X = request.getfixturevalue(which)
    Z = X[:5000].copy()
    Z[3001:] = 1 - Z[3001:]
    np.testing.assert_array_equal(model.predict(Z)[:3001], model.predict(X[:5000])[:3001])
    np.testing.assert_array_equal(model.sample(Z, seed=2)[:3001], model.sample(X[:5000], seed=2)[:3001])


def test_teacher_draws_are_joint():
    """One state per bin for all units: where the filter cannot tell the state (two states, a
    memoryless chain of 1-bin blocks), units spike together; independent draws from the same
    probabilities would not correlate."""
    model = PopulationStates(bin_ms=10.0)          # blocks of 1 bin
    model.rates_ = np.array([[0.01] * 4, [0.5] * 4])
    model.transitions_ = np.full((2, 2), 0.5)
    model.occupancy_ = np.array([0.5, 0.5])
    X = np.zeros((20_000, 4), np.uint8)
    np.testing.assert_allclose(model.predict(X), 0.255, rtol=1e-6)
    drawn = model.sample(X, seed=0)
    assert np.corrcoef(drawn[:, 0], drawn[:, 1])[0, 1] > 0.2


def test_the_state_count_is_chosen_on_held_out_bins(fitted):
    model, _ = fitted
    assert set(model.selection) == {3, 6}
    assert model.n_states_ == max(model.selection, key=model.selection.get)


def test_bad_input_is_refused_with_a_reason(fitted):
    model, X = fitted
    with pytest.raises(SpikevizError, match="not fitted"):
        PopulationStates().predict(X)
    with pytest.raises(SpikevizError, match="fitted on 12 units, data has 5"):
        model.predict(X[:, :5])
    with pytest.raises(SpikevizError, match="blocks of 10 ms"):
        PopulationStates().fit(X[:1000])
    with pytest.raises(SpikevizError, match="needs spikes"):
        PopulationStates(n_states=(2,)).fit(np.zeros((20_000, 4), np.uint8))
    with pytest.raises(SpikevizError, match="real past"):
        model.simulate(X[:0], 10)
    with pytest.raises(SpikevizError, match="n_states"):
        PopulationStates(n_states=(1,))
    with pytest.raises(SpikevizError, match="by"):
        PopulationStates(by="rate")


def test_the_command_line_name_makes_it():
    assert isinstance(make_predictor("states"), PopulationStates)


@pytest.fixture(scope="module")
def forty_units(tmp_path_factory):
    """The first 120 s of lh, its 40 most active units. (Its first 40 units have no correlations
    that 10 s can measure: real against real, their similarity is -0.01, and whether a free run
    beat the floor's came down to the seed.)"""
    rec = load_session("invitro_210511001_lh").slice(0.0, 120.0)
    active = np.asarray(rec.unit_ids)[np.argsort(-np.asarray(rec.spike_counts), kind="stable")[:40]]
    path = tmp_path_factory.mktemp("forty") / "forty.npz"
    write_recording(rec.select_units(list(active)), path)
    return path


@pytest.mark.parametrize("mode", ["teacher", "free"])
def test_generate_with_the_fitted_model(forty_units, tmp_path, capsys, mode):
    """`spikeviz generate --model states`: fitted on the data's train split, 40 units, an NWB file
    that says what made it, and a fidelity report whose free run keeps the real spike count."""
    import json

    from pynwb import NWBHDF5IO

    from spikeviz.cli import main

    out = tmp_path / f"{mode}.nwb"
    assert main(["generate", "--model", "states", "--data", str(forty_units), "--mode", mode,
                 "--seconds", "10", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    made = report["generated_by"]
    assert made["generator"] == "states fitted on [0, 60) s of forty" and made["mode"] == mode
    assert report["units"] == 40 and report["bins"] == 10_000
    assert 0.7 < report["model"]["count_ratio"] < 1.4
    assert report["model"]["corr_similarity_20ms"] > report["floor"]["corr_similarity_20ms"]
    with NWBHDF5IO(str(out), "r") as io:
        assert "states fitted on [0, 60) s" in io.read().units.description


def test_generate_with_the_fitted_model_refuses_what_it_cannot_do(forty_units, tmp_path, capsys):
    from spikeviz.cli import main

    assert main(["generate", "--model", "states", "--data", str(forty_units), "--mode", "free",
                 "--threshold", "0.2", "--out", str(tmp_path / "t.csv")]) != 0
    assert "a free run of --model states draws with its own Bernoulli rule" in capsys.readouterr().err
    assert main(["generate", "--model", "glm", "--data", str(forty_units),
                 "--out", str(tmp_path / "t.csv")]) != 0
    assert "unknown --model 'glm': use one of states" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_its_fitted_arrays_rebuild_it(fitted):
    """What the disk cache keeps of a fitted model (its `_` attributes, as arrays) predicts,
    draws, runs free and adapts to a warm-up as it does: `generate` after the page reads the fit
    back instead of fitting again."""
    from spikeviz.models.registry import fitted_arrays, from_fitted_arrays

    model, X = fitted
    arrays = fitted_arrays(model)
    assert arrays is not None and all(isinstance(v, np.ndarray) for v in arrays.values())
    back = from_fitted_arrays("states", arrays, model.bin_ms)
    part = X[:20_000]
    np.testing.assert_array_equal(back.predict(part), model.predict(part))
    np.testing.assert_array_equal(back.sample(part, seed=1), model.sample(part, seed=1))
    np.testing.assert_array_equal(back.simulate(part, 5_000, seed=1), model.simulate(part, 5_000, seed=1))
    np.testing.assert_array_equal(back.on_warmup(part, 1, 10_000).transitions_,
                                  model.on_warmup(part, 1, 10_000).transitions_)
    assert back.selection == model.selection


def test_a_fit_does_not_depend_on_the_thread_count():
    """The page's server runs one BLAS thread and `generate` several: both must find the same
    states, or the trains each writes depend on which one filled the disk cache first."""
    from threadpoolctl import threadpool_limits

    X = assemblies(60_000)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            fits.append(vars(PopulationStates(n_states=(6,)).fit(X)))
    for name, value in fits[0].items():
        if name.endswith("_"):
            np.testing.assert_array_equal(np.asarray(value), np.asarray(fits[1][name]), err_msg=name)
