"""The server: bound to 127.0.0.1 by `make serve`; paths typed into the page open only under the
configured roots ($SPIKEVIZ_ROOTS, else data/ and the working directory)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from spikeviz import SpikevizError
from spikeviz.dashboard.sources import allowed_roots, checked_path, checkpoint_roots, open_test_recording

ROOT = Path(__file__).resolve().parents[2]
VITRO_FILE = ROOT / "data" / "invitro_210511001_bh.asdf.mat"


def test_make_serve_binds_loopback_by_default():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", text, re.M)
    serve = re.search(r"^serve:.*\n\t(.*)$", text, re.M).group(1)
    assert "--address $(HOST)" in serve and "--allow-websocket-origin=$(HOST):$(PORT)" in serve


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """root/ (allowed) holding a file and symlinks in and out; outside/ (not allowed) beside it."""
    root, outside, home = tmp_path / "root", tmp_path / "outside", tmp_path / "home"
    for d in (root / "sub", outside, home):
        d.mkdir(parents=True)
    (root / "sub" / "in.csv").write_text("unit,time_s\n1,0.5\n1,1.0\n")
    (root / "long.csv").write_text("unit,time_s\n" + "".join(f"{u},{t / 10}\n" for t in range(1200)
                                                            for u in (1, 2) if (t + u) % 3 == 0))
    (outside / "secret.csv").write_text("unit,time_s\n1,0.5\n")
    (home / "h.csv").write_text("unit,time_s\n1,0.5\n")
    (root / "link_out.csv").symlink_to(outside / "secret.csv")
    (root / "dir_out").symlink_to(outside)
    (root / "link_in.csv").symlink_to(root / "sub" / "in.csv")
    monkeypatch.setenv("SPIKEVIZ_ROOTS", str(root))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(root)
    return root, outside


@pytest.mark.parametrize("typed", [
    "../outside/secret.csv", "sub/../../outside/secret.csv", "{outside}/secret.csv",
    "{root}/../outside/secret.csv", "link_out.csv", "dir_out/secret.csv", "~/h.csv", "~",
    "/etc/passwd", "/", "//etc//passwd", "/proc/self/environ", "sub/in.csv\0../../outside/secret.csv",
    "\0", "x" * 5000, "~nosuchuser_spikeviz/x",
])
def test_traversal_is_refused(tree, typed):
    root, outside = tree
    typed = typed.replace("{root}", str(root)).replace("{outside}", str(outside))
    with pytest.raises(SpikevizError) as info:
        checked_path(typed)
    msg = str(info.value)
    assert "only files under" in msg or "not a valid path" in msg or "no such" in msg, msg
    with pytest.raises(SpikevizError):
        open_test_recording(None, typed)


@pytest.mark.parametrize("typed", ["sub/in.csv", "./sub/in.csv", "link_in.csv", "{root}/sub/in.csv",
                                   "sub/../sub/in.csv", " sub/in.csv "])
def test_paths_inside_are_opened(tree, typed):
    root, _ = tree
    typed = typed.replace("{root}", str(root))
    assert checked_path(typed) == (root / "sub" / "in.csv").resolve()
    assert open_test_recording(None, typed, file_format="table").n_spikes == 2


def test_roots_are_configurable_and_pathsep_separated(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "f.csv").write_text("unit,time_s\n1,0.5\n")
    monkeypatch.setenv("SPIKEVIZ_ROOTS", f"{a}{os.pathsep}{b}{os.pathsep}")
    assert allowed_roots() == (a.resolve(), b.resolve())
    assert checked_path(str(b / "f.csv")) == (b / "f.csv").resolve()
    with pytest.raises(SpikevizError, match="only files under"):
        checked_path(str(VITRO_FILE))    # data/ is no longer a root once roots are configured
    assert checkpoint_roots()[0] == (ROOT / "models").resolve()


def test_default_roots_are_data_and_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKEVIZ_ROOTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert allowed_roots() == ((ROOT / "data").resolve(), tmp_path.resolve())
    assert checked_path(str(VITRO_FILE)) == VITRO_FILE.resolve()
    with pytest.raises(SpikevizError, match="only files under"):
        checked_path(str(ROOT / "README.md"))


def test_the_page_shows_the_refusal_and_stays_usable(tree):
    from spikeviz.dashboard.state import BASELINE_ONLY, OPEN_FILE, DashboardState

    state = DashboardState(threaded=False, session="invitro_210511001_bh", checkpoint=BASELINE_ONLY,
                           window_length=10)
    before = state.recording
    for typed in ("../outside/secret.csv", "link_out.csv", "~/h.csv", "a\0b"):
        state.param.update(session=OPEN_FILE, path=typed)
        state.param.trigger("open_file")
        assert state.error and "Traceback" not in state.error and not state.busy
        assert state.recording is None or state.recording is before
    state.param.update(path="sub/in.csv", file_format="table")
    state.param.trigger("open_file")
    assert "too short for the dashboard" in state.error and state.error.startswith("in.csv: ")
    state.param.update(path="long.csv")
    state.param.trigger("open_file")
    assert state.error == "" and state.recording.source["path"].endswith("long.csv")
    assert state.evaluation is not None and state.frame is not None
    # A checkpoint path outside the roots is refused the same way.
    state.checkpoint_path = "../outside/secret.csv"
    state.param.trigger("open_checkpoint")
    assert "only files under" in state.error
