"""Loader fuzzing at size: the property-based loader tests under the "large" hypothesis profile.

    PYTHONPATH=. [SPIKEVIZ_FUZZ_EXAMPLES=400] python benchmarks/bench_fuzz.py [pytest args]

Prints, per loader test, the examples tried and failed, and the totals; exit status 1 if any
input escaped as something other than a SpikevizError (or CLI status other than 0 / 2)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--hypothesis-profile=large", "--hypothesis-show-statistics",
                           "tests/robustness/test_fuzz_loaders.py", *sys.argv[1:]],
                          cwd=ROOT, capture_output=True, text=True)
    stats = []   # the generate phase of each test's statistics block (shrinking re-runs cases)
    for block in proc.stdout.split("test_fuzz_loaders.py::")[1:]:
        found = re.search(r"during generate phase.*?(\d+) passing examples, (\d+) failing "
                          r"examples, (\d+) invalid", block, re.S)
        if found:
            stats.append((block.split(":\n", 1)[0], *found.groups()))
    for name, ok, bad, invalid in stats:
        print(f"{name:45s} {int(ok) + int(bad):6d} tried {int(bad):3d} failed {int(invalid):5d} invalid")
    tried = sum(int(ok) + int(bad) for _, ok, bad, _ in stats)
    failed = sum(int(bad) for _, _, bad, _ in stats)
    print(f"total: {tried} inputs tried, {failed} escaped, in {time.perf_counter() - t0:.0f} s")
    if proc.returncode:
        print(proc.stdout[-4000:])
    return 1 if proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
