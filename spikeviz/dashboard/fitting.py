"""Fitting a shipped generalist to a recording the page has loaded: fine-tuning in the background, cancellable."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..data.recording import Recording
from .sources import Checkpoint, read_checkpoint
from ..training.loop import FINE_TUNE_LR, TrainOptions, train_recording


def fit_span(seconds: float, duration_s: float) -> tuple[float, str]:
    """The seconds a fit of the first `seconds` uses, and the line saying so when the recording
    is shorter than that (fit_checkpoint trains on the first half of them)."""
    used = min(seconds, duration_s)
    return used, ("" if used == seconds else f"the whole {duration_s:.0f}-s recording, not the "
                  f"first {seconds:g} s asked: its first {used / 2:.0f} s train")


def fit_checkpoint(start: Checkpoint, recording: Recording, folder: Path, seconds: float,
                   epochs: int, progress: Callable[[float, str], None],
                   cancelled: Callable[[], bool]) -> Checkpoint | None:
    """Fine-tune `start` on the first `seconds` of `recording` (training uses their first half,
    validation the next quarter: the test split the page scores lies later in any recording over
    `seconds`, and is the last quarter otherwise) at the CLI's fine-tuning rate. The checkpoint
    goes to `folder`; None when cancelled before an epoch ended (otherwise the best epoch so far
    is kept)."""
    out = folder / f"{start.name}-fitted-{recording.name}"[:120]
    out = out.with_name(out.name + ".safetensors")

    def step(epoch: int, n_epochs: int, batch: int, batches: int) -> bool:
        progress((epoch + batch / max(batches, 1)) / n_epochs,
                 f"fitting {start.name}: epoch {epoch + 1}/{n_epochs}")
        return not cancelled()

    used, shortened = fit_span(seconds, recording.duration_s)
    progress(0.0, f"fitting {start.name} on {shortened or f'the first {seconds:g} s'}")
    train_recording(recording, out, TrainOptions(epochs=epochs, lr=FINE_TUNE_LR, init=str(start.path)),
                    seconds=used, progress=False, log=False,
                    callback=step)
    if not out.exists():
        return None
    fitted = read_checkpoint(out)
    return Checkpoint(fitted.path, recording.name, fitted.loss, fitted.preset, fitted.domain)
