"""Training losses on next-bin logits: soft Dice, binary focal cross-entropy and BCE."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import SpikevizError

LOSSES = ("dice", "focal", "bce")


def soft_dice(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
              log: bool = False) -> torch.Tensor:
    """1 - (2 sum(p y) + smooth) / (sum(p) + sum(y) + smooth) over the whole batch; log1p of it if `log`.

    Takes probabilities: the sigmoid is applied once, by the caller (the reference code applied two).
    """
    dice = 1.0 - (2.0 * (probs * target).sum() + smooth) / (probs.sum() + target.sum() + smooth)
    return torch.log1p(dice) if log else dice


def focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
          alpha: float | None = None) -> torch.Tensor:
    """Mean binary focal cross-entropy -alpha_t (1 - p_t)^gamma log p_t (alpha_t = alpha for spikes)."""
    log_pt = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss.mean()


def bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None
        ) -> torch.Tensor:
    """Mean binary cross-entropy; `pos_weight` multiplies the spike terms."""
    pw = None if pos_weight is None else torch.tensor(float(pos_weight))
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)


def make_loss(name: str, **options) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A loss(logits, target) by name; `options` go to the loss (smooth/log, gamma/alpha, pos_weight)."""
    if name == "dice":
        return lambda logits, y: soft_dice(torch.sigmoid(logits), y, **options)
    if name == "focal":
        return lambda logits, y: focal(logits, y, **options)
    if name == "bce":
        return lambda logits, y: bce(logits, y, **options)
    raise SpikevizError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
