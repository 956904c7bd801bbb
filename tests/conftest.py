"""Test-suite settings: hypothesis profiles for the loader fuzzing, one thread per pytest-xdist
worker, the browser tests kept on one worker, and a loud summary line when the browser tests could
not run."""
import os

import pytest
from hypothesis import HealthCheck, settings

# "default": a few derandomized examples per loader, so `make test` stays within its time and
# never varies between runs; "large": benchmarks/bench_fuzz.py, random and many (400 per test, or
# SPIKEVIZ_FUZZ_EXAMPLES).
_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.data_too_large])
settings.register_profile("default", max_examples=12, derandomize=True, **_COMMON)
settings.register_profile("large", max_examples=int(os.environ.get("SPIKEVIZ_FUZZ_EXAMPLES", "400")),
                          **_COMMON)
settings.load_profile("default")


def pytest_configure(config) -> None:
    # `make test` runs two xdist workers on two cores: a worker's own thread pools (torch, BLAS)
    # would oversubscribe them. (A serial run already ends up on one torch thread: the grid's and
    # the training tests' torch.set_num_threads(1) stays for the rest of the process.)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)


def pytest_collection_modifyitems(config, items) -> None:
    """One browser test at a time (under --dist loadgroup): each runs a `panel serve` and
    Chromium, and two at once on two cores starve each other's page past its timeouts.

    The browser tests are one xdist group, named as pytest-xdist names a group: "@browser" at the
    end of the test's id. Not with the xdist_group marker: pytest-xdist (3.8) appends the name to
    `item._nodeid`, which pytest 9 no longer reads (an item's id is `item._id`), so the marker
    groups nothing and two browser tests ran at once (the walk hung in 2 of 3 runs)."""
    if not getattr(config.option, "loadgroup", False):   # (set on xdist's workers)
        return
    from _pytest.nodeid import NodeId

    for item in items:
        if "browser" in item.keywords and not item.nodeid.endswith("@browser"):
            item._id = NodeId.parse(f"{item.nodeid}@browser")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """A green run without Chromium has not tested the page: say so where nobody can miss it."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in r.keywords]
    if not skipped:
        return
    reasons = sorted({r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr)
                      for r in skipped})
    tr = terminalreporter
    tr.section("BROWSER TESTS SKIPPED: THE DASHBOARD WAS NOT TESTED IN A BROWSER", sep="!",
               red=True, bold=True)
    tr.line(f"{len(skipped)} end-to-end test(s) did not run ({'; '.join(reasons)}). Install "
            f"Chromium (apt-get install chromium, or `make browser` as root) and run again:",
            red=True, bold=True)
    for report in skipped:
        tr.line(f"  {report.nodeid}", red=True)


def assert_nwb_inspector_clean(path) -> None:
    """NWB Inspector finds no critical issue and no best-practice violation in `path` (its
    suggestions, such as a missing experimenter, are allowed)."""
    from nwbinspector import Importance, inspect_nwbfile

    bad = [f"{m.importance.name} {m.check_function_name}: {m.message}"
           for m in inspect_nwbfile(nwbfile_path=str(path))
           if m.importance.value > Importance.BEST_PRACTICE_SUGGESTION.value]
    assert not bad, f"{path}: " + "; ".join(bad)


@pytest.fixture(autouse=True)
def nwb_inspected(monkeypatch):
    """Every NWB file spikeviz writes in any test (io.nwb.write_nwb, which every NWB output goes
    through) is checked by NWB Inspector as soon as it is written."""
    from spikeviz.data.io import nwb

    write = nwb.write_nwb

    def write_and_inspect(recording, path, *args, **kwargs):
        write(recording, path, *args, **kwargs)
        assert_nwb_inspector_clean(path)

    monkeypatch.setattr(nwb, "write_nwb", write_and_inspect)


@pytest.fixture(scope="session")
def sessions_server(tmp_path_factory):
    """One `panel serve tests/robustness/sessions_app.py` for the browser tests that drive it (the
    random walk and the eight sessions), its start paid once: the dashboard with the GLM baseline
    and a 10-s window. Its allowed roots are data/ and a folder of its own (`.root`). A test adds
    the server folders of the files it dropped into a page to `.dropped`: once the server has
    stopped, at the end of the run, they must be gone."""
    from .browser import ROOT, SESSIONS_WARM, serve

    root = tmp_path_factory.mktemp("root")
    with serve("tests/robustness/sessions_app.py", setup=SESSIONS_WARM,
               env={"SPIKEVIZ_ROOTS": f"{root}{os.pathsep}{ROOT / 'data'}"}) as server:
        server.root, server.dropped = root, set()
        yield server
    left = [d for d in server.dropped if d.exists()]
    assert not left, f"the stopped server left the folders of dropped files behind: {left}"
