"""Losses against values computed by hand."""
import math

import pytest
import torch

from spikeviz.errors import SpikevizError
from spikeviz.models.losses import bce, focal, make_loss, soft_dice


def logit(p):
    return torch.log(torch.tensor(p) / (1 - torch.tensor(p)))


P = [0.9, 0.2, 0.6]
Y = torch.tensor([1.0, 0.0, 1.0])


def test_soft_dice_by_hand():
    # sum(p y) = 0.9 + 0.6 = 1.5, sum(p) = 1.7, sum(y) = 2: 1 - (3 + 1) / (3.7 + 1)
    expected = 1 - 4 / 4.7
    assert soft_dice(torch.tensor(P), Y).item() == pytest.approx(expected, rel=1e-6)
    assert soft_dice(torch.tensor(P), Y, log=True).item() == pytest.approx(math.log1p(expected),
                                                                           rel=1e-6)
    # smooth 0: 1 - 3 / 3.7
    assert soft_dice(torch.tensor(P), Y, smooth=0.0).item() == pytest.approx(1 - 3 / 3.7, rel=1e-6)


def test_dice_applies_the_sigmoid_once():
    loss = make_loss("dice")(logit(P), Y)
    assert loss.item() == pytest.approx(1 - 4 / 4.7, rel=1e-5)


def test_focal_by_hand():
    # p = 0.8 for a spike: p_t = 0.8; p = 0.3 for silence: p_t = 0.7
    logits, y = logit([0.8, 0.3]), torch.tensor([1.0, 0.0])
    terms = [0.2 ** 2 * -math.log(0.8), 0.3 ** 2 * -math.log(0.7)]
    assert focal(logits, y).item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    assert focal(logits, y, gamma=0.0).item() == pytest.approx(
        (-math.log(0.8) - math.log(0.7)) / 2, rel=1e-5)
    weighted = (0.25 * terms[0] + 0.75 * terms[1]) / 2
    assert focal(logits, y, alpha=0.25).item() == pytest.approx(weighted, rel=1e-5)


def test_bce_by_hand():
    logits, y = logit([0.8, 0.3]), torch.tensor([1.0, 0.0])
    assert bce(logits, y).item() == pytest.approx((-math.log(0.8) - math.log(0.7)) / 2, rel=1e-5)
    assert bce(logits, y, pos_weight=3.0).item() == pytest.approx(
        (-3 * math.log(0.8) - math.log(0.7)) / 2, rel=1e-5)


def test_losses_have_gradients_and_unknown_is_refused():
    logits = logit(P).requires_grad_()
    for name in ("dice", "focal", "bce"):
        make_loss(name)(logits, Y).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        logits.grad = None
    with pytest.raises(SpikevizError, match="unknown loss"):
        make_loss("mse")
