"""Fitting a shipped generalist to a recording the page has loaded: fine-tuning in the background, cancellable."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..data.recording import Recording
from .sources import Checkpoint, read_checkpoint
from ..training.loop import FINE_TUNE_LR, TrainOptions, train_recording


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

    progress(0.0, f"fitting {start.name} on the first {seconds:g} s")
    train_recording(recording, out, TrainOptions(epochs=epochs, lr=FINE_TUNE_LR, init=str(start.path)),
                    seconds=min(seconds, recording.duration_s), progress=False, log=False,
                    callback=step)
    if not out.exists():
        return None
    fitted = read_checkpoint(out)
    return Checkpoint(fitted.path, recording.name, fitted.loss, fitted.preset, fitted.domain)
