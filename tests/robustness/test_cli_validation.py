"""Every command that reads data refuses malformed files cleanly, and every command refuses
nonsensical options: exit status 2, one line `spikeviz: error: [<file>: ]<problem>`, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikeviz.cli import main

from .corpus import MARKER, build, cases
from .hostile import good_checkpoint

CASES = cases()
VITRO = "invitro_210511001_bh"
SHIPPED = "models/invitro_210511001_bh-focal.safetensors"
# One or more per format, pickles and missing options included (inspect runs the whole corpus in
# test_malformed_inputs.py).
SUBSET = ["asdf/garbage", "asdf/truncated", "asdf/no-tick", "asdf/nan-times", "phy/object-array-pickle",
          "phy/no-params-no-rate", "phy/truncated-npy", "nwb/garbage", "nwb/no-units",
          "maxwell/missing-fields", "maxwell/truncated", "table/npz-object-pickle",
          "table/text-time", "table/pickle-renamed", "table/unknown-extension"]


def data_args(path, opts) -> list[str]:
    argv = ["--data", str(path)]
    if "tick_ms" in opts:
        argv += ["--tick-ms", str(opts["tick_ms"])]
    if "sample_rate" in opts:
        argv += ["--sample-rate", str(opts["sample_rate"])]
    return argv


def one_line(capsys, argv, name: str | None = None) -> str:
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    # One error line; notes of what the command would have changed may come before it.
    err = [line for line in captured.err.strip().splitlines() if not line.startswith("spikeviz: note:")]
    prefix = "spikeviz: error: " + (f"{name}: " if name else "")
    assert len(err) == 1 and err[0].startswith(prefix), err
    assert "Traceback" not in captured.err
    return err[0]


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory):
    """A valid fast-preset checkpoint for 200 units: more than any bundled session has."""
    return good_checkpoint(tmp_path_factory.mktemp("wide") / "wide.safetensors", n_units=200)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real 1-epoch checkpoint on the first 5 s of a session (and its resume state)."""
    out = tmp_path_factory.mktemp("trained") / "small.safetensors"
    assert main(["train", "--session", VITRO, "--loss", "focal", "--seconds", "5", "--epochs", "1",
                 "--threads", "1", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("command", ["train", "generate", "evaluate"])
@pytest.mark.parametrize("case", SUBSET)
def test_data_commands_refuse_malformed_files(command, case, tmp_path, capsys):
    path = build(CASES[case], tmp_path)
    opts = CASES[case][4]
    argv = {"train": ["train", "--loss", "focal", "--epochs", "1", "--out",
                      str(tmp_path / "m.safetensors"), "--quiet"],
            "generate": ["generate", "--checkpoint", SHIPPED, "--seconds", "1", "--out",
                         str(tmp_path / "g.csv")],
            "evaluate": ["evaluate", "--checkpoint", SHIPPED, "--seconds", "1"]}[command]
    one_line(capsys, argv + data_args(path, opts), path.name)
    assert not (tmp_path / MARKER).exists(), "a pickle payload ran"
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "g.csv").exists()


def run_grid_on(case, tmp_path):
    path = build(CASES[case], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "spikeviz", "grid", "--sessions", str(path),
                           "--losses", "focal", "--epochs", "1", "--workers", "1",
                           "--out", str(tmp_path / "grid")],
                          capture_output=True, text=True, timeout=300)
    assert not (tmp_path / MARKER).exists()
    return path, proc


@pytest.mark.parametrize("case", ["asdf/garbage", "table/pickle-renamed"])
def test_grid_refuses_malformed_files(case, tmp_path):
    path, proc = run_grid_on(case, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"spikeviz: error: {path.name}: ")


def test_grid_refusal_is_one_line(tmp_path):
    path, proc = run_grid_on("asdf/garbage", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


T = ["train", "--session", VITRO, "--loss", "focal", "--quiet"]
G = ["generate", "--checkpoint", SHIPPED, "--session", VITRO]
E = ["evaluate", "--checkpoint", SHIPPED, "--session", VITRO]


@pytest.mark.parametrize("argv, problem", [
    (T + ["--epochs", "0"], "--epochs must be at least 1"),
    (T + ["--epochs", "-3"], "--epochs must be at least 1"),
    (T + ["--units", "0"], "--units must be at least 1"),
    (T + ["--patience", "0"], "--patience must be at least 1"),
    (T + ["--batch-size", "0"], "--batch-size must be at least 1"),
    (T + ["--threads", "0"], "--threads must be at least 1"),
    (T + ["--seconds", "-1"], "--seconds must be a positive number"),
    (T + ["--seconds", "0"], "--seconds must be a positive number"),
    (T + ["--seconds", "nan"], "--seconds must be a positive number"),
    (T + ["--bin-ms", "0"], "--bin-ms must be a positive number"),
    (T + ["--bin-ms", "-1"], "--bin-ms must be a positive number"),
    (T + ["--bin-ms", "inf"], "--bin-ms must be a positive number"),
    (T + ["--lr", "-1"], "--lr must be a positive number"),
    (T + ["--lr", "0"], "--lr must be a positive number"),
    (G + ["--seconds", "-1"], "--seconds must be positive"),
    (G + ["--seconds", "0"], "--seconds must be positive"),
    (G + ["--seconds", "inf"], "--seconds must be positive"),
    (G + ["--start", "-5"], "--start not negative"),
    (G + ["--threshold", "2"], "--threshold must be a probability"),
    (G + ["--threshold", "-0.1"], "--threshold must be a probability"),
    (G + ["--threshold", "nan"], "--threshold must be a probability"),
    (G + ["--seed", "-1"], "--seed must not be negative"),
    (G + ["--start", "100000"], "is not inside the recording"),
    (E + ["--seconds", "-1"], "--seconds must be positive"),
    (E + ["--units", "0"], "--units must be at least 1"),
    (E + ["--threshold", "2"], "threshold 2.0 is not in [0, 1]"),
    (E + ["--threshold", "nan"], "is not in [0, 1]"),
    (E + ["--unit-order", "bogus"], "unknown unit order"),
    (["table", "--seconds", "0"], "--seconds must be positive"),
    (["table", "--seconds", "-1"], "--seconds must be positive"),
    (["grid", "--workers", "0", "--out", "unused"], "--workers must be at least 1"),
    (["grid", "--epochs", "0", "--out", "unused"], "epochs must be at least 1"),
    (["grid", "--seconds", "-1", "--out", "unused"], "seconds must be positive"),
    (["inspect", "data/invitro_210511001_bh.asdf.mat", "--tick-ms", "0"], "tick_ms must be positive"),
    (["inspect", "data/invitro_210511001_bh.asdf.mat", "--tick-ms", "-1"], "tick_ms must be positive"),
    (["inspect", "--session", "no_such_session"], "unknown session"),
    (["inspect"], "no data"),
])
def test_bad_options_are_one_line(argv, problem, tmp_path, capsys):
    if argv[0] in ("train", "generate"):
        argv = argv + ["--out", str(tmp_path / ("m.safetensors" if argv[0] == "train" else "g.csv"))]
    line = one_line(capsys, argv)
    assert problem in line, line
    assert not list(tmp_path.iterdir()), "nothing may be written"


def test_missing_tick_is_named(tmp_path, capsys):
    path = build(CASES["asdf/no-tick"], tmp_path)
    line = one_line(capsys, ["inspect", str(path)], path.name)
    assert "tick" in line


def test_checkpoint_for_more_units_than_the_data_has(wide_checkpoint, tmp_path, capsys):
    one_line(capsys, ["generate", "--checkpoint", str(wide_checkpoint), "--session", VITRO,
                      "--seconds", "1", "--out", str(tmp_path / "g.csv")])
    assert not (tmp_path / "g.csv").exists()
    line = one_line(capsys, ["evaluate", "--checkpoint", str(wide_checkpoint), "--session", VITRO,
                             "--seconds", "1"])
    assert "200" in line and "128" in line


def test_resume_with_another_bin_size_or_units_is_refused(trained, capsys):
    before = trained.read_bytes()
    for extra in (["--bin-ms", "2"], ["--units", "64"], ["--seconds", "6"]):
        line = one_line(capsys, ["train", "--session", VITRO, "--loss", "focal", "--seconds", "5",
                                 "--epochs", "2", "--out", str(trained), "--resume", "--quiet",
                                 *extra])
        assert "cannot resume with other settings" in line, line
    assert trained.read_bytes() == before


def test_resume_with_fewer_epochs_than_done_says_so(tmp_path, capsys):
    """--epochs is the total: a resume asking fewer than were done trains nothing, and says so
    (it printed the done epochs as if it had trained them)."""
    out = tmp_path / "two.safetensors"
    argv = ["train", "--session", VITRO, "--loss", "focal", "--seconds", "5", "--threads", "1",
            "--quiet", "--out", str(out)]
    assert main(argv + ["--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(argv + ["--epochs", "1", "--resume"]) == 0
    out_text, err = capsys.readouterr()
    assert "had trained 2 epochs already, more than --epochs 1" in err and "2 epochs" in out_text


def test_resume_without_a_checkpoint(tmp_path, capsys):
    line = one_line(capsys, T + ["--out", str(tmp_path / "none.safetensors"), "--resume"],
                    "none.safetensors")
    assert "nothing to resume" in line


def test_outputs_are_not_replaced_without_force(trained, tmp_path, capsys):
    before = trained.read_bytes()
    line = one_line(capsys, T + ["--seconds", "5", "--epochs", "1", "--out", str(trained)],
                    trained.name)
    assert "--force" in line and trained.read_bytes() == before
    out = tmp_path / "gen.csv"
    out.write_text("precious")
    line = one_line(capsys, ["generate", "--checkpoint", str(trained), "--session", VITRO,
                             "--seconds", "1", "--out", str(out)], out.name)
    assert "--force" in line and out.read_text() == "precious"
    assert main(["generate", "--checkpoint", str(trained), "--session", VITRO, "--seconds", "1",
                 "--out", str(out), "--force"]) == 0
    assert out.read_text().splitlines()[0] == "unit,time_s" and not [p for p in tmp_path.iterdir()
                                                         if ".tmp" in p.name]


def test_force_never_replaces_the_commands_own_input(trained, tmp_path, capsys):
    """--force replaces an earlier output, never the recording or checkpoint the command reads."""
    data = tmp_path / "mine.csv"
    assert main(["generate", "--checkpoint", str(trained), "--session", VITRO, "--seconds", "1",
                 "--out", str(data)]) == 0
    before, model = data.read_bytes(), trained.read_bytes()
    line = one_line(capsys, ["generate", "--checkpoint", str(trained), "--data", str(data),
                             "--seconds", "1", "--out", str(data), "--force"], data.name)
    assert "input" in line and data.read_bytes() == before
    line = one_line(capsys, ["train", "--init", str(trained), "--session", VITRO, "--seconds", "5",
                             "--epochs", "1", "--out", str(trained), "--force"], trained.name)
    assert "input" in line and trained.read_bytes() == model


def test_table_out_is_not_replaced_without_force(tmp_path):
    (tmp_path / "empty_models").mkdir()
    out = tmp_path / "tables"
    out.mkdir()
    (out / "table.md").write_text("precious")
    # No checkpoints: a check of --out made before any work answers first.
    proc = subprocess.run([sys.executable, "-m", "spikeviz", "table", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPIKEVIZ_MODELS": str(tmp_path / "empty_models")})
    assert proc.returncode == 2 and "exists already" in proc.stderr, proc.stderr
    assert (out / "table.md").read_text() == "precious"


def test_debug_shows_the_traceback_for_an_option_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikeviz", "--debug", "generate", "--checkpoint",
                           SHIPPED, "--session", VITRO, "--threshold", "2", "--out",
                           str(tmp_path / "g.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize("command", ["train", "generate"])
def test_unwritable_output_folder_is_one_line(command, capsys):
    out = "/proc/spikeviz_nope/out" + (".safetensors" if command == "train" else ".csv")
    argv = (T + ["--seconds", "5", "--epochs", "1"] if command == "train"
            else G + ["--seconds", "1"]) + ["--out", out]
    line = one_line(capsys, argv, Path(out).name)
    assert "folder" in line


def test_evaluate_infinite_seconds_is_one_line(capsys):
    one_line(capsys, E + ["--seconds", "inf"])
