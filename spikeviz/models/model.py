"""The spike transformer: causal decoder, exponential-trace inputs, KV-cache steps (its config: config.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpikevizError
from .config import PRESETS, ModelConfig, preset_config  # noqa: F401  (the config is torch-free: models/config.py)
from .filters import exponential_filter

# Traces enter as log(trace + eps): in vivo rates (~1e-3 per bin) and in vitro ones (~2e-2) then
# differ by an offset the weights can share, which is what lets `transfer` cross domains.
TRACE_EPS = 1e-4


def compute_traces(X: np.ndarray, taus: tuple[float, ...], last: np.ndarray | None = None
                   ) -> np.ndarray:
    """Causal exponential traces (T, K, N): tr[t] = a tr[t-1] + (1-a) X[t], a = exp(-1/tau).

    `last` (K, N) is the trace at the bin before X[0] (zeros by default), so long data can be
    filtered in consecutive pieces with the same result.
    """
    T, N = X.shape
    out = np.empty((T, len(taus), N), dtype=np.float32)
    for k, tau in enumerate(taus):
        exponential_filter(X, math.exp(-1.0 / tau),
                           None if last is None else last[k].astype(np.float64), out[:, k])
    return out


def final_traces(X: np.ndarray, taus: tuple[float, ...]) -> np.ndarray:
    """compute_traces(X, taus)[-1] (K, N), zeros for an empty X, without the (T, K, N) array:
    each trace's last value is its unit's spikes weighted by (1-a) a^age (sparse sums, no BLAS:
    beside torch's threads a dense product stalled)."""
    T, N = X.shape
    t, unit = np.nonzero(X)
    counts = np.asarray(X[t, unit], np.float64)
    out = np.empty((len(taus), N), np.float32)
    for k, tau in enumerate(taus):
        weight = (1.0 - math.exp(-1.0 / tau)) * np.exp((t - (T - 1)) / tau) * counts
        out[k] = np.bincount(unit, weight, minlength=N)
    return out


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention with rotary positions, then a GELU MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, 3, self.n_heads, d // self.n_heads).permute(
            2, 0, 3, 1, 4)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        h = h + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, d)))
        return h + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(h)))))

    def step_weights(self) -> tuple[torch.Tensor, ...]:
        return (self.ln1.weight, self.ln1.bias, self.qkv.weight, self.qkv.bias, self.proj.weight,
                self.proj.bias, self.ln2.weight, self.ln2.bias, self.fc1.weight, self.fc1.bias,
                self.fc2.weight, self.fc2.bias)

    def step(self, h: torch.Tensor, w: tuple[torch.Tensor, ...], rot: torch.Tensor,
             K: torch.Tensor, V: torch.Tensor, slot: int, n: int) -> torch.Tensor:
        """One token per row (rows, 1, d) through the block and its KV ring buffer.

        `forward`'s computation for a new token, in as few tensor ops as possible (generation
        speed is set by per-op overhead, not arithmetic): `w` are `step_weights()`, `rot` (hd, hd)
        the rotary map of this position, applied to queries and keys in one product. The new
        token attends to every cached one (all in its past) and itself; keys carry their absolute
        rotation, so the ring buffer's slot order does not matter.
        """
        ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fc1w, fc1b, fc2w, fc2b = w
        rows, _, d = h.shape
        H = self.n_heads
        qkv = F.linear(F.layer_norm(h, (d,), ln1w, ln1b), qkvw, qkvb).view(rows, 3 * H, d // H)
        qk = qkv[:, :2 * H] @ rot
        K[:, :, slot], V[:, :, slot] = qk[:, H:], qkv[:, 2 * H:]
        a = F.scaled_dot_product_attention(qk[:, :H, None], K[:, :, :n], V[:, :, :n])
        h = h + F.linear(a.view(rows, 1, d), projw, projb)
        m = F.linear(F.layer_norm(h, (d,), ln2w, ln2b), fc1w, fc1b)
        return h + F.linear(F.gelu(m), fc2w, fc2b)


@dataclass
class DecodeState:
    """What step-by-step generation carries: traces, the per-layer KV ring buffers and the position."""

    traces: torch.Tensor
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    pos: int = 0
    rotations: torch.Tensor | None = None   # rotary maps of positions rot_start, rot_start+1...
    rot_start: int = 0
    weights: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    # (N,) when set, the long-rate trace (the last) is held at it: a free run under
    # spikeviz.generation.calibration.fit_free_running's anchor.
    anchor: torch.Tensor | None = None


class Rotary:
    """What the decoders share: the traces' update, rotary positions (from `self._inv_freq`), one
    token through the blocks' KV caches, and calibrated probabilities."""

    def _update_traces(self, x: torch.Tensor, state: "DecodeState") -> None:
        """The traces (K, N) after bin x (N,), the last held at state.anchor when it is set."""
        state.traces.mul_(self._decay).addcmul_(self._gain, x)
        if state.anchor is not None:
            state.traces[-1] = state.anchor

    def _step_blocks(self, h: torch.Tensor, state: "DecodeState") -> torch.Tensor:
        """Token(s) h (rows, 1, d) at position state.pos through every block and its KV cache."""
        if state.rotations is None or state.pos - state.rot_start >= len(state.rotations):
            state.rotations, state.rot_start = self._rotation_maps(state.pos, 1024), state.pos
        rot = state.rotations[state.pos - state.rot_start]
        context = self.config.context
        slot, n = state.pos % context, min(state.pos + 1, context)
        for block, w, K, V in zip(self.blocks, state.weights, state.keys, state.values):
            h = block.step(h, w, rot, K, V, slot, n)
        return h

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        scale, shift = self.calibration
        return torch.sigmoid(logits * scale + shift)

    def _rotation(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        # float64 angles keep absolute positions in the millions exact enough for generation.
        angles = np.outer(np.arange(start, start + length, dtype=np.float64), self._inv_freq)
        return (torch.from_numpy(np.cos(angles)).float(), torch.from_numpy(np.sin(angles)).float())

    def _rotation_maps(self, start: int, count: int) -> torch.Tensor:
        """(count, hd, hd) matrices R with x @ R == _rope(x) at positions start..start+count-1."""
        cos, sin = self._rotation(start, count)
        half = len(self._inv_freq)
        R = torch.zeros(count, 2 * half, 2 * half)
        i = torch.arange(half)
        R[:, i, i] = R[:, i + half, i + half] = cos
        R[:, i, i + half], R[:, i + half, i] = sin, -sin
        return R


class SpikeTransformer(Rotary, nn.Module):
    """Decoder-only transformer over binned spikes: logits[:, t] are for bin t+1 given bins <= t."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
            raise SpikevizError(f"d_model {cfg.d_model} must split into {cfg.n_heads} heads of "
                                f"even size")
        self.config = cfg
        n_feat = 1 + len(cfg.trace_taus)
        self.embed = nn.Linear(2 * n_feat if cfg.shared_units else n_feat * cfg.n_units,
                               cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 1 if cfg.shared_units else cfg.n_units)
        if not cfg.shared_units:
            # Each unit's own-history features straight to its logit: the d_model-wide stream
            # cannot carry 128 separate unit histories, and own history is the strongest cue.
            self.own = nn.Parameter(torch.zeros(n_feat, cfg.n_units))
        hd = cfg.d_model // cfg.n_heads
        self._inv_freq = cfg.rope_base ** (-np.arange(0, hd, 2) / hd)
        self._decay = torch.tensor([math.exp(-1.0 / t) for t in cfg.trace_taus]).view(-1, 1)
        self._gain = 1.0 - self._decay
        self.meta: dict = {}
        # Platt scaling of the logits, fitted after training (identity until then): focal and Dice
        # losses rank well but misstate probabilities, and sampling needs calibrated ones.
        self.calibration: tuple[float, float] = (1.0, 0.0)

    def _tokens(self, x: torch.Tensor, tr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features (B or B*N, L, F) and own-history features (B, L, 1+K, N)."""
        B, L, N = x.shape
        own = torch.cat((x.unsqueeze(2), torch.log(tr + TRACE_EPS) / 4.0), dim=2)
        if not self.config.shared_units:
            return own.flatten(2), own
        pop = torch.cat((x.mean(-1, keepdim=True), torch.log(tr.mean(-1) + TRACE_EPS) / 4.0),
                        dim=-1)                                              # (B, L, 1+K)
        feats = torch.cat((own.transpose(2, 3), pop.unsqueeze(2).expand(B, L, N, -1)), dim=-1)
        return feats.permute(0, 2, 1, 3).reshape(B * N, L, -1), own

    def _readout(self, h: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        B, L, _, N = own.shape
        out = self.head(self.ln_f(h))
        if not self.config.shared_units:
            return out + (own * self.own).sum(2)
        return out.view(B, N, L).transpose(1, 2)                             # (B, L, N)

    def forward(self, x: torch.Tensor, tr: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Logits (B, L - first, N) for bins first+1..L from spikes x (B, L, N) and their traces
        (B, L, K, N)."""
        B, L, N = x.shape
        if L > self.config.context:
            raise SpikevizError(f"window of {L} bins is longer than the context "
                                f"({self.config.context})")
        tokens, own = self._tokens(x, tr)
        h = self.drop(self.embed(tokens))
        cos, sin = (r.to(h.device) for r in self._rotation(0, L))
        for block in self.blocks:
            h = block(h, cos, sin)
        return self._readout(h[:, first:], own[:, first:])

    def start(self, n_units: int, traces: torch.Tensor | None = None) -> DecodeState:
        """An empty decode state for `n_units` units (traces (K, N) to continue a real past)."""
        cfg = self.config
        rows = n_units if cfg.shared_units else 1
        hd = cfg.d_model // cfg.n_heads
        shape = (rows, cfg.n_heads, cfg.context, hd)
        tr = torch.zeros(len(cfg.trace_taus), n_units) if traces is None else traces.float()
        return DecodeState(tr, [torch.zeros(shape) for _ in self.blocks],
                           [torch.zeros(shape) for _ in self.blocks],
                           weights=[b.step_weights() for b in self.blocks])

    def step(self, x: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Feed one bin x (N,) through the KV cache; logits (N,) for the next bin.

        The cache keeps the last `context` bins: the same sliding view the model had in training.
        Call it under torch.inference_mode() (generate does): no autograd bookkeeping per bin.
        """
        cfg = self.config
        N = x.shape[0]
        if cfg.trace_taus:
            self._update_traces(x, state)
        tokens, own = self._tokens(x.view(1, 1, N), state.traces.view(1, 1, -1, N))
        h = self._step_blocks(F.linear(tokens, self.embed.weight, self.embed.bias), state)
        state.pos += 1
        return self._readout(h, own).view(N)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
