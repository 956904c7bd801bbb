"""A lab's recording of any unit count goes through every command: inspect, evaluate the
generalist, fine-tune it (`train --init`, run from another folder), evaluate again and generate.

Real spikes only: 20 units of the rat CA1 table, the 105-unit Aplysia Jun0414Bda01, and 300 units
put side by side from two Aplysia preparations; 40 s of each, 1 epoch."""
import json
from pathlib import Path

import numpy as np
import pytest

from spikeviz.models.checkpoint import load_model
from spikeviz.cli import main
from spikeviz.data.io import load_recording, write_recording
from spikeviz.data.recording import from_unit_times

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"  # ../shared
SECONDS = 40.0
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared real-data corpus is absent")


def _side_by_side(*names: str, n_units: int):
    """The first `n_units` units of the named tables, ids prefixed by their table."""
    units, times = [], []
    for name in names:
        rec = load_recording(CORPUS / f"{name}.csv").slice(0.0, SECONDS)
        for uid, t in zip(rec.unit_ids, rec.spike_times):
            units.append(np.full(t.size, f"{name[-10:]}-{uid}"))
            times.append(t)
    rec = from_unit_times("side_by_side", np.concatenate(units), np.concatenate(times), SECONDS,
                          {"format": "table"})
    return rec.select_units(list(rec.unit_ids[:n_units]))


def _recording(n_units: int):
    if n_units == 20:
        rec = load_recording(CORPUS / "rat_ca1_lineartrack.csv").slice(0.0, SECONDS)
        return rec.select_units(list(rec.unit_ids[np.argsort(-rec.spike_counts)][:20]))
    if n_units == 105:
        return load_recording(CORPUS / "aplysia_Jun0414Bda01.csv").slice(0.0, SECONDS)
    return _side_by_side("aplysia_Jun0514da01", "aplysia_Jun0914da01", n_units=n_units)


def _run(capsys, *argv: str) -> tuple[str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


@pytest.mark.parametrize("n_units", [20, 105, 300])
def test_every_command_takes_any_unit_count(n_units, tmp_path, monkeypatch, capsys):
    rec = _recording(n_units)
    assert rec.n_units == n_units
    data = tmp_path / "lab" / f"rec{n_units}.npz"
    data.parent.mkdir()
    write_recording(rec, data)
    monkeypatch.chdir(data.parent)   # a lab's own folder: shipped checkpoints by their models/ path
    scored = min(n_units, 128)
    # Units left out are said in one line naming the option (issue: 128 of 295 said in passing).
    left_out = f"the 128 most active of the {n_units} units of rec{n_units} (--units N"
    evaluate = ("evaluate", "--data", data.name, "--baselines", "rate", "--json")

    out, _ = _run(capsys, "inspect", data.name, "--json")
    assert json.loads(out)["units"] == n_units
    # More units asked than there are: all of them, and a note says so.
    more = ("--units", "200") if n_units < 128 else ()
    out, err = _run(capsys, *evaluate, "--seconds", "3", *more, "--checkpoint",
                    "models/generalist-focal.safetensors")
    assert json.loads(out)["n_units"] == scored
    assert (f"note: scored {left_out}" in err) == (n_units > 128)
    assert (f"note: scored all {n_units} units of rec{n_units}, fewer than --units 200" in err) == bool(more)
    _, err = _run(capsys, "train", "--init", "models/generalist-focal.safetensors", "--data",
                  data.name, "--epochs", "1", "--threads", "1", "--quiet", "--out", "tuned.safetensors")
    assert "loss focal" in err and "preset generalist" in err
    assert f"note: training on {left_out}" in err if n_units > 128 else \
        f"note: training on all {n_units} units" in err
    tuned = load_model("tuned.safetensors")
    assert len(tuned.meta["unit_ids"]) == scored and tuned.meta["loss"] == "focal"
    out, err = _run(capsys, *evaluate, "--checkpoint", "tuned.safetensors")   # --seconds 200
    r = json.loads(out)
    assert r["n_units"] == scored and r["same_recording"]
    assert "note: scored 10 s, not --seconds 200: all of the test split after a 30-s warm-up" in err
    _, err = _run(capsys, "generate", "--checkpoint", "tuned.safetensors", "--data", data.name,
                  "--seconds", "1", *more, "--out", "gen.npz")
    assert (f"note: generated all {n_units} units of rec{n_units}, fewer than --units 200" in err) == bool(more)
    assert load_recording("gen.npz").n_units == scored   # its own units, as evaluate scores them


def test_init_keeps_its_preset_and_training_from_scratch_needs_a_loss(tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    data = str(CORPUS / "aplysia_Jun0414Bda01.csv")
    assert main(["train", "--init", "generalist-focal", "--preset", "fast", "--data", data,
                 "--out", out]) == 2
    assert "this is a generalist checkpoint" in capsys.readouterr().err
    assert main(["train", "--data", data, "--out", out]) == 2
    assert "give --loss" in capsys.readouterr().err


@pytest.mark.parametrize("n_units", [20, 105, 300])
def test_the_page_evaluates_and_downloads_any_unit_count(n_units, tmp_path, monkeypatch):
    """The same recordings typed into the page: evaluated with the shipped generalist, and the
    generated trains it offers for download read back with the units the page scored."""
    from spikeviz.dashboard.cache import LRUCache
    from spikeviz.dashboard.state import OPEN_FILE, DashboardState
    from spikeviz.dashboard.trains import as_file, generated_recording

    data = tmp_path / f"rec{n_units}.npz"
    write_recording(_recording(n_units), data)
    monkeypatch.chdir(tmp_path)   # a typed path must lie under the working directory
    # Opened as the page opens a typed path (the bundled session first would only add its own
    # evaluation: switching is tests/test_dashboard_state.py's).
    state = DashboardState(threaded=False, window_length=10, cache=LRUCache(),
                           checkpoint="generalist-focal", session=OPEN_FILE, path=str(data))
    assert state.error == "", state.error
    assert state.recording.n_units == n_units and state.frame is not None
    scored = min(n_units, 128)
    assert state.evaluation.stretch.X.shape[1] == scored
    (tmp_path / "gen.npz").write_bytes(as_file(generated_recording(
        state.frame, state.recording, state.threshold_rule, state.seed), "gen.npz"))
    back = load_recording(tmp_path / "gen.npz")
    assert back.n_units == scored and back.source["generated_by"]["units"] == scored
    assert set(map(str, back.unit_ids)) <= set(map(str, state.recording.unit_ids))
