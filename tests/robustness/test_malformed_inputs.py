"""Every malformed input is refused with a SpikevizError naming the file; the CLI prints one line, exit 2."""
import subprocess
import sys

import pytest

from spikeviz import SpikevizError, load_recording
from spikeviz.cli import main

from .corpus import MARKER, build, cases

CASES = cases()


@pytest.fixture
def case_file(request, tmp_path):
    case = CASES[request.param]
    return build(case, tmp_path), case[4]


@pytest.mark.parametrize("case_file", sorted(CASES), indirect=True)
def test_library_refuses_with_file_name(case_file):
    path, opts = case_file
    with pytest.raises(SpikevizError) as info:
        load_recording(path, **opts)
    assert str(info.value).startswith(path.name + ":"), str(info.value)
    assert not (path.parent / MARKER).exists(), "a pickle payload ran"


@pytest.mark.parametrize("case_file", sorted(c for c in CASES if c.endswith("/nan-times")), indirect=True)
def test_nan_spike_times_are_called_nan(case_file):
    """In every format a NaN spike time is named as such (an NWB file's was "duration must be
    positive, got nan")."""
    path, opts = case_file
    with pytest.raises(SpikevizError, match="NaN"):
        load_recording(path, **opts)


@pytest.mark.parametrize("case_file", sorted(CASES), indirect=True)
def test_cli_prints_one_line_and_exits_2(case_file, capsys):
    path, opts = case_file
    argv = ["inspect", str(path)]
    if "tick_ms" in opts:
        argv += ["--tick-ms", str(opts["tick_ms"])]
    if "sample_rate" in opts:
        argv += ["--sample-rate", str(opts["sample_rate"])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"spikeviz: error: {path.name}: "), err
    assert not (path.parent / MARKER).exists()


def test_debug_shows_the_traceback(tmp_path):
    path = build(CASES["asdf/garbage"], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "spikeviz", "--debug", "inspect", str(path),
                           "--tick-ms", "1"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
