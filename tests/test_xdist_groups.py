"""`make test -n 2` runs the browser tests one at a time, on one worker (conftest.py): two at once on
two cores starved each other's pages past their timeouts (the walk hung in 2 of 3 runs)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_browser_tests_run_on_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "test_groups.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.browser
        @pytest.mark.parametrize("i", range(6))
        def test_in_a_browser(i):
            pass

        @pytest.mark.parametrize("i", range(6))
        def test_elsewhere(i):
            pass
        """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                          "-p", "no:cacheprovider", "-o", "markers=browser", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    workers = re.findall(r"\[(gw\d+)\].*PASSED .*::test_in_a_browser", run.stdout)
    others = re.findall(r"\[(gw\d+)\].*PASSED .*::test_elsewhere", run.stdout)
    assert len(workers) == len(others) == 6, run.stdout
    assert len(set(workers)) == 1, run.stdout
