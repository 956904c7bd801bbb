"""Generated trains the page shows, as a Recording and as files with the provenance `spikeviz generate` writes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import write_recording
from ..recording import Recording
from .frames import Frame


def generated_recording(frame: Frame, data: Recording, preset: str, seed: int,
                        level: float | None = None) -> Recording:
    """The generated spikes of `frame` (times from the window start, as `spikeviz generate`),
    with `source["generated_by"]` saying what made them."""
    ev = frame.evaluation
    s = ev.stretch
    bins, cols = frame.spikes
    step = s.bin_ms / 1000.0
    trains = tuple(np.sort(bins[cols == j]) * step for j in range(s.X.shape[1]))
    n_bins = len(ev.free) if ev.mode == "free" else len(s.targets)
    made = {"checkpoint": str(ev.generator.path or ""), "generator": ev.generator.name,
            "mode": ev.mode, "threshold": None if ev.mode == "free" else frame.threshold,
            "preset": None if preset == "custom" else preset,
            "draw": frame.draw, "draw_level": None if frame.draw in ("bernoulli", "pooled") else level,
            "seed": seed,
            "data": data.name, "data_path": data.source.get("path"), "start_s": s.start_s,
            "bin_ms": s.bin_ms, "unit_order": s.unit_order, "spikeviz_version": __version__}
    return Recording(f"{data.name}-{ev.mode}", np.asarray([str(u) for u in s.unit_ids]), trains, n_bins * step,
                     {"format": "generated", "generated_by": made})


def as_file(recording: Recording, suffix: str) -> bytes:
    """`recording` written by spikeviz.io (.nwb carries generated_by in its Units table)."""
    with tempfile.TemporaryDirectory(prefix="spikeviz-download-") as tmp:
        path = Path(tmp) / f"generated{suffix}"
        write_recording(recording, path)
        return path.read_bytes()
