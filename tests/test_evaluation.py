"""Evaluation: protocols, unit-order policies, directions, checkpoint results and the tables."""
import json

import numpy as np
import pytest
import torch

import spikeviz
import spikeviz.evaluation.report
from spikeviz import SpikevizError
from spikeviz.data.catalog import session
from spikeviz.models.checkpoint import save_checkpoint
from spikeviz.data.catalog import direction
from spikeviz.data.units import parse_unit_order, rates_for, unit_permutation
from spikeviz.evaluation.evaluate import evaluate_checkpoint
from spikeviz.evaluation.report import build_table
from spikeviz.measures.scoring import aligned, resolve_threshold
from spikeviz.measures.metrics import ScoreHistogram
from spikeviz.models.model import SpikeTransformer, preset_config

VITRO, VITRO2, VIVO = "invitro_210511001_bh", "invitro_210511001_lh", "invivo_NYU-40_2021-04-14_001"
# Short stretches and the quick baselines: an untrained model is scored in seconds.
FAST = dict(seconds=2, warmup_s=12, baselines=("rate", "ewma", "glm"))


def make_checkpoint(path, name=VITRO, preset="fast", loss="focal", n_units=128, **meta):
    """An untrained model saved with the metadata `spikeviz train` writes for session `name`."""
    torch.manual_seed(0)
    s = session(name)
    rec = s.load()
    binned = spikeviz.bin_spikes(rec, n_units=n_units)
    model = SpikeTransformer(preset_config(preset, n_units))
    save_checkpoint(model, path, {
        "data": rec.name, "data_path": rec.source.get("path"), "session": s.name,
        "domain": s.domain, "content_hash": rec.content_hash(), "seconds": None,
        "duration_s": rec.duration_s, "unit_ids": [str(u) for u in binned.unit_ids],
        "n_units": n_units, "bin_ms": 1.0, "loss": loss, "preset": preset} | meta)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("models") / f"{VITRO}-focal.safetensors")


def test_protocols_align_predictions_with_the_next_or_the_same_bin():
    rng = np.random.default_rng(0)
    X = (rng.random((5000, 8)) < 0.1).astype(np.uint8)
    P = X.astype(np.float32)          # "predicts" the bin it has just seen
    y, p = aligned(P, X, "strict")
    assert np.shares_memory(y, X) and (y == X[1:]).all() and (p == P[:-1]).all()
    strict = ScoreHistogram.from_scores(*aligned(P, X, "strict")).roc_auc
    leaky = ScoreHistogram.from_scores(*aligned(P, X, "reference")).roc_auc
    assert leaky == 1.0 and abs(strict - 0.5) < 0.03
    with pytest.raises(SpikevizError, match="unknown protocol"):
        aligned(P, X, "same-bin")


def test_unit_order_policies():
    assert parse_unit_order("random:7") == ("random", 7)
    for bad in ("random", "random:x", "shuffled"):
        with pytest.raises(SpikevizError, match="unknown unit order"):
            parse_unit_order(bad)
    np.testing.assert_array_equal(unit_permutation("recorded", 5), np.arange(5))
    r = unit_permutation("random:3", 50)
    assert sorted(r) == list(range(50)) and (r == unit_permutation("random:3", 50)).all()
    assert not (r == unit_permutation("random:4", 50)).all()
    warm = np.zeros((100, 4), np.uint8)
    warm[:40, 0], warm[:10, 1], warm[:90, 2], warm[:5, 3] = 1, 1, 1, 1   # target ranks 2, 0, 1, 3
    src = np.array([0.01, 0.2, 0.05, 0.1])                               # source ranks 1, 3, 2, 0
    perm = unit_permutation("rate-rank", 4, warm, src)
    # Model column 1 (the most active source unit) gets target column 2 (the most active), etc.
    np.testing.assert_array_equal(perm, [3, 2, 1, 0])
    with pytest.raises(SpikevizError, match="warm-up"):
        unit_permutation("rate-rank", 4)
    np.testing.assert_allclose(rates_for(3, np.array([0.3, 0.1, 0.2, 0.0])), [0.3, 0.15, 0.0])


def test_directions():
    assert direction("in vitro", "in vivo") == "vitro->vivo"
    assert direction("in vivo", "in vivo") == "vivo->vivo"
    assert direction(None, "in vivo") is None


def test_thresholds():
    rng = np.random.default_rng(1)
    y = rng.random(10_000) < 0.1
    h = ScoreHistogram.from_scores(y, np.clip(0.3 * y + rng.random(10_000) * 0.7, 0, 1))
    assert resolve_threshold("0.25", h) == (0.25, "given")
    thr, rule = resolve_threshold("max-f1", h)
    assert thr == h.threshold("max-f1") and "warm-up" in rule
    for bad in ("otsu", "1.5"):
        with pytest.raises(SpikevizError, match="threshold"):
            resolve_threshold(bad, h)


def test_checkpoint_on_its_own_session(ckpt):
    r = evaluate_checkpoint(ckpt, spikeviz.load_session(VITRO), **FAST)
    json.dumps(r, allow_nan=False)
    meta_units = spikeviz.models.checkpoint.load_model(ckpt).meta["unit_ids"]
    assert r["same_recording"] and r["unit_order"] == "recorded" and r["units"] == meta_units
    assert r["direction"] == "vitro->vitro" and r["protocol"] == "strict" and not r["leaky"]
    assert r["n_bins"] == 1999 and r["n_units"] == 128 and r["n_scored"] == 1999 * 128
    assert r["stretch_s"][0] == pytest.approx(300.059, abs=0.01)   # test split: 75-100 %
    assert r["chance"] == {"roc_auc": 0.5, "pr_auc": r["base_rate"]}
    assert set(r["baselines"]) == {"rate", "ewma", "glm"}
    assert r["baselines_fit_on"].startswith("the target's train split")
    for name in ("rate", "ewma", "glm"):
        assert r["baselines"][name]["roc_auc"] > 0.8           # knowing rates ranks the units
    leaky, strict = r["protocols"]["reference"]["ewma"], r["protocols"]["strict"]["ewma"]
    assert leaky["roc_auc"] > 0.95 > strict["roc_auc"]        # same-bin scoring leaks
    for key in ("threshold", "precision", "recall", "f1", "fpr", "predicted_spikes", "real_spikes"):
        assert key in r["model"]


def test_cross_domain_checkpoint_uses_rate_rank(ckpt):
    rec = spikeviz.load_session(VIVO)
    r = evaluate_checkpoint(ckpt, rec, **FAST)
    assert r["direction"] == "vitro->vivo" and r["unit_order"] == "rate-rank"
    assert not r["same_recording"] and r["model_needs_unit_order"]
    top = spikeviz.data.binning.select_units(rec, 128, "rate")
    assert sorted(r["units"]) == sorted(map(str, top))
    assert r["base_rate"] < 0.005
    shuffled = evaluate_checkpoint(ckpt, rec, unit_order="random:0", protocol="reference", **FAST)
    assert shuffled["unit_order"] == "random:0" and shuffled["leaky"]
    # Baselines are fitted on the target itself: the model's unit order does not touch them.
    assert shuffled["protocols"]["strict"]["rate"] == r["protocols"]["strict"]["rate"]
    assert shuffled["model"]["roc_auc"] != r["model"]["roc_auc"]


def test_missing_source_falls_back_to_the_target(tmp_path):
    path = make_checkpoint(tmp_path / "elsewhere.safetensors", session=None,
                           data_path=str(tmp_path / "gone.asdf.mat"), content_hash="0" * 64)
    r = evaluate_checkpoint(path, spikeviz.load_session(VITRO2), **FAST)
    assert r["unit_order"] == "recorded" and r["direction"] == "vitro->vitro"


def test_transfer_model_takes_any_unit_count(tmp_path):
    path = make_checkpoint(tmp_path / "t.safetensors", preset="transfer")
    rec = spikeviz.load_session(VIVO)
    r = evaluate_checkpoint(path, rec, n_units=40, seconds=1, warmup_s=3, baselines=("ewma",))
    assert r["n_units"] == 40 and not r["model_needs_unit_order"]
    with pytest.raises(SpikevizError, match="trained on 128"):
        evaluate_checkpoint(make_checkpoint(tmp_path / "f.safetensors"),
                            rec.select_units(list(rec.unit_ids[:50])), **FAST)


def test_a_model_of_an_uncatalogued_recording_is_not_counted_within_domain():
    """A checkpoint trained on a user's own recording has no known domain: its cells on the
    bundled sessions are "another recording", grouped by the target's domain, never pooled as
    "within domain" across in vitro and in vivo."""
    from spikeviz.evaluation.report import _direction, _kind

    meta = {"data": "my_recording", "preset": "fast"}
    cells = [{"direction": None, "source": {"domain": None}, "domain": d} for d in ("in vitro", "in vivo")]
    assert [_direction(c) for c in cells] == ["?->vitro", "?->vivo"]
    assert {_kind(meta, VITRO, _direction(c)) for c in cells} == {"another recording"}
    known = {"direction": "vitro->vivo", "source": {"domain": "in vitro"}, "domain": "in vivo"}
    assert _kind({"session": VITRO, "preset": "fast"}, VIVO, _direction(known)) == "cross domain"


def test_table(ckpt, tmp_path):
    table = build_table([ckpt], seconds=1, warmup_s=8, baselines=("rate", "ewma"))
    assert [r["test_session"] for r in table.rows] == [VITRO, VITRO2, VIVO]
    assert [r["kind"] for r in table.rows] == ["same session", "within domain", "cross domain"]
    groups = {(s["kind"], s["direction"]): s for s in table.summary}
    assert set(groups) == {("same session", "vitro->vitro"), ("within domain", "vitro->vitro"),
                           ("cross domain", "vitro->vivo")}
    assert all(s["cells"] == 1 and s["model_roc_sd"] is None for s in table.summary)
    md = table.markdown()
    assert "| cross domain | vitro->vivo | fast | focal | 1 (1) |" in md
    paths = table.write(tmp_path / "out")
    assert [p.name for p in paths] == ["table.md", "table.csv", "table.json"]
    assert len(paths[1].read_text().splitlines()) == 4
    back = spikeviz.evaluation.report.Table.read(paths[2])
    assert back.rows[0]["train"] == VITRO and back.summary_markdown() == table.summary_markdown()
    with pytest.raises(SpikevizError, match="no checkpoints"):
        build_table([])


def test_a_generalist_trained_beyond_the_bundled_sessions_is_its_own_table_group(tmp_path):
    """The corpus generalist (bundled sessions + other labs' recordings, unnamed in "sessions")
    is "seen" on the bundled sessions and never averaged with the bundled-only generalist."""
    from .robustness.hostile import good_checkpoint

    meta = dict(sessions=[VITRO, VITRO2, VIVO, None, None], domains=["in vitro"] * 5, session=None,
                data=f"{VITRO} + {VITRO2} + {VIVO} + aplysia_Jun0214da01 + rat_ca1_lineartrack")
    path = good_checkpoint(tmp_path / "generalist-focal-corpus.safetensors", preset="generalist",
                           **meta)
    table = build_table([path], seconds=1, warmup_s=8, baselines=("rate",))
    assert [(r["kind"], r["config"]) for r in table.rows] == [
        ("seen", "generalist + 2 other recordings")] * 3
    assert table.rows[0]["train"].endswith("+ aplysia_Jun0214da01 + rat_ca1_lineartrack")


@pytest.mark.parametrize("protocol", ["strict", "reference"])
def test_the_rate_baseline_scores_zero_bits_per_spike(ckpt, protocol):
    """Bits per spike are a gain over each unit's train-split rate, and `rate` is that predictor:
    it must score exactly 0, under either protocol, or the reference that model and baselines
    share is scored on other bins than they are."""
    r = evaluate_checkpoint(ckpt, spikeviz.load_session(VITRO2), protocol=protocol, **FAST)
    assert r["baselines"]["rate"]["bits_per_spike"] == pytest.approx(0, abs=1e-9)
    assert r["baselines"]["glm"]["bits_per_spike"] != pytest.approx(0, abs=1e-3)


def test_a_baseline_fitted_on_a_target_is_read_back_from_disk(tmp_path, monkeypatch):
    """`spikeviz generate` after `evaluate` (or a page) does not fit the coupled GLM again: the
    fit is stored under the recording's content, and another recording gets its own."""
    from spikeviz.evaluation.evaluate import fit_baseline
    from spikeviz.evaluation.stretch import setup
    from spikeviz.models.glm import CoupledGLMPredictor

    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    rec = session(VITRO).load().slice(0.0, 80.0)
    su = setup(None, rec, seconds=5, warmup_s=12, n_units=16)
    first = fit_baseline("glm-coupled", su)
    real_fit = CoupledGLMPredictor.fit
    monkeypatch.setattr(CoupledGLMPredictor, "fit", lambda self, X: pytest.fail("fitted again"))
    again = fit_baseline("glm-coupled", su)
    assert again is not first
    np.testing.assert_array_equal(again.predict(su.stretch.X), first.predict(su.stretch.X))
    fits = []
    monkeypatch.setattr(CoupledGLMPredictor, "fit",
                        lambda self, X: fits.append(1) or real_fit(self, X))
    other = setup(None, rec.slice(0.0, 79.0), seconds=5, warmup_s=12, n_units=16)
    fit_baseline("glm-coupled", other)
    assert fits == [1]


def test_a_generalists_guard_is_read_back_for_the_same_weights_and_warm_up(tmp_path, monkeypatch):
    """A second `evaluate` or `generate` (or the page) on the same warm-up does not refit the
    guard; other weights or another warm-up do."""
    import spikeviz.evaluation.evaluate as evaluate
    from spikeviz.data.catalog import resolve_checkpoint
    from spikeviz.evaluation.stretch import setup
    from spikeviz.models.checkpoint import load_model

    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    model = load_model(resolve_checkpoint("generalist-focal"))
    rec = session(VITRO).load().slice(0.0, 80.0)
    st = setup(model, rec, seconds=5, warmup_s=12).model_stretch
    first = evaluate.for_target(model, st.X, st)
    real_adapt, adapted = evaluate.adapt, []
    monkeypatch.setattr(evaluate, "adapt", lambda *a: adapted.append(1) or real_adapt(*a))
    again = evaluate.for_target(model, st.X, st)
    assert adapted == [] and again.meta["guard"] == first.meta["guard"]
    assert again.meta["adapted_on"] == first.meta["adapted_on"]
    torch.testing.assert_close(again.guard, first.guard, rtol=0, atol=0)
    other = st.X.copy()
    other[st.prime + 5, 0] ^= 1
    evaluate.for_target(model, other, st)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    evaluate.for_target(model, st.X, st)
    assert adapted == [1, 1]
