"""Nothing fitted reads a scored bin: change the scored bins and every fitted quantity (training,
early stopping, baselines, the guard and the GLM blend, calibration, the joint draws' copula,
thresholds) stays the same, on the command line and in the page."""
import numpy as np
import pytest
import torch

import spikeviz
from spikeviz.dashboard import compute
from spikeviz.data.catalog import models_dir
from spikeviz.data.recording import Recording
from spikeviz.evaluation.evaluate import evaluate_checkpoint, fit_baseline, for_target
from spikeviz.evaluation.stretch import setup
from spikeviz.models.baselines import ALL_BASELINES
from spikeviz.models.checkpoint import load_model
from spikeviz.training.loop import TrainOptions, train_recording

SESSION = "invitro_210511001_lh"
GENERALIST = models_dir() / "generalist-focal.safetensors"


def rewritten_after(rec: Recording, t0: float, seed: int = 0) -> Recording:
    """`rec` with every spike at or after t0 replaced by a Poisson train at three times the unit's
    rate (other counts, other times): whatever reads those bins sees other data."""
    rng = np.random.default_rng(seed)
    span = rec.duration_s - t0
    trains = []
    for t in rec.spike_times:
        before = t[t < t0]
        n = rng.poisson(3 * (len(t) - len(before)) + 5)
        trains.append(np.concatenate([before, np.sort(t0 + rng.random(n) * span)]))
    return Recording(rec.name, rec.unit_ids, tuple(trains), rec.duration_s, dict(rec.source))


def fitted(predictor) -> dict:
    """A fitted predictor's learned attributes (scikit-learn style: names ending in `_`)."""
    return {k: v for k, v in vars(predictor).items() if k.endswith("_")}


def assert_same(a, b, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=f"{what}: {k}")


@pytest.fixture(scope="module")
def recordings():
    rec = spikeviz.load_session(SESSION).slice(0.0, 80.0)
    su = setup(load_model(GENERALIST), rec, seconds=4, warmup_s=10)
    return rec, rewritten_after(rec, su.stretch.start_s), su


def test_the_rewrite_changes_the_scored_bins_only(recordings):
    rec, other, su = recordings
    a, b = setup(None, rec, seconds=4, warmup_s=10), setup(None, other, seconds=4, warmup_s=10)
    w = a.stretch.warm
    np.testing.assert_array_equal(a.stretch.X[:w], b.stretch.X[:w])
    np.testing.assert_array_equal(a.target.train, b.target.train)
    assert (a.stretch.X[w:] != b.stretch.X[w:]).mean() > 0.001


def test_evaluate_fits_baselines_guard_and_threshold_on_unscored_bins(recordings):
    rec, other, _ = recordings
    model = load_model(GENERALIST)
    kw = dict(seconds=4, warmup_s=10)
    runs = [(setup(model, r, **kw), r) for r in (rec, other)]
    for name in ALL_BASELINES:
        a, b = (fitted(fit_baseline(name, su)) for su, _ in runs)
        assert a or name == "ewma", f"{name} has no fitted attributes"   # ewma learns nothing
        assert_same(a, b, name)
    guards = [for_target(model, su.model_stretch.X, su.model_stretch).meta["guard"]
              for su, _ in runs]
    assert guards[0] == guards[1]
    results = [evaluate_checkpoint(model, r, baselines=("rate", "glm"), **kw) for _, r in runs]
    assert results[0]["model"]["threshold"] == results[1]["model"]["threshold"]
    assert results[0]["guard"] == results[1]["guard"]
    assert results[0]["glm_blend"] == results[1]["glm_blend"] and results[0]["glm_blend"]
    assert results[0]["model"]["pr_auc"] != results[1]["model"]["pr_auc"]   # the scores did change


def test_training_and_early_stopping_never_read_the_test_split(tmp_path):
    rec = spikeviz.load_session(SESSION).slice(0.0, 8.0)
    other = rewritten_after(rec, 6.0)            # 75-100 %: the test split
    opts = TrainOptions(preset="fast", epochs=2, seed=3)
    weights = []
    for name, r in (("a", rec), ("b", other)):
        torch.manual_seed(0)
        train_recording(r, tmp_path / f"{name}.safetensors", opts, progress=False, log=False)
        weights.append(load_model(tmp_path / f"{name}.safetensors").state_dict())
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0, msg=k)


def test_the_page_fits_on_unscored_bins(recordings, tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    rec, _, su = recordings
    window = (su.stretch.start_s, su.stretch.start_s + 4.0)
    other = rewritten_after(rec, window[0])
    generator = compute.Generator("generalist-focal", GENERALIST)
    evaluations, fits = [], []
    for r in (rec, other):
        # Fits are shared by content across pages: a fresh cache makes them again.
        monkeypatch.setattr(compute, "SHARED_CACHE", type(compute.SHARED_CACHE)())
        plan = compute.plan(r, window, generator, data_key=r.content_hash())
        evaluations.append(compute.evaluate(plan, mode="teacher"))
        fits.append(compute.SHARED_CACHE.get(("baseline-fits", plan.setup.target.key), dict))
        np.testing.assert_array_equal(plan.setup.target.rates, su.target.rates)
    a, b = evaluations
    assert not np.array_equal(a.stretch.targets, b.stretch.targets)   # the scored bins differ
    assert a.thresholds == b.thresholds
    ca, cb = a.calibration, b.calibration
    assert ca.temperature == cb.temperature
    for field in ("offsets", "rates", "logit_means"):
        np.testing.assert_array_equal(getattr(ca, field), getattr(cb, field), err_msg=field)
    # The copula that draws a bin's units jointly is fitted on the warm-up too.
    ja, jb = (e.predictions[e.generator.name].copula for e in evaluations)
    assert (ja.tau_ms, ja.dead_bins, ja.fit) == (jb.tau_ms, jb.dead_bins, jb.fit)
    np.testing.assert_array_equal(ja.loadings, jb.loadings)
    # Keyed by the recording's content, which the rewrite changed: compared by baseline name.
    a, b = ({key[0]: f for key, f in fit.items()} for fit in fits)
    assert a.keys() == b.keys() and a
    for name in a:
        assert_same(fitted(a[name]), fitted(b[name]), name)
