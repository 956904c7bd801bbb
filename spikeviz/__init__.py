"""spikeviz: load, bin, model and compare population spike trains (Shimono 2026 method)."""
from .binning import BinnedSpikes, PackedSpikes, bin_spikes
from .catalog import load_session, sessions
from .checkpoint import load_model
from .errors import SpikevizError
from .evaluation import build_table, evaluate_checkpoint
from .io import load_recording
from .io.pynapple import from_tsgroup
from .io.spikeinterface import from_sorting, to_sorting
from .predict import ModelPredictor, generate, predict_next
from .metrics import ScoreHistogram, UnitHistograms, scores_histograms, threshold_preset
from .recording import Recording
from .stats import FiringStats, compare_stats, firing_stats

__version__ = "0.1.0"

__all__ = ["BinnedSpikes", "PackedSpikes", "Recording", "SpikevizError", "bin_spikes", "from_sorting",
           "from_tsgroup", "to_sorting",
           "load_recording", "load_session", "sessions", "__version__",
           "load_model", "predict_next", "generate", "ModelPredictor",
           "ScoreHistogram", "UnitHistograms", "scores_histograms", "threshold_preset",
           "FiringStats", "firing_stats", "compare_stats", "evaluate_checkpoint", "build_table"]
