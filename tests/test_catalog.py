"""Names and paths resolve to recordings and checkpoints from any working directory."""
import pytest

from spikeviz.data.catalog import data_dir, find_session, open_recording, resolve_checkpoint, session
from spikeviz.cli import main
from spikeviz.errors import SpikevizError

VIVO = "invivo_NYU-40_2021-04-14_001"
CKPT = "invitro_210511001_bh-focal.safetensors"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_bundled_name_opens_from_anywhere(elsewhere):
    rec = open_recording(VIVO)
    assert rec.n_units == 128 and rec.source["tick_ms"] == session(VIVO).tick_ms
    assert find_session(VIVO).domain == "in vivo"


def test_a_bundled_file_by_absolute_path_gets_its_catalogued_tick(elsewhere):
    rec = open_recording(session(VIVO).path)
    assert rec.source["tick_ms"] == session(VIVO).tick_ms
    assert find_session(session(VIVO).path).name == VIVO


def test_a_missing_path_to_a_bundled_file_suggests_the_session(elsewhere, capsys):
    with pytest.raises(SpikevizError, match=f"use --session {VIVO}"):
        open_recording(f"data/{session(VIVO).file}")
    assert main(["inspect", f"data/{session(VIVO).file}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spikeviz: error: data/{session(VIVO).file}: ") and str(elsewhere) in err


def test_an_unknown_name_says_both_what_was_looked_for(elsewhere):
    with pytest.raises(SpikevizError, match="no such file or folder.*bundled sessions are"):
        open_recording("no_such_thing")
    with pytest.raises(SpikevizError, match="no such file or folder"):
        open_recording("lab/rec.nwb")
    # An absolute path: where it was looked for, and whether that folder exists.
    with pytest.raises(SpikevizError, match=r"rec.nwb: no such file or folder in /no_lab \(that folder"):
        open_recording("/no_lab/rec.nwb")
    with pytest.raises(SpikevizError, match=f"rec.nwb: no such file or folder in {elsewhere}$"):
        open_recording(elsewhere / "rec.nwb")


def test_an_existing_local_file_wins_over_the_catalog(elsewhere):
    copy = elsewhere / VIVO
    copy.write_bytes(session(VIVO).path.read_bytes())
    assert open_recording(copy, tick_ms=0.05).source["tick_ms"] == 0.05
    assert find_session(copy) is None


def test_checkpoints_resolve_from_anywhere(elsewhere):
    shipped = resolve_checkpoint(f"models/{CKPT}")
    assert shipped.is_file() and shipped.name == CKPT
    assert resolve_checkpoint(CKPT.removesuffix(".safetensors")) == shipped
    with pytest.raises(SpikevizError, match="no such checkpoint.*no shipped one"):
        resolve_checkpoint("elsewhere/nope.safetensors")
    assert data_dir().is_absolute()
