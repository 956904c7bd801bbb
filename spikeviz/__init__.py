"""spikeviz: load, bin, model and compare population spike trains (Shimono 2026 method)."""
from importlib import import_module

from .binning import BinnedSpikes, bin_spikes
from .catalog import load_session, sessions
from .errors import SpikevizError
from .io import load_recording, write_recording
from .recording import Recording

__version__ = "0.1.0"

# Names from modules that import torch, scikit-learn or the interop extras: loaded on first use,
# so `import spikeviz` and `spikeviz inspect` stay fast.
_LAZY = {
    "load_model": "checkpoint",
    "predict_next": "predict", "generate": "predict", "generate_recording": "predict",
    "ModelPredictor": "predict",
    "train_recording": "training", "TrainOptions": "training",
    "RatePredictor": "baselines", "EWMAPredictor": "baselines", "GLMPredictor": "baselines",
    "ScoreHistogram": "metrics", "UnitHistograms": "metrics", "scores_histograms": "metrics",
    "threshold_preset": "metrics",
    "FiringStats": "stats", "firing_stats": "stats", "compare_stats": "stats",
    "evaluate_checkpoint": "evaluation", "build_table": "report",
    "from_sorting": "io.spikeinterface", "to_sorting": "io.spikeinterface",
    "from_tsgroup": "io.pynapple", "to_tsgroup": "io.pynapple",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'spikeviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["BinnedSpikes", "Recording", "SpikevizError", "bin_spikes", "load_recording",
           "write_recording", "load_session", "sessions", "__version__", *_LAZY]
