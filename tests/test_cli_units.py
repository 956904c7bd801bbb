"""A recording with fewer units than the default 128 trains as it is; --pad adds silent units."""
import re

import pytest

from spikeviz.models.checkpoint import load_model
from spikeviz.cli import main

from .recordings import session_slice


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return session_slice(tmp_path_factory.mktemp("small"), "invitro_210511001_bh", 12.0, 18,
                         "eighteen")


def train(small, out, *extra):
    return main(["train", "--data", str(small), "--loss", "focal", "--epochs", "1", "--threads",
                 "1", "--quiet", "--out", str(out), *extra])


def test_default_units_follow_the_recording(small, tmp_path):
    assert train(small, tmp_path / "m.safetensors") == 0
    assert load_model(tmp_path / "m.safetensors").config.n_units == 18


def test_pad_adds_silent_units_and_the_model_still_takes_its_own_recording(small, tmp_path):
    """The checkpoint has 24 columns, 6 of them silent; loaded, it is the 18-unit model of the
    real ones, and its own recording is evaluated as it is (it was refused: "18 units, but the
    model was trained on 24")."""
    from spikeviz import load_recording
    from spikeviz.evaluation.evaluate import evaluate_checkpoint
    from spikeviz.models.header import read_meta

    path = tmp_path / "p.safetensors"
    assert train(small, path, "--units", "24", "--pad") == 0
    assert read_meta(path)["unit_ids"][-6:] == [f"pad{k}" for k in range(6)]
    model = load_model(path)
    assert model.config.n_units == 18 and model.meta["silent_units"] == 6
    r = evaluate_checkpoint(path, load_recording(small), seconds=1, warmup_s=3, baselines=("rate",))
    assert r["same_recording"] and r["n_units"] == 18 and r["units"] == model.meta["unit_ids"]


def test_more_units_than_recorded_without_pad_names_real_options(small, tmp_path, capsys):
    assert train(small, tmp_path / "x.safetensors", "--units", "24") == 2
    err = capsys.readouterr().err
    assert "18 units but 24 were asked" in err and "--pad" in err and "--units" in err


def test_every_progress_figure_is_labelled(small, tmp_path, capsys):
    # The bar showed `val=5.354`, an unlabelled lift, beside an epoch line printing PR-AUC.
    assert main(["train", "--data", str(small), "--loss", "focal", "--epochs", "2", "--threads",
                 "1", "--patience", "9", "--out", str(tmp_path / "m.safetensors")]) == 0
    out, err = capsys.readouterr()   # the bar on stderr, the epoch lines on stdout
    epoch1 = re.search(r"epoch 1: train focal loss [\d.]+, valid PR-AUC ([\d.]+) \(chance [\d.]+\)",
                       out)
    assert epoch1, out
    bar = re.findall(r"epoch 2/2.*?\[(.*?)\]", err)[-1]
    figures = dict(f.split("=") for f in bar.split(", ") if "=" in f)
    assert set(figures) == {"train focal loss", "valid PR-AUC", "bins/s"}
    assert figures["valid PR-AUC"] == epoch1.group(1)
