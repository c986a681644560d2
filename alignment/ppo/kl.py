"""KL between the policy and the reference, estimated from the policy's own samples.

For a token x sampled from the policy p, with r = q(x) / p(x) for the reference q
(J. Schulman, "Approximating KL Divergence", 2020, http://joschu.net/blog/kl-approx.html):

    k1 = -log r                unbiased, high variance, can be negative per token
    k2 = (log r)^2 / 2         biased, low variance, never negative
    k3 = (r - 1) - log r       unbiased, low variance, never negative

Summed over a response's tokens, each estimates the sequence-level KL(p || q).

`AdaptiveKLController` is the proportional controller of Ziegler et al. 2019 ("Fine-Tuning
Language Models from Human Preferences", arXiv:1909.08593, section 2.2): beta grows when the
measured KL is above target and shrinks when below, by at most 20% per horizon.
"""

from __future__ import annotations

from typing import Literal

import torch

Estimator = Literal["k1", "k2", "k3"]


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Estimator = "k1") -> torch.Tensor:
    """Per-token KL estimate from logprobs of the sampled tokens under policy and reference."""
    log_ratio = logprobs - ref_logprobs  # log p/q = -log r
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        # (r - 1) - log r with log r = -log_ratio; expm1 keeps precision when p ~ q
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (use k1, k2 or k3)")


class FixedKLController:
    """A constant beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current: float, n_steps: int) -> None:
        proportional_error = min(max(current / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
