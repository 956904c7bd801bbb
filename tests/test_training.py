"""`spikeviz train` on a few seconds of data: checkpoint metadata, refusal to overwrite, exact resume."""
import numpy as np
import torch
from safetensors.torch import load_file

from spikeviz.models.checkpoint import load_model, read_tensors
from spikeviz.cli import main
from spikeviz.data.binning import split_bounds
from spikeviz.training.loop import state_path

SESSION = "invitro_210511001_bh"


def train(out, *extra, preset="fast", loss="focal", seconds="6"):
    torch.set_num_threads(1)
    return main(["train", "--session", SESSION, "--seconds", seconds, "--loss", loss, "--preset",
                 preset, "--seed", "7", "--quiet", "--out", str(out), *extra])


def test_train_writes_a_checkpoint_with_its_metadata(tmp_path):
    out = tmp_path / "m.safetensors"
    assert train(out, "--epochs", "1") == 0
    model = load_model(out)
    meta = model.meta
    assert meta["n_units"] == 128 and meta["bin_ms"] == 1.0 and meta["loss"] == "focal"
    assert meta["session"] == SESSION and meta["domain"] == "in vitro"
    assert len(meta["content_hash"]) == 64 and meta["seed"] == 7 and meta["epochs"] == 1
    assert meta["split"]["train"] == list(split_bounds(6000)["train"]) == [0, 3000]
    assert meta["split"]["valid"] == [3000, 4500] and meta["split"]["test"] == [4500, 6000]
    assert 0 < meta["valid"]["pr_auc"] <= 1 and 0 < meta["valid"]["roc_auc"] <= 1
    assert meta["config"]["preset"] == "fast" and meta["spikeviz_version"]
    assert meta["calibration"]["scale"] > 0 and model.calibration[0] == meta["calibration"]["scale"]
    # An existing checkpoint is not replaced without --force.
    before = out.read_bytes()
    assert train(out, "--epochs", "1") == 2
    assert out.read_bytes() == before
    assert train(out, "--epochs", "1", "--force") == 0


def test_resume_after_one_epoch_equals_two_straight_epochs(tmp_path):
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    # 10 s: two batches an epoch, so the optimizer state carries across steps and epochs.
    assert train(straight, "--epochs", "2", "--patience", "5", seconds="10") == 0
    assert train(resumed, "--epochs", "1", "--patience", "5", seconds="10") == 0
    assert train(resumed, "--epochs", "2", "--patience", "5", "--resume", seconds="10") == 0
    for a, b in ((straight, resumed), (state_path(straight), state_path(resumed))):
        ta, tb = load_file(str(a)), load_file(str(b))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), k
    ma, mb = read_tensors(straight)[1], read_tensors(resumed)[1]
    assert ma["epochs"] == mb["epochs"] == 2
    assert [h["pr_auc"] for h in ma["history"]] == [h["pr_auc"] for h in mb["history"]]


def test_resume_needs_a_state_and_the_same_settings(tmp_path):
    out = tmp_path / "m.safetensors"
    assert train(out, "--epochs", "1", "--resume") == 2          # nothing to resume
    assert train(out, "--epochs", "1") == 0
    assert train(out, "--epochs", "2", "--resume", loss="bce") == 2   # other loss


def test_transfer_preset_trains_and_runs_on_another_unit_count(tmp_path):
    out = tmp_path / "t.safetensors"
    assert train(out, "--epochs", "1", preset="transfer") == 0
    from spikeviz.generation.predict import predict_next
    P = predict_next(load_model(out), np.zeros((100, 7), np.uint8))
    assert P.shape == (100, 7) and np.isfinite(P).all()


def test_library_init_resolves_as_the_cli_does_from_any_folder(tmp_path, monkeypatch):
    """`TrainOptions(init=...)` from Python, run in another folder: a shipped checkpoint by its
    models/ path or bare name, resolved by the one function `spikeviz train --init` uses."""
    from spikeviz.data.catalog import load_session, resolve_checkpoint
    from spikeviz.training.loop import TrainOptions, train_recording

    torch.set_num_threads(1)
    rec = load_session(SESSION)
    monkeypatch.chdir(tmp_path)
    shipped = str(resolve_checkpoint("models/generalist-focal.safetensors"))
    for source in ("models/generalist-focal.safetensors", "generalist-focal"):
        meta = train_recording(rec, f"{source[-6:]}.safetensors", TrainOptions(init=source, epochs=1),
                               seconds=4, n_units=8, progress=False, log=False)
        assert meta["train_options"]["init"] == shipped and meta["preset"] == "generalist"
