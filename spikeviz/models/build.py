"""Which network a config describes: a SpikeTransformer or a Generalist."""
from __future__ import annotations

from torch import nn

from ..errors import SpikevizError
from .generalist import Generalist
from .model import ModelConfig, SpikeTransformer


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network a config describes: a SpikeTransformer or a Generalist."""
    if cfg.kind == "generalist":
        return Generalist(cfg)
    if cfg.kind != "transformer":
        raise SpikevizError(f"unknown model kind {cfg.kind!r}")
    return SpikeTransformer(cfg)
