"""Prediction and generation: causal, seeded, the Predictor protocol, and the shipped checkpoints."""
import numpy as np
import pytest
import torch

import spikeviz
from spikeviz import ModelPredictor, generate, load_model, predict_next
from spikeviz.data.catalog import models_dir, sessions
from spikeviz.models.model import SpikeTransformer, compute_traces, preset_config
from spikeviz.models.baselines import Predictor


def make(preset, n_units=10, context=None):
    torch.manual_seed(1)
    cfg = preset_config(preset, n_units)
    if context:
        cfg = type(cfg).from_dict(cfg.to_dict() | {"context": context})
    model = SpikeTransformer(cfg).eval()
    model.meta = {"bin_ms": 1.0}
    return model


def spikes(T, N, seed=0, density=0.1):
    return (np.random.default_rng(seed).random((T, N)) < density).astype(np.uint8)


@pytest.mark.parametrize("preset", ["fast", "transfer"])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_teacher_forced_generation_is_causal(preset, threshold):
    model = make(preset)
    X = spikes(400, 10)
    G = generate(model, X, "teacher", threshold=threshold, seed=3)
    assert G.shape == X.shape and G.dtype == np.uint8
    for t in (50, 200, 399):
        Y = X.copy()
        Y[t:] = 1 - Y[t:]
        H = generate(model, Y, "teacher", threshold=threshold, seed=3)
        assert np.array_equal(G[:t], H[:t])      # row t-1 is bin t, drawn from bins <= t-1
    assert np.array_equal(G, generate(model, X, "teacher", threshold=threshold, seed=3))


@pytest.mark.parametrize("preset", ["fast", "transfer", "paper"])
def test_free_running_generation_is_causal_and_seeded(preset):
    model = make(preset, context=48)
    prompt = spikes(100, 10)
    G = generate(model, prompt, "free", seed=5, n_bins=60)
    assert G.shape == (60, 10)
    assert np.array_equal(G, generate(model, prompt, "free", seed=5, n_bins=60))
    assert np.array_equal(G[:30], generate(model, prompt, "free", seed=5, n_bins=30))
    # Each draw used only the past: the probabilities the cache gave equal a fresh causal pass
    # over prompt + generated bins (sliding window of 48 bins), so future bins played no part.
    full = np.concatenate((prompt, G))
    tr = compute_traces(full, model.config.trace_taus)
    with torch.inference_mode():
        for t in (100, 120, 159):
            a = t - 47
            ref = torch.sigmoid(model(torch.from_numpy(full[a:t][None].astype(np.float32)),
                                      torch.from_numpy(tr[a:t][None])))[0, -1].numpy()
            state = model.start(10, torch.from_numpy(tr[a - 1]) if model.config.trace_taus
                                else None)
            # replaying the same 47 bins through a fresh cache gives the same probabilities
            for row in torch.from_numpy(full[a:t].astype(np.float32)):
                logits = model.step(row, state)
            np.testing.assert_allclose(torch.sigmoid(logits).numpy(), ref, atol=1e-5)
    # Changing the prompt changes what follows; an empty prompt starts from a silent bin.
    assert not np.array_equal(G, generate(model, 1 - prompt, "free", seed=5, n_bins=60))
    assert generate(model, prompt[:0], "free", seed=5, n_bins=20).shape == (20, 10)


def test_thresholded_free_running_is_deterministic():
    model = make("fast")
    prompt = spikes(300, 10)
    a = generate(model, prompt, "free", threshold=0.5, seed=1, n_bins=40)
    b = generate(model, prompt, "free", threshold=0.5, seed=2, n_bins=40)
    assert np.array_equal(a, b)


def test_model_predictor_follows_the_protocol(tmp_path):
    from spikeviz.models.checkpoint import save_checkpoint

    model = make("fast")
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, {"bin_ms": 1.0, "n_units": 10})
    pred = ModelPredictor(path)
    assert isinstance(pred, Predictor) and pred.name == "m"
    X = spikes(600, 10)
    assert pred.fit(X) is pred
    np.testing.assert_array_equal(pred.predict(X), predict_next(model, X))


def test_predict_next_batches_do_not_change_results():
    model = make("fast")
    X = spikes(2000, 10)
    np.testing.assert_allclose(predict_next(model, X, batch_size=1),
                               predict_next(model, X, batch_size=64), atol=2e-6)


SHIPPED = [f"{s.name}-{loss}.safetensors" for s in sessions() for loss in ("focal", "dice")]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoints_load_and_predict(name):
    path = models_dir() / name
    assert path.exists(), f"missing shipped model {name}"
    model = load_model(path)
    session = model.meta["session"]
    assert name.startswith(session) and model.meta["loss"] in name
    X = spikeviz.bin_spikes(spikeviz.load_session(session).slice(0, 3.0))
    P = predict_next(model, X)
    assert P.shape == (3000, 128) and np.isfinite(P).all() and (0 <= P).all() and (P <= 1).all()


def test_generate_cli_writes_readable_trains_and_refuses_pickles(tmp_path):
    import pickle
    from pathlib import Path

    from spikeviz.models.checkpoint import save_checkpoint
    from spikeviz.cli import main

    path = tmp_path / "m.safetensors"
    save_checkpoint(make("fast", n_units=128), path, {"bin_ms": 1.0, "n_units": 128})
    for mode, suffix in (("teacher", ".npz"), ("free", ".nwb")):
        out = tmp_path / f"g{suffix}"
        assert main(["generate", "--checkpoint", str(path), "--session", "invitro_210511001_bh",
                     "--mode", mode, "--seconds", "0.3", "--start", "20", "--out", str(out)]) == 0
        rec = spikeviz.load_recording(out)
        assert rec.n_units == 128 and rec.n_spikes > 0 and abs(rec.duration_s - 0.3) < 1e-9
        assert main(["generate", "--checkpoint", str(path), "--session", "invitro_210511001_bh",
                     "--seconds", "0.3", "--out", str(out)]) == 2      # exists: needs --force
    marker = tmp_path / "pwned"

    class Touch:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Touch()))
    assert main(["generate", "--checkpoint", str(evil), "--session", "invitro_210511001_bh",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert not marker.exists()


def test_draw_rules():
    from spikeviz import SpikevizError
    from spikeviz.generation.predict import DRAW_RULES, draw_spikes, unit_thresholds

    rng = np.random.default_rng(0)
    P = (rng.random((5000, 6)) * np.array([0.002, 0.01, 0.02, 0.05, 0.1, 0.2])).astype(np.float32)
    assert set(DRAW_RULES) == {"bernoulli", "pooled", "unit-density", "lift"}
    b = draw_spikes(P, seed=1)
    assert b.dtype == np.uint8 and b.shape == P.shape
    assert np.array_equal(b, draw_spikes(P, "bernoulli", 0.9, seed=1))   # threshold ignored
    assert not np.array_equal(b, draw_spikes(P, seed=2))
    assert (np.abs(b.sum(0) - P.sum(0)) < 4 * np.sqrt(P.sum(0)) + 1).all()
    np.testing.assert_array_equal(draw_spikes(P, "pooled", 0.05), P >= 0.05)
    # unit-density: each unit's count is t x its expected count, or t x its causal rate x T.
    np.testing.assert_array_equal(draw_spikes(P, "unit-density", 2.0).sum(0),
                                  np.round(2.0 * P.sum(0, dtype=np.float64)))
    rates = np.array([0.01, 0.001, 0.002, 0.004, 0.03, 0.0], np.float32)
    np.testing.assert_array_equal(draw_spikes(P, "unit-density", 1.0, unit_rates=rates).sum(0),
                                  np.round(rates.astype(np.float64) * len(P)))
    # lift: p / p-bar >= t with p-bar the given causal rates.
    np.testing.assert_array_equal(draw_spikes(P, "lift", 3.0, unit_rates=rates),
                                  P >= np.float32(3.0) * rates)
    np.testing.assert_allclose(unit_thresholds(P, "lift", 2.0), 2.0 * P.mean(0), rtol=1e-5)
    with pytest.raises(SpikevizError, match="draw rule"):
        draw_spikes(P, "nope")
    with pytest.raises(SpikevizError, match="one rate per unit"):
        draw_spikes(P, "lift", 2.0, unit_rates=rates[:3])


def test_generate_cli_json_reports_fidelity(tmp_path, capsys):
    import json

    from spikeviz.models.checkpoint import save_checkpoint
    from spikeviz.cli import main

    path = tmp_path / "m.safetensors"
    save_checkpoint(make("fast", n_units=128), path, {"bin_ms": 1.0, "n_units": 128})
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(path), "--session", "invitro_210511001_bh",
                 "--seconds", "0.5", "--start", "40", "--draw", "lift", "--threshold", "2",
                 "--json", "--out", str(tmp_path / "g.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    made = report["generated_by"]
    assert made["draw"] == "lift" and made["draw_level"] == 2 and made["start_s"] == 40.0
    # the 30-s warm-up before --start: its first 10 s prime, the rest calibrate (strictly before)
    assert made["calibration"]["fitted_on_s"] == [19.999, 39.999]
    assert report["ceiling_stretch_s"] == [39.5, 40.0] and report["bins"] == 500
    for who in ("model", "floor", "ceiling"):
        assert {"count_ratio", "rate_spearman", "isi_ks", "median_cv", "median_fano_100ms",
                "corr_similarity_10ms", "synchrony", "active_fraction"} <= set(report[who])
    assert report["model"]["spikes"] == spikeviz.load_recording(tmp_path / "g.npz").n_spikes
    assert main(["generate", "--checkpoint", str(path), "--session", "invitro_210511001_bh",
                 "--draw", "nope", "--out", str(tmp_path / "h.npz")]) == 2


def test_generate_notes_a_moved_window_not_the_bins_rounding():
    """A 3-ms bin does not tile 5 s: the window ends a bin fraction later, which is no change to
    note; a window moved by the warm-up or the recording's end is."""
    from types import SimpleNamespace

    from spikeviz.cli.generate import adjustments

    rec = SimpleNamespace(n_units=4, name="r", duration_s=122.722)
    gen = SimpleNamespace(n_units=4)
    rounded = SimpleNamespace(start_s=92.043, duration_s=5.001, bin_ms=3.0)
    assert adjustments(rec, gen, rounded, 92.043, 5.0) == []
    moved = SimpleNamespace(start_s=30.0, duration_s=5.001, bin_ms=3.0)
    assert "not [10, 15) s" in adjustments(rec, gen, moved, 10.0, 5.0)[0]
