"""The generalist: a unit-agnostic model whose logit is a learned, rate-normalised correction on top of a causal rate baseline."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpikevizError
from .model import Block, DecodeState, ModelConfig, Rotary
from .model import compute_traces

BASE_TAU = 50.0          # bins: the EWMA the model starts from (tau 50 ms at 1 ms)
RATE_FLOOR = 2e-4        # per bin (0.2 Hz): a unit silent for the whole long trace is not "rate 0"
BASE_RATE_MIX = 0.05     # the base is EWMA + 5 % of the long rate: EWMA's zero ties broken by rate
LIFT_MIX = 0.1           # traces are read as log((trace + 0.1 r) / (1.1 r)): 0 at the unit's rate
REF_RATE = 0.01          # log rates enter centred on 10 Hz


class Generalist(Rotary, nn.Module):
    """logit = g0 * base + g1 * correction + g2 for every unit, with weights shared across units.

    base: logit of the unit's EWMA (tau 50 bins) plus a small part of its long causal rate, so the
    untrained model (correction 0, g = (1, 1, 0)) ranks like the EWMA baseline. The correction is
    an MLP over the unit's own traces divided by its long causal rate (a 1 Hz in vivo unit and an
    18 Hz in vitro unit look alike), its log rate, and a population state: a causal transformer
    over the population's rate-normalised traces. `guard` (g0, g1, g2) is (1, 1, 0) after training;
    `adapt` refits it on a target's warm-up, so a correction that does not carry to a new recording
    is turned down there instead of costing accuracy.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        taus = tuple(cfg.trace_taus)
        if BASE_TAU not in taus or len(taus) < 2 or taus[-1] != max(taus):
            raise SpikevizError(f"generalist traces {taus} must include {BASE_TAU:g} and end with "
                                f"the longest (the unit's rate)")
        if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
            raise SpikevizError(f"d_model {cfg.d_model} must split into {cfg.n_heads} heads of "
                                f"even size")
        self.config = cfg
        self.base_index = taus.index(BASE_TAU)
        n_feat = len(taus) + 1   # spike, K-1 traces, log rate
        self.pop_embed = nn.Linear(n_feat, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unit_in = nn.Linear(n_feat, cfg.d_ff)
        self.pop_in = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.out = nn.Linear(cfg.d_ff, 1)
        nn.init.zeros_(self.out.weight)   # untrained: the correction is 0, the model is its base
        nn.init.zeros_(self.out.bias)
        self.register_buffer("guard", torch.tensor([1.0, 1.0, 0.0]), persistent=False)
        hd = cfg.d_model // cfg.n_heads
        self._inv_freq = cfg.rope_base ** (-np.arange(0, hd, 2) / hd)
        # From Python floats: tensor arithmetic under the checker's "meta" device imports torch._dynamo (~3 s).
        decay = [math.exp(-1.0 / t) for t in taus]
        self._decay = torch.tensor(decay).view(-1, 1)
        self._gain = torch.tensor([1.0 - d for d in decay]).view(-1, 1)
        self.meta: dict = {}
        self.calibration: tuple[float, float] = (1.0, 0.0)

    def _features(self, x: torch.Tensor, tr: torch.Tensor, pop: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (..., N, F) of each unit (or (..., F) of the population when `pop`) and the
        base logits (..., N), from spikes x (..., N) and traces tr (..., K, N)."""
        if pop:
            x, tr = x.mean(-1, keepdim=True), tr.mean(-1, keepdim=True)
        rate = tr[..., -1, :] + RATE_FLOOR
        if self.config.normalize:
            lifts = torch.log((tr[..., :-1, :] + LIFT_MIX * rate.unsqueeze(-2))
                              / ((1.0 + LIFT_MIX) * rate.unsqueeze(-2)))
            spike = torch.log((x + LIFT_MIX * rate) / ((1.0 + LIFT_MIX) * rate)) / 4.0
        else:
            lifts, spike = torch.log(tr[..., :-1, :] + 1e-4) / 4.0, x
        log_rate = (torch.log(rate) - math.log(REF_RATE)) / 4.0
        feats = torch.cat((spike.unsqueeze(-2), lifts, log_rate.unsqueeze(-2)), dim=-2)
        q = (tr[..., self.base_index, :] + BASE_RATE_MIX * rate).clamp(max=0.99)
        base = torch.log(q) - torch.log1p(-q)
        feats = feats.transpose(-1, -2).contiguous()
        return (feats.squeeze(-2) if pop else feats), base

    def parts(self, x: torch.Tensor, tr: torch.Tensor, first: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, correction) logits (B, L - first, N) for bins first+1..L from x (B, L, N) and
        tr (B, L, K, N): the population sees the whole window, the units only from `first` on."""
        B, L, N = x.shape
        if L > self.config.context:
            raise SpikevizError(f"window of {L} bins is longer than the context "
                                f"({self.config.context})")
        h = self.pop_in(self._population(x, tr, L)[:, first:])
        own, base = self._features(x[:, first:], tr[:, first:], pop=False)
        corr = self.out(F.relu(self.unit_in(own) + h.unsqueeze(2))).squeeze(-1)
        return base, corr

    def _population(self, x: torch.Tensor, tr: torch.Tensor, L: int) -> torch.Tensor:
        B = x.shape[0]
        if not self.config.population:
            return torch.zeros(B, L, self.config.d_model, device=x.device)
        pop, _ = self._features(x, tr, pop=True)
        h = self.pop_embed(pop)
        cos, sin = (r.to(h.device) for r in self._rotation(0, L))
        for block in self.blocks:
            h = block(h, cos, sin)
        return self.ln_f(h)

    def _combine(self, base: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        g = self.guard
        return g[0] * base + g[1] * corr + g[2]

    def forward(self, x: torch.Tensor, tr: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Logits (B, L - first, N) for bins first+1..L from spikes x (B, L, N) and their traces
        (B, L, K, N)."""
        return self._combine(*self.parts(x, tr, first))

    def start(self, n_units: int, traces: torch.Tensor | None = None) -> DecodeState:
        """An empty decode state for `n_units` units (traces (K, N) to continue a real past)."""
        cfg = self.config
        hd = cfg.d_model // cfg.n_heads
        shape = (1, cfg.n_heads, cfg.context, hd)
        tr = torch.zeros(len(cfg.trace_taus), n_units) if traces is None else traces.float()
        return DecodeState(tr, [torch.zeros(shape) for _ in self.blocks],
                           [torch.zeros(shape) for _ in self.blocks],
                           weights=[b.step_weights() for b in self.blocks])

    def step(self, x: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Feed one bin x (N,) through the KV cache; logits (N,) for the next bin."""
        cfg = self.config
        self._update_traces(x, state)
        own, base = self._features(x, state.traces, pop=False)
        if cfg.population:
            pop, _ = self._features(x, state.traces, pop=True)
            h = F.linear(pop.view(1, 1, -1), self.pop_embed.weight, self.pop_embed.bias)
            h = self.pop_in(self.ln_f(self._step_blocks(h, state))).view(-1)
        else:
            h = torch.zeros(cfg.d_ff)
        state.pos += 1
        corr = self.out(F.relu(self.unit_in(own) + h)).squeeze(-1)
        return self._combine(base, corr)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def base_logits(model: Generalist, X: np.ndarray, last: np.ndarray | None = None) -> np.ndarray:
    """The base logits (T, N) the model adds its correction to, from X alone (numpy, no network);
    `last` (K, N): the traces at the bin before X[0] (compute_traces)."""
    tr = compute_traces(X, model.config.trace_taus, last)
    rate = tr[:, -1] + RATE_FLOOR
    q = np.minimum(tr[:, model.base_index] + BASE_RATE_MIX * rate, 0.99)
    return (np.log(q) - np.log1p(-q)).astype(np.float32)
