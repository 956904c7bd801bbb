"""Checkpoints are untrusted: every hostile file is refused, by the library and by every command that
takes one (generate, evaluate, table --checkpoint, train --resume) and by the dashboard, with one
line naming the file, and no pickle payload ever runs."""
from __future__ import annotations

import pickle

import pytest

from spikeviz import SpikevizError
from spikeviz.models.checkpoint import load_model, read_header, read_tensors, write_tensors
from spikeviz.cli import main
from spikeviz.training.loop import state_path

from .hostile import MARKER, Touch, build, cases, good_checkpoint

CASES = sorted(cases())
VITRO = "invitro_210511001_bh"
PICKLES = [c for c in CASES if "pickle" in c or "zip" in c]
STRUCTURAL = PICKLES + ["empty", "truncated-data", "huge-header-length", "header-not-json",
                        "offsets-overlap", "offsets-past-end", "unknown-dtype"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return good_checkpoint(tmp_path_factory.mktemp("base") / "base.safetensors")


def refused_one_line(capsys, argv, name: str) -> str:
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"spikeviz: error: {name}: "), err
    assert "Traceback" not in captured.err + captured.out
    return err[0]


def test_the_payload_is_live(tmp_path):
    """The control: unpickling the payload does create its file."""
    pickle.loads(pickle.dumps(Touch(tmp_path / MARKER)))
    assert (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", CASES)
def test_library_refuses(case, base, tmp_path):
    path = build(case, tmp_path, base)
    with pytest.raises(SpikevizError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path.name}: "), str(info.value)
    assert not (tmp_path / MARKER).exists(), "a pickle payload ran"


@pytest.mark.parametrize("suffix", [".pt", ".pkl", ".pth", ".bin", ""])
@pytest.mark.parametrize("case", ["pickle-protocol-2", "pickle-protocol-4", "pickle-protocol-5",
                                  "torch-save-zip"])
def test_pickles_under_any_name_are_refused(case, suffix, base, tmp_path):
    path = build(case, tmp_path, base, filename=f"model{suffix}")
    with pytest.raises(SpikevizError, match="pickle|zip"):
        load_model(path)
    assert not (tmp_path / MARKER).exists()


def test_special_files_are_refused(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    for name in ("dir.safetensors", "zero.safetensors", "missing.safetensors"):
        with pytest.raises(SpikevizError, match="no such checkpoint"):
            load_model(tmp_path / name)


@pytest.mark.parametrize("case", CASES)
def test_generate_refuses(case, base, tmp_path, capsys):
    path = build(case, tmp_path, base)
    out = tmp_path / "gen.csv"
    refused_one_line(capsys, ["generate", "--checkpoint", str(path), "--session", VITRO,
                              "--seconds", "1", "--out", str(out)], path.name)
    assert not out.exists() and not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", CASES)
def test_evaluate_refuses(case, base, tmp_path, capsys):
    path = build(case, tmp_path, base)
    refused_one_line(capsys, ["evaluate", "--checkpoint", str(path), "--session", VITRO,
                              "--seconds", "1"], path.name)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", CASES)
def test_table_refuses(case, base, tmp_path, capsys):
    path = build(case, tmp_path, base)
    refused_one_line(capsys, ["table", "--checkpoint", str(path), "--seconds", "1", "--quiet"],
                     path.name)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", CASES)
def test_train_resume_never_opens_a_hostile_checkpoint(case, base, tmp_path, capsys):
    path = build(case, tmp_path, base)
    # --resume reads only the training state (here a checkpoint, not a state: refused); the hostile
    # checkpoint beside it is never opened, never unpickled and left as it was.
    state = good_checkpoint(state_path(path))
    before = path.read_bytes() if path.is_file() else None
    refused_one_line(capsys, ["train", "--session", VITRO, "--loss", "focal", "--seconds", "5",
                              "--epochs", "2", "--out", str(path), "--resume", "--quiet"],
                     state.name)
    assert not (tmp_path / MARKER).exists()
    assert (path.read_bytes() if path.is_file() else None) == before


@pytest.mark.parametrize("case", STRUCTURAL)
def test_train_resume_refuses_a_hostile_state_file(case, base, tmp_path, capsys):
    out = good_checkpoint(tmp_path / "model.safetensors")
    state = build(case, tmp_path, base, filename=state_path(out).name)
    with pytest.raises(SpikevizError):
        read_header(state)
    refused_one_line(capsys, ["train", "--session", VITRO, "--loss", "focal", "--seconds", "5",
                              "--epochs", "2", "--out", str(out), "--resume", "--quiet"],
                     state.name)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", ["pickle-protocol-4", "torch-save-zip", "truncated-data",
                                  "n-units-lies-in-config", "huge-config"])
def test_dashboard_shows_the_refusal_and_stays_usable(case, base, tmp_path, monkeypatch):
    from spikeviz.dashboard.state import BASELINE_ONLY, DashboardState

    monkeypatch.setenv("SPIKEVIZ_ROOTS", str(tmp_path))
    path = build(case, tmp_path, base)
    state = DashboardState(threaded=False, session=VITRO, checkpoint=BASELINE_ONLY,
                           window=(0.0, 10.0))
    assert state.error == "" and state.evaluation is not None
    state.checkpoint_path = str(path)
    state.param.trigger("open_checkpoint")
    assert state.error.startswith(f"{path.name}: ") and "Traceback" not in state.error
    assert not state.busy and not (tmp_path / MARKER).exists()
    state.checkpoint = BASELINE_ONLY   # the session goes on
    assert state.error == "" and state.evaluation.generator.name == "glm-coupled"
    state.threshold = state.evaluation.thresholds["density"] * 2
    assert state.frame.threshold == pytest.approx(state.threshold, rel=1e-2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real checkpoint and training state from one short epoch."""
    out = tmp_path_factory.mktemp("trained") / "model.safetensors"
    assert main(["train", "--session", VITRO, "--loss", "focal", "--seconds", "5", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("lie", ["other-config", "huge-config", "n-units-lies-in-config",
                                 "no-config", "config-not-a-dict"])
def test_train_resume_refuses_a_state_that_lies(lie, trained, tmp_path, capsys):
    """A real training state whose config lies is refused before training builds (and
    allocates) a model from it; the checkpoint is left as it was."""
    tensors, meta = read_tensors(state_path(trained))
    config = dict(meta["config"])
    if lie == "other-config":
        config["d_model"] = config["d_model"] * 2
    elif lie == "huge-config":
        config["d_model"] = 10**7
    elif lie == "n-units-lies-in-config":
        config["n_units"] = 1000
    meta["config"] = {"no-config": None, "config-not-a-dict": "fast"}.get(lie, config)
    out = tmp_path / "model.safetensors"
    out.write_bytes(trained.read_bytes())
    write_tensors(state_path(out), tensors, meta)
    line = refused_one_line(capsys, ["train", "--session", VITRO, "--loss", "focal", "--seconds",
                                     "5", "--epochs", "2", "--out", str(out), "--resume",
                                     "--quiet"], state_path(out).name)
    assert "config" in line
    assert out.read_bytes() == trained.read_bytes()
