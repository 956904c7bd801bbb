"""Generated trains the page shows, as a Recording and as files with the provenance `spikeviz generate` writes."""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..data.io import write_recording
from ..data.io.table import sidecar_path
from ..evaluation.pipeline import as_recording, fitted_generator, provenance
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
    own = ev.fitted is not None and frame.draw == "bernoulli"   # a fitted model's own draws
    made = provenance(recording=data, stretch=ev.stretch, mode=ev.mode, draw=frame.draw,
                      level=frame.threshold if frame.draw == "pooled" else level, seed=seed,
                      calibration=None if own else ev.calibration,
                      blended=ev.blended and ev.mode == "teacher",
                      copula=frame.copula,
                      checkpoint=str(ev.generator.path or ""),
                      generator=fitted_generator(ev.generator.name, data, ev.stretch.bin_ms,
                                                 ev.fitted)
                      if ev.fitted is not None else ev.generator.name,
                      rule=None if rule == "custom" or frame.draw != "pooled" else rule)
    return as_recording(generated, data, ev.stretch, made)


def as_file(recording: Recording, name: str) -> bytes:
    """`recording` written by spikeviz.data.io as file `name` (.nwb carries generated_by in its
    Units table). A CSV or TSV table keeps its units, duration and provenance in a JSON sidecar
    beside it, as `spikeviz generate --out name` leaves them: a browser downloads one file, so the
    two come zipped together."""
    with tempfile.TemporaryDirectory(prefix="spikeviz-download-") as tmp:
        path = Path(tmp) / name
        write_recording(recording, path)
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            return path.read_bytes()
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, path.name)
            archive.write(sidecar, sidecar.name)
        return zipped.getvalue()
