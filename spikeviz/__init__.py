"""spikeviz: load, bin, model and compare population spike trains (Shimono 2026 method)."""
from importlib import import_module

from .data.binning import BinnedSpikes, bin_spikes
from .data.catalog import load_session, sessions
from ._version import __version__
from .errors import SpikevizError
from .data.io import load_recording, write_recording
from .data.recording import Recording


# Names from modules that import torch, scikit-learn or the interop extras: loaded on first use,
# so `import spikeviz` and `spikeviz inspect` stay fast.
_LAZY = {
    "load_model": "models.checkpoint",
    "predict_next": "generation.predict", "generate": "generation.predict",
    "ModelPredictor": "generation.predict", "generate_recording": "evaluation.pipeline",
    "train_recording": "training.loop", "TrainOptions": "training.loop",
    "RatePredictor": "models.baselines", "EWMAPredictor": "models.baselines",
    "GLMPredictor": "models.baselines",
    "ScoreHistogram": "measures.metrics", "UnitHistograms": "measures.metrics",
    "scores_histograms": "measures.metrics", "threshold_preset": "measures.metrics",
    "FiringStats": "measures.stats", "firing_stats": "measures.stats", "compare_stats": "measures.stats",
    "evaluate_checkpoint": "evaluation.evaluate", "build_table": "evaluation.report",
    "from_sorting": "data.io.spikeinterface", "to_sorting": "data.io.spikeinterface",
    "from_tsgroup": "data.io.pynapple", "to_tsgroup": "data.io.pynapple",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'spikeviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["BinnedSpikes", "Recording", "SpikevizError", "bin_spikes", "load_recording",
           "write_recording", "load_session", "sessions", "__version__", *_LAZY]
