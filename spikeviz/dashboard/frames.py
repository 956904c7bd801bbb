"""An evaluation's frames: the operating point at a threshold and the trains a draw rule generates."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..measures.metrics import OperatingPoint
from ..measures.stats import FiringStats, compare_stats, fidelity_entry, firing_stats
from ..evaluation.pipeline import fitted_trains, joint_copula, teacher_trains
from ..generation.copula import PopulationCopula
from .compute import Evaluation

FRAMES_KEPT = 4   # generated trains kept per evaluation (one per draw rule and level)


@dataclass(frozen=True, eq=False)
class Frame:
    """What one threshold and draw rule give: the operating point, the generated trains and their
    statistics."""

    evaluation: Evaluation                 # the one it was made from
    threshold: float
    draw: str                              # predict.DRAW_RULES (free-running: the model's samples)
    op: OperatingPoint                     # of the generator: scoring never depends on the draw
    spikes: tuple[np.ndarray, np.ndarray]  # bins and columns of generated spikes (window time base)
    stats: FiringStats
    distances: dict                        # stats.compare_stats(real, generated)
    fidelity: dict                         # stats.fidelity_entry for each of model, ceiling, floor
    copula: PopulationCopula | None = None  # what drew a bin's units jointly (None: independently)


def make_frame(ev: Evaluation, threshold: float, draw: str = "bernoulli", level: float | None = None,
               seed: int = 0, joint: bool = True) -> Frame:
    """The generator's operating point at `threshold` and the trains it generates (no prediction).

    Teacher-forced trains are drawn from the calibrated probabilities by `draw`: Bernoulli
    (seeded, a bin's units jointly when `joint` and the warm-up's copula found shared
    variability: pipeline.teacher_trains; a fitted population model draws its own, units
    jointly), or thresholds per rule:
    pooled at `threshold`, unit-density or lift at `level`.
    Trains that the threshold does not change (every rule but the pooled one, free runs) are
    kept with the evaluation (the last FRAMES_KEPT ways of drawing them): a new threshold, or a
    session switched back to, then costs only its operating point.
    """
    op = ev.hist.operating_point(threshold)
    if ev.mode != "free" and draw == "pooled":
        return _frame(ev, op, draw, teacher_trains(ev.predictions[ev.generator.name], draw, threshold))
    drawn_with = ("free",) if ev.mode == "free" else (draw, level, seed, joint)
    kept = ev.frames.pop(drawn_with, None)   # popped and put back: the dict runs oldest first
    if kept is None:
        copula = None
        if ev.mode == "free":
            generated, copula = ev.free, ev.free_copula
        elif ev.fitted is not None and draw == "bernoulli":   # its own draws: units jointly
            generated = fitted_trains(ev.fitted, ev.stretch, "teacher", 0, seed)
        else:
            prediction = ev.predictions[ev.generator.name]
            generated = teacher_trains(prediction, draw, level, seed, joint)
            copula = joint_copula(prediction, ev.mode, draw, joint)
        kept = _frame(ev, op, draw, generated, copula)
        while len(ev.frames) >= FRAMES_KEPT:
            ev.frames.pop(next(iter(ev.frames)))
    ev.frames[drawn_with] = kept
    return replace(kept, threshold=op.threshold, op=op)


def _frame(ev: Evaluation, op: OperatingPoint, draw: str, generated: np.ndarray,
           copula: PopulationCopula | None = None) -> Frame:
    stats = firing_stats(generated, ev.stretch.bin_ms)
    return Frame(ev, op.threshold, "bernoulli" if ev.mode == "free" else draw, op,
                 np.nonzero(generated), stats, compare_stats(ev.real_stats, stats),
                 ev.references | {"model": fidelity_entry(ev.stretch.targets[:len(generated)],
                                                          ev.compared, generated, ev.stretch.bin_ms)},
                 copula)
