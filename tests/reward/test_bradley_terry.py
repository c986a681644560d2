"""The Bradley–Terry loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from reward.bradley_terry import bradley_terry_loss, preference_probability

CHOSEN = torch.tensor([2.0, 0.0])
REJECTED = torch.tensor([1.0, 1.0])


def test_plain_loss_is_mean_negative_log_sigmoid():
    # pair 1: d = 1 -> log(1 + e^-1) = 0.313262; pair 2: d = -1 -> log(1 + e) = 1.313262
    assert bradley_terry_loss(CHOSEN, REJECTED).item() == pytest.approx((0.313262 + 1.313262) / 2, abs=1e-6)


def test_margin_weight_and_tie_by_hand():
    margin = torch.tensor([0.5, 0.0])
    weight = torch.tensor([1.0, 3.0])
    target = torch.tensor([1.0, 0.5])  # the second comparison is a tie
    # pair 1: d - m = 0.5 -> -log σ(0.5) = log(1 + e^-0.5) = 0.474077
    # pair 2 (tie): -(½ log σ(-1) + ½ log σ(1)) = ½ (1.313262 + 0.313262) = 0.813262
    # weighted mean: (1 * 0.474077 + 3 * 0.813262) / 4 = 0.728466
    loss = bradley_terry_loss(CHOSEN, REJECTED, margin=margin, weight=weight, target=target)
    assert loss.item() == pytest.approx(0.728466, abs=1e-6)


def test_centering_term_is_added():
    # c * mean((2+1)^2, (0+1)^2) = 0.1 * 5 = 0.5
    plain = bradley_terry_loss(CHOSEN, REJECTED).item()
    assert bradley_terry_loss(CHOSEN, REJECTED, center_coefficient=0.1).item() == pytest.approx(plain + 0.5, abs=1e-6)


def test_tie_loss_is_minimal_at_equal_rewards_and_gradient_pulls_together():
    r_c = torch.tensor([1.5], requires_grad=True)
    r_r = torch.tensor([0.0], requires_grad=True)
    loss = bradley_terry_loss(r_c, r_r, target=torch.tensor([0.5]))
    loss.backward()
    assert r_c.grad.item() > 0 > r_r.grad.item()  # descent lowers r_c and raises r_r
    at_equal = bradley_terry_loss(torch.zeros(1), torch.zeros(1), target=torch.tensor([0.5]))
    assert at_equal.item() == pytest.approx(math.log(2), abs=1e-6) and at_equal.item() < loss.item()


def test_preference_probability():
    assert preference_probability(torch.tensor([1.0]), torch.tensor([1.0])).item() == 0.5
    assert preference_probability(torch.tensor([math.log(3)]), torch.tensor([0.0])).item() == pytest.approx(0.75)
