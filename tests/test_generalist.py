"""The generalist: EWMA when untrained, a guard that turns down what does not carry, never below EWMA
on sessions it never saw (zero-shot and fine-tuned), fine-tuning and cancelling through the API."""
import numpy as np
import pytest
import torch

import spikeviz
from spikeviz.models.baselines import EWMAPredictor
from spikeviz.data.catalog import models_dir
from spikeviz.evaluation.evaluate import evaluate_checkpoint
from spikeviz.generation.adapt import adapt
from spikeviz.measures.metrics import ScoreHistogram
from spikeviz.models.build import build_model
from spikeviz.models.model import preset_config
from spikeviz.generation.predict import predict_next
from spikeviz.training.loop import TrainOptions, train_recording

VITRO, VITRO2, VIVO = "invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001"


def pr(X, P):
    return ScoreHistogram.from_scores(X[1:], P[:-1]).pr_auc


@pytest.fixture(scope="module")
def X():
    return spikeviz.bin_spikes(spikeviz.load_session(VITRO), start_s=300, stop_s=330).X


def generalist(out_std=0.0):
    torch.manual_seed(0)
    model = build_model(preset_config("generalist", 128)).eval()
    model.meta = {"bin_ms": 1.0}
    if out_std:
        torch.nn.init.normal_(model.out.weight, std=out_std)
    return model


def test_untrained_generalist_ranks_like_ewma(X):
    ewma = pr(X, EWMAPredictor().predict(X))
    assert pr(X, predict_next(generalist(), X)) == pytest.approx(ewma, abs=0.005)


def test_guard_turns_down_a_harmful_correction(X):
    noisy = generalist(out_std=3.0)            # a large random correction: mostly noise
    ewma = pr(X[20_000:], EWMAPredictor().predict(X)[20_000:])
    assert pr(X[20_000:], predict_next(noisy, X)[20_000:]) < ewma - 0.02
    guarded = adapt(noisy, X, 5_000, 20_000)
    g0, g1, _ = guarded.meta["guard"]
    assert abs(g1) < 0.5 * g0
    assert pr(X[20_000:], predict_next(guarded, X)[20_000:]) >= ewma - 0.005


def test_guard_reads_only_the_bins_it_is_given(X):
    a = adapt(generalist(out_std=1.0), X, 5_000, 20_000)
    flipped = X.copy()
    flipped[20_000:] = 1 - flipped[20_000:]
    b = adapt(generalist(out_std=1.0), flipped, 5_000, 20_000)
    assert a.meta["guard"] == b.meta["guard"]


@pytest.mark.parametrize("held_out", [VITRO, VITRO2, VIVO])
def test_zero_shot_generalist_is_not_below_ewma(held_out):
    path = models_dir() / "loso" / f"generalist-focal-without-{held_out}-seed0.safetensors"
    r = evaluate_checkpoint(path, spikeviz.load_session(held_out), seconds=20,
                            baselines=("ewma",))
    assert not r["same_recording"] and r["guard"] is not None
    assert r["model"]["pr_auc"] >= r["baselines"]["ewma"]["pr_auc"]
    assert r["model"]["bits_per_spike"] > r["baselines"]["ewma"]["bits_per_spike"]


def test_fine_tuned_generalist_is_not_below_ewma(tmp_path):
    init = models_dir() / "loso" / f"generalist-focal-without-{VITRO2}-seed0.safetensors"
    rec = spikeviz.load_session(VITRO2).slice(0.0, 80.0)
    out = tmp_path / "fitted.safetensors"
    meta = train_recording(rec, out, TrainOptions(loss="focal", init=str(init), epochs=1, lr=1e-3),
                           progress=False, log=False)
    assert meta["preset"] == "generalist" and meta["train_options"]["init"] == str(init)
    r = evaluate_checkpoint(out, rec, seconds=None, baselines=("ewma",))
    assert r["same_recording"] and r["stretch_s"] == [60.0, 80.0]
    assert r["model"]["pr_auc"] >= r["baselines"]["ewma"]["pr_auc"]


def test_callback_sees_every_batch_and_can_cancel(tmp_path):
    rec = spikeviz.load_session(VITRO).slice(0.0, 30.0)
    seen = []

    def stop_after_two(epoch, epochs, batch, batches):
        seen.append((epoch, epochs, batch, batches))
        return batch < 2

    out = tmp_path / "cancelled.safetensors"
    meta = train_recording(rec, out, TrainOptions(preset="generalist", epochs=3), progress=False,
                           log=False, callback=stop_after_two)
    assert meta.get("cancelled") and [s[2] for s in seen] == [1, 2]
    assert seen[0][1] == 3 and seen[0][3] > 2
    assert not out.exists()   # no epoch finished: nothing half-trained is written


def test_base_logits_are_the_untrained_model(X):
    from spikeviz.models.generalist import base_logits
    from spikeviz.generation.predict import logits_next

    model = generalist()
    np.testing.assert_allclose(base_logits(model, X[:3000]), logits_next(model, X[:3000]),
                               atol=1e-4)


def test_guard_is_the_unpenalised_fit_on_its_subsample():
    """fit_guard keeps every spike and a seeded subsample of the silent cells; its guard is
    scikit-learn's unpenalised logistic fit on those cells, with the intercept moved by the log of
    the fraction kept."""
    from sklearn.linear_model import LogisticRegression

    from spikeviz.generation.adapt import fit_guard

    rng = np.random.default_rng(0)
    base, corr = rng.normal(-5.0, 1.0, (20_000, 10)), rng.normal(0.0, 1.0, (20_000, 10))
    Y = rng.random(base.shape) < 1 / (1 + np.exp(-(1.5 * base + 0.3 * corr + 2.0)))
    g0, g1, g2 = fit_guard((base, corr), Y, max_cells=50_000)
    y = Y.ravel()
    q = (50_000 - y.sum()) / (y.size - y.sum())
    keep = y | (np.random.default_rng(0).random(y.size) < q)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(
        np.stack((base.ravel()[keep], corr.ravel()[keep]), axis=1), y[keep])
    np.testing.assert_allclose([g0, g1], ref.coef_[0], atol=1e-5)
    assert g2 == pytest.approx(ref.intercept_[0] + np.log(q), abs=1e-5)
    assert g0 == pytest.approx(1.5, abs=0.1) and g2 == pytest.approx(2.0, abs=0.5)
