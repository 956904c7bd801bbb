"""spikeviz: load, bin, model and compare population spike trains (Shimono 2026 method)."""
from .binning import BinnedSpikes, PackedSpikes, bin_spikes
from .catalog import load_session, sessions
from .errors import SpikevizError
from .io import load_recording
from .io.pynapple import from_tsgroup
from .io.spikeinterface import from_sorting, to_sorting
from .recording import Recording

__version__ = "0.1.0"

__all__ = ["BinnedSpikes", "PackedSpikes", "Recording", "SpikevizError", "bin_spikes", "from_sorting",
           "from_tsgroup", "to_sorting",
           "load_recording", "load_session", "sessions", "__version__"]
