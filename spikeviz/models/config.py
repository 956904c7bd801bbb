"""A spike transformer's sizes and presets, as a dataclass: read from a checkpoint's metadata without torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import SpikevizError


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a spike transformer. `context` is in bins, `trace_taus` in bins too.

    `shared_units` (the transfer preset) runs one sequence per unit with weights shared across
    units: its input is the unit's own history plus the population mean, so any unit count works.
    """

    preset: str = "fast"
    n_units: int = 128
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 1
    d_ff: int = 128
    dropout: float = 0.0
    context: int = 256
    trace_taus: tuple[float, ...] = ()
    shared_units: bool = False
    rope_base: float = 10000.0
    # The generalist (spikeviz.models.generalist): a correction on top of causal rate baselines, with
    # switches for the ablations (no population input, unnormalised inputs).
    kind: str = "transformer"
    population: bool = True
    normalize: bool = True

    def to_dict(self) -> dict:
        return asdict(self) | {"trace_taus": list(self.trace_taus)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpikevizError(f"unknown model config keys {sorted(unknown)}")
        return cls(**(d | {"trace_taus": tuple(d.get("trace_taus", ()))}))


PRESETS: dict[str, dict] = {
    # The reference code's sizes, made causal (RoPE positions, next-bin targets).
    "paper": dict(d_model=128, n_heads=16, n_layers=1, d_ff=128, dropout=0.1, context=15625),
    # Trains in minutes on 2 CPU cores; traces give it history longer than the context.
    "fast": dict(d_model=64, n_heads=4, n_layers=1, d_ff=128, dropout=0.0, context=256,
                 trace_taus=(4.0, 32.0, 256.0, 2048.0)),
    # One small sequence model per unit, weights shared: applies to any session and unit count.
    "transfer": dict(d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0, context=64,
                     trace_taus=(4.0, 32.0, 256.0, 2048.0), shared_units=True),
    # Any recording, untrained it is EWMA (tau 50 ms) with a rate floor; learns what rates miss.
    # Traces: 50 is the EWMA's, the last the unit's causal rate that normalises the others.
    "generalist": dict(d_model=32, n_heads=4, n_layers=1, d_ff=32, dropout=0.0, context=256,
                       trace_taus=(2.0, 8.0, 50.0, 200.0, 1000.0, 5000.0), shared_units=True,
                       kind="generalist"),
}


def preset_config(preset: str, n_units: int, **changes) -> ModelConfig:
    """The preset's config for `n_units` units; `changes` override fields (the ablations)."""
    if preset not in PRESETS:
        raise SpikevizError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    return ModelConfig(preset=preset, n_units=n_units, **(PRESETS[preset] | changes))
