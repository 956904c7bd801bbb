"""The public surface: every exported name resolves and shows in dir(); heavy modules load lazily."""
import json
import subprocess
import sys

import spikeviz


def test_every_exported_name_resolves_and_is_listed():
    for name in spikeviz.__all__:
        assert getattr(spikeviz, name) is not None, name
    assert set(spikeviz.__all__) <= set(dir(spikeviz))
    for name in ("write_recording", "generate_recording", "train_recording", "to_tsgroup",
                 "from_tsgroup", "RatePredictor", "EWMAPredictor", "GLMPredictor"):
        assert name in spikeviz.__all__, name
    assert "PackedSpikes" not in spikeviz.__all__ and not hasattr(spikeviz.Recording, "to_pynapple")


def loaded_after(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` a fresh interpreter has loaded after importing `module`."""
    code = (f"import json, sys, {module}; dir({module})\n"
            f"print(json.dumps([m for m in {candidates!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_loads_neither_torch_nor_the_bridges():
    assert loaded_after("spikeviz", ("torch", "sklearn", "pynapple", "spikeinterface")) == []


def test_the_page_imports_without_scipy_stats_signal_or_pyplot():
    # A plain `panel serve app.py` imports the page on its first request: these three were 2-3 s
    # of it, and the first raster needs none of them.
    assert loaded_after("spikeviz.dashboard.app",
                        ("scipy.signal", "scipy.stats", "matplotlib.pyplot")) == []
