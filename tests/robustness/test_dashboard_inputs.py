"""Every dashboard input refuses bad values with a message in the page, and the session stays usable
(the view-model, spikeviz.dashboard.state, without a browser)."""
from __future__ import annotations

import pytest

from spikeviz.dashboard.state import BASELINE_ONLY, OPEN_CHECKPOINT, OPEN_FILE, DashboardState

from .corpus import MARKER, build, cases
from .hostile import good_checkpoint

CASES = cases()
VITRO = "invitro_210511001_bh"
SUBSET = ["asdf/garbage", "asdf/truncated", "asdf/bad-footer", "asdf/nan-times",
          "phy/object-array-pickle", "phy/no-params-no-rate", "phy/length-mismatch",
          "nwb/garbage", "nwb/no-units", "nwb/truncated", "maxwell/missing-fields",
          "maxwell/other-hdf5", "table/npz-object-pickle", "table/text-time",
          "table/pickle-renamed", "table/unknown-extension", "table/binary-garbage"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The one allowed root ($SPIKEVIZ_ROOTS) of this module's tests."""
    path = tmp_path_factory.mktemp("roots")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKEVIZ_ROOTS", str(path))
        yield path


@pytest.fixture(scope="module")
def shared_state(root):
    """One session for all the tests, as one browser tab would go through them."""
    s = DashboardState(threaded=False, session=VITRO, checkpoint=BASELINE_ONLY, window_length=10)
    assert s.error == "" and s.frame is not None
    return s


@pytest.fixture
def state(shared_state):
    still_usable(shared_state)
    return shared_state


@pytest.fixture
def tmp_path(root, request):
    """A fresh folder under the allowed root."""
    path = root / request.node.name.replace("/", "_")[:80]
    path.mkdir()
    return path


def still_usable(state: DashboardState) -> None:
    """After an error: back to a bundled session and the baseline, evaluate, move the threshold."""
    state.param.update(session=VITRO, checkpoint=BASELINE_ONLY, mode="teacher", threshold_rule="density")
    assert state.error == "" and not state.busy and state.evaluation is not None
    f1 = state.frame.op.f1
    state.threshold = min(1.0, state.evaluation.thresholds["density"] * 2)
    assert state.frame.op.f1 != f1 and state.threshold_rule == "custom"


def shown(state: DashboardState, *words: str, file: str | None = None) -> str:
    msg = state.error
    assert msg and "Traceback" not in msg and not state.busy, msg
    assert "\n" not in msg.strip(), msg
    if file:
        assert msg.startswith(f"{file}: "), msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("case", SUBSET)
def test_malformed_files(case, state, tmp_path):
    path = build(CASES[case], tmp_path)
    opts = CASES[case][4]
    state.param.update(session=OPEN_FILE, path=str(path), tick_ms=opts.get("tick_ms"),
                       sample_rate=opts.get("sample_rate"), file_format="auto")
    state.param.trigger("open_file")
    shown(state, file=path.name)
    assert not (tmp_path / MARKER).exists()
    still_usable(state)


def test_missing_and_zero_tick(state, tmp_path):
    path = build(CASES["asdf/no-tick"], tmp_path)
    state.param.update(session=OPEN_FILE, path=str(path), tick_ms=None, file_format="auto")
    state.param.trigger("open_file")
    shown(state, "tick", file=path.name)
    state.tick_ms = 0.0
    state.param.trigger("open_file")
    shown(state, "tick_ms must be positive", file=path.name)
    state.tick_ms = 1.0
    state.param.trigger("open_file")
    shown(state, "too short", file=path.name)   # read now; 0.1 s cannot be evaluated
    still_usable(state)


def test_zero_sample_rate(state, tmp_path):
    path = build(CASES["phy/no-params-no-rate"], tmp_path)
    state.param.update(session=OPEN_FILE, path=str(path), sample_rate=0.0, file_format="auto")
    state.param.trigger("open_file")
    shown(state, "sample_rate must be positive", file=path.name)
    still_usable(state)


@pytest.mark.parametrize("typed", ["", "   ", "no_such_file.csv"])
def test_empty_or_missing_path(state, typed):
    state.param.update(session=OPEN_FILE, path=typed)
    state.param.trigger("open_file")
    assert state.error or state.status == "give a path and press Open file"
    still_usable(state)


def test_the_path_prompt_does_not_say_evaluating(state):
    """Nothing runs while the page waits for a path: its readout once said "Evaluating… give a
    path and press Open file"."""
    from spikeviz.dashboard.app import readout

    state.param.update(session=OPEN_FILE, path="")
    assert readout(state.frame, state.status, state.error) == (
        '<div class="sv-waiting">give a path and press Open file</div>')
    assert "Evaluating… fitting" in readout(None, "fitting")


@pytest.mark.parametrize("name, value", [
    ("threshold", 2.0), ("threshold", -0.5), ("threshold", float("nan")), ("seed", -1),
    ("free_s", 0.0), ("free_s", 1000.0), ("tick_ms", -1.0), ("sample_rate", -5.0),
    ("window_start", -10.0), ("window_start", 1e9), ("window_length", 7), ("file_format", "pickle"),
    ("unit_order", "bogus"), ("mode", "evil"), ("session", "../etc/passwd"),
    ("checkpoint", "/etc/passwd"),
])
def test_out_of_range_values_are_rejected_and_nothing_changes(state, name, value):
    before = getattr(state, name)
    with pytest.raises(ValueError):
        setattr(state, name, value)
    assert getattr(state, name) == before
    assert state.error == ""
    still_usable(state)


def test_checkpoint_path_errors(state, tmp_path):
    for typed, words in [("", ("no path given",)),
                         (str(tmp_path / "missing.safetensors"), ("no such file",)),
                         ("/etc/hostname", ("only files under",))]:
        state.checkpoint_path = typed
        state.param.trigger("open_checkpoint")
        shown(state, *words)
    assert state.frame is not None
    state.checkpoint = OPEN_CHECKPOINT   # chosen before any path was loaded
    shown(state, "give a checkpoint path")
    # No result of the checkpoint chosen before stays under this one's label.
    assert state.evaluation is None and state.frame is None
    still_usable(state)


def test_checkpoint_for_more_units_than_the_data(state, tmp_path):
    path = good_checkpoint(tmp_path / "wide.safetensors", n_units=200)
    state.checkpoint_path = str(path)
    state.param.trigger("open_checkpoint")
    shown(state, "128 units", "200")
    still_usable(state)


def test_checkpoint_of_another_bin_size(state, tmp_path):
    path = good_checkpoint(tmp_path / "two_ms.safetensors", bin_ms=2.0)
    state.checkpoint_path = str(path)
    state.param.trigger("open_checkpoint")
    shown(state, "1-ms bins", "2-ms", file=path.name)
    still_usable(state)


def test_free_running_without_a_model(state):
    state.mode = "free"
    shown(state, "free-running generation needs a model checkpoint")
    still_usable(state)
