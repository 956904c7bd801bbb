"""One pipeline: the trains the page offers for download are the trains `spikeviz generate` writes."""
from __future__ import annotations

import numpy as np
import pytest

from spikeviz.cli import main
from spikeviz.dashboard.sources import checkpoint_choices
from spikeviz.dashboard.state import FITTED_STATES, DashboardState
from spikeviz.dashboard.cache import LRUCache
from spikeviz.dashboard.trains import as_file, generated_recording
from spikeviz.data.catalog import load_session
from spikeviz.data.io import load_recording
from spikeviz.evaluation.pipeline import generate_window
from spikeviz.models.checkpoint import load_model
from spikeviz.data.catalog import resolve_checkpoint

VITRO = "invitro_210511001_bh"
# The page's states share one cache, as a server's sessions do: a test that changes only the draw
# reads the window's evaluation back (the command line computes its own every time).
PAGES = LRUCache(max_items=64)
pytestmark = pytest.mark.skipif(not checkpoint_choices(), reason="no shipped checkpoints")


def _trains(path) -> dict[str, np.ndarray]:
    rec = load_recording(path)
    return {str(u): np.asarray(t) for u, t in zip(rec.unit_ids, rec.spike_times)}


@pytest.mark.parametrize("generator, mode, draw, joint", [
    ("generalist-focal", "teacher", "bernoulli", True),
    ("generalist-focal", "teacher", "bernoulli", False),
    ("generalist-focal", "teacher", "unit-density", True),
    ("generalist-focal", "free", "bernoulli", True), ("generalist-focal", "free", "bernoulli", False),
    (FITTED_STATES, "teacher", "bernoulli", True),
    (FITTED_STATES, "free", "bernoulli", True)])
def test_page_download_equals_cli_generate_spike_for_spike(tmp_path, capsys, generator, mode, draw,
                                                           joint):
    state = DashboardState(threaded=False, window_length=10, cache=PAGES, session=VITRO,
                           checkpoint=generator, mode=mode, seed=3, draw=draw, joint=joint)
    assert state.error == "", state.error
    page = generated_recording(state.frame, state.recording, state.threshold_rule, state.seed,
                               state.draw_level)
    (tmp_path / "page.npz").write_bytes(as_file(page, "page.npz"))
    a, b = state.window
    made_by = ["--model", "states"] if generator == FITTED_STATES else ["--checkpoint", generator]
    args = ["generate", *made_by, "--session", VITRO, "--mode", mode, "--start", repr(a),
            "--seconds", repr(b - a), "--seed", "3", "--out", str(tmp_path / "cli.npz")]
    if draw != "bernoulli":
        args += ["--draw", draw, "--threshold", repr(state.draw_level)]
    if not joint:
        args += ["--independent-draws"]
    assert main(args) == 0
    made = page.source["generated_by"]
    assert made["start_s"] == pytest.approx(a) and page.duration_s == pytest.approx(b - a)
    assert made == load_recording(tmp_path / "cli.npz").source["generated_by"]
    # Bernoulli draws from a checkpoint take a bin's units jointly, teacher-forced and free.
    assert (made["joint_draws"] is not None) == (generator != FITTED_STATES and draw == "bernoulli"
                                                  and joint)
    cli, web = _trains(tmp_path / "cli.npz"), _trains(tmp_path / "page.npz")
    assert list(cli) == list(web) and len(cli) == 128
    assert sum(map(len, web.values())) > 100
    for unit in cli:
        np.testing.assert_array_equal(cli[unit], web[unit], err_msg=f"unit {unit}")
    if generator == FITTED_STATES:   # it draws its own trains: the checkbox changes nothing
        evaluation = state.evaluation
        state.joint = False
        assert state.evaluation is evaluation


def test_generated_window_starts_at_its_first_bin_and_names_its_units():
    model = load_model(resolve_checkpoint("generalist-focal"))
    rec = load_session(VITRO)
    out = generate_window(model, rec, (310.0, 312.0), seed=1, n_units=20)
    st = out.setup.model_stretch
    assert st.start_s == pytest.approx(310.0) and len(out.bins) == 2000
    assert out.recording.duration_s == pytest.approx(2.0)
    assert list(out.recording.unit_ids) == list(st.unit_ids) and len(st.unit_ids) == 20
    assert out.recording.source["generated_by"]["start_s"] == pytest.approx(310.0)


def test_page_csv_download_carries_the_cli_provenance(tmp_path):
    """The page's CSV download (zipped with its sidecar) and `spikeviz generate --out x.csv` carry
    the same provenance and trains: both from pipeline.provenance."""
    import io
    import json
    import zipfile

    state = DashboardState(threaded=False, window_length=10, cache=PAGES, session=VITRO,
                           checkpoint="generalist-focal", seed=3)
    assert state.error == "", state.error
    page = generated_recording(state.frame, state.recording, state.threshold_rule, state.seed,
                               state.draw_level)
    with zipfile.ZipFile(io.BytesIO(as_file(page, "x.csv"))) as archive:
        archive.extractall(tmp_path / "page")
    a, b = state.window
    assert main(["generate", "--checkpoint", "generalist-focal", "--session", VITRO, "--start", repr(a),
                 "--seconds", repr(b - a), "--seed", "3", "--out", str(tmp_path / "x.csv")]) == 0
    sidecar = lambda folder: json.loads((folder / "x.csv.json").read_text())
    assert sidecar(tmp_path / "page") == sidecar(tmp_path)
    assert (tmp_path / "page" / "x.csv").read_bytes() == (tmp_path / "x.csv").read_bytes()
    assert load_recording(tmp_path / "page" / "x.csv").source["generated_by"] == page.source["generated_by"]
