"""Generated trains the page shows, as a Recording and as files with the provenance `spikeviz generate` writes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..data.io import write_recording
from ..evaluation.pipeline import as_recording, provenance
from ..data.recording import Recording
from .frames import Frame


def generated_recording(frame: Frame, data: Recording, rule: str, seed: int,
                        level: float | None = None) -> Recording:
    """The generated spikes of `frame` as `spikeviz generate` writes them (pipeline.as_recording:
    times from the window start, the same provenance)."""
    ev = frame.evaluation
    bins, cols = frame.spikes
    n_bins = len(ev.free) if ev.mode == "free" else len(ev.stretch.targets)
    generated = np.zeros((n_bins, ev.stretch.X.shape[1]), np.uint8)
    generated[bins, cols] = 1
    made = provenance(recording=data, stretch=ev.stretch, mode=ev.mode, draw=frame.draw,
                      level=frame.threshold if frame.draw == "pooled" else level, seed=seed,
                      calibration=ev.calibration,
                      checkpoint=str(ev.generator.path or ""), generator=ev.generator.name,
                      rule=None if rule == "custom" or frame.draw != "pooled" else rule)
    return as_recording(generated, data, ev.stretch, made)


def as_file(recording: Recording, suffix: str) -> bytes:
    """`recording` written by spikeviz.data.io (.nwb carries generated_by in its Units table)."""
    with tempfile.TemporaryDirectory(prefix="spikeviz-download-") as tmp:
        path = Path(tmp) / f"generated{suffix}"
        write_recording(recording, path)
        return path.read_bytes()
