"""Every output format reads back equal: the same units in order (silent ones included), the same
spike times, the same duration and the `generated_by` provenance."""
import json

import numpy as np
import pandas as pd
import pytest

import spikeviz
from spikeviz import load_recording
from spikeviz.data.catalog import load_session
from spikeviz.cli import main
from spikeviz.evaluation.pipeline import start_of_test_split
from spikeviz.data.io import OUTPUT_SUFFIXES, write_recording
from spikeviz.errors import DataWarning
from spikeviz.data.io.table import sidecar_path
from spikeviz.data.recording import Recording

VITRO = "invitro_210511001_bh"
SHIPPED = "models/invitro_210511001_bh-focal.safetensors"


def needs(suffix):
    if suffix == ".si":
        pytest.importorskip("spikeinterface")


@pytest.fixture(scope="module")
def awkward():
    """Real trains with silent units first, in the middle and last, named ids out of sorted order,
    a duration past the last spike, and provenance."""
    real = load_session(VITRO).slice(0.0, 3.0)
    trains = list(real.spike_times[:6])
    trains[0] = trains[3] = trains[5] = np.empty(0)
    ids = np.array(["u9", "u10", "a2", "z", "b", "c"])
    made = {"checkpoint": "x.safetensors", "mode": "free", "threshold": None, "seed": 3,
            "bin_ms": 1.0, "start_s": 200.0}
    return Recording("awkward", ids, tuple(trains), 3.5, {"format": "generated",
                                                         "generated_by": made})


def assert_equal(a: Recording, b: Recording, atol: float) -> None:
    assert [str(u) for u in b.unit_ids] == [str(u) for u in a.unit_ids]
    for ta, tb in zip(a.spike_times, b.spike_times):
        assert ta.shape == tb.shape
        np.testing.assert_allclose(tb, ta, rtol=0, atol=atol)
    assert b.duration_s == pytest.approx(a.duration_s, abs=1e-9)
    assert b.source.get("generated_by") == a.source.get("generated_by")


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
def test_written_recording_reads_back_equal(awkward, suffix, tmp_path):
    needs(suffix)
    path = tmp_path / f"out{suffix}"
    write_recording(awkward, path)
    # .si stores samples at 1 / bin_ms (1 kHz here): times come back on that grid.
    assert_equal(awkward, load_recording(path), atol=5e-4 if suffix == ".si" else 1e-9)


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
def test_generate_output_reads_back_with_inspect(suffix, tmp_path, capsys):
    needs(suffix)
    out = tmp_path / f"gen{suffix}"
    assert main(["generate", "--checkpoint", SHIPPED, "--session", VITRO, "--seconds", "1",
                 "--threshold", "0.5", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["units"], s["duration_s"]) == (128, 1.0)
    back = load_recording(out)
    made = back.source["generated_by"]
    # --start defaults to the start of the test split
    assert made["threshold"] == 0.5
    assert made["start_s"] == start_of_test_split(load_session(VITRO), 1.0) > 0


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_text_tables_read_with_plain_pandas_and_a_stray_sidecar_is_not_believed(
        awkward, tmp_path, suffix, sep):
    # The CSV began with a `# spikeviz: {...}` line that pandas.read_csv took for a header.
    path = tmp_path / f"out{suffix}"
    write_recording(awkward, path)
    frame = pd.read_csv(path, sep=sep)
    assert list(frame.columns) == ["unit", "time_s"] and len(frame) == awkward.n_spikes
    assert json.loads(sidecar_path(path).read_text())["generated_by"] == \
        awkward.source["generated_by"]
    other = tmp_path / f"other{suffix}"
    write_recording(awkward.slice(0.0, 1.0), other)
    sidecar_path(other).replace(sidecar_path(path))   # another table's sidecar beside this one
    with pytest.warns(DataWarning, match=f"does not describe this out{suffix}"):
        back = load_recording(path)
    assert "generated_by" not in back.source and back.n_spikes == awkward.n_spikes


def test_generated_nwb_says_how_it_was_made_in_nwb_fields(tmp_path, capsys):
    # It was written with no Subject, no resolution and a session start of 1970-01-01.
    import pynwb

    out = tmp_path / "gen.nwb"
    assert main(["generate", "--checkpoint", SHIPPED, "--session", VITRO, "--seconds", "1",
                 "--subject-id", "slice-7", "--session-start", "2021-05-11T10:00:00+09:00",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "species, sex, age: written as unknown; set with --species, --sex, --age" in err
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert f.session_start_time.isoformat() == "2021-05-11T10:00:00+09:00"
        assert (f.subject.subject_id, f.subject.sex) == ("slice-7", "U")
        assert f.units.resolution == 0.001   # the model's bin
        assert "free-running" not in f.units.description and "teacher-forced" in f.units.description
        assert f.data_collection == f.units.description
        assert [list(x) for x in f.was_generated_by] == [["spikeviz", spikeviz.__version__]]
    assert load_recording(out).source["generated_by"]["checkpoint"].endswith(SHIPPED)


@pytest.mark.parametrize("option, value", [("--age", "90 days"), ("--species", "mouse"),
                                           ("--session-start", "yesterday")])
def test_nwb_metadata_options_refuse_forms_nwb_inspector_rejects(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["generate", "--checkpoint", SHIPPED, "--session", VITRO, option, value,
              "--out", str(tmp_path / "gen.nwb")])
    assert stop.value.code == 2 and repr(value) in capsys.readouterr().err
