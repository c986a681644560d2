"""The PPO losses (Schulman et al. 2017, arXiv:1707.06347), averaged over valid tokens.

    ratio   = exp(logp - logp_old)
    L_pi    = mean max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))
    L_V     = 0.5 * mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)
    H       = -sum_x p(x) log p(x)   per token

`cliprange=None` turns clipping off (the plain importance-weighted policy gradient, or a
plain squared error for the value), which the tests use to check that clipping matters.
"""

from __future__ import annotations

from typing import Optional

import torch

from alignment.ppo.masks import masked_mean


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: Optional[float] = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss and its diagnostics (clip fraction, approx-KL, ratio)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    if cliprange is None:
        losses, clipped_more = unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
        losses, clipped_more = torch.maximum(unclipped, clipped), clipped > unclipped
    loss = masked_mean(losses, mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(clipped_more.to(logprobs.dtype), mask),
            # k3 estimate of KL(old || new), as in cleanrl's ppo.py: 0 exactly when ratio == 1
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            "ratio": masked_mean(ratio, mask),
            "ratio_max": (ratio * mask).max() if mask.any() else ratio.new_zeros(()),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: Optional[float] = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (the pessimistic max of clipped and unclipped errors)."""
    unclipped = (values - returns) ** 2
    if cliprange_value is None:
        losses, clipped_more = unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
        clipped = (v_clipped - returns) ** 2
        losses, clipped_more = torch.maximum(unclipped, clipped), clipped > unclipped
    loss = 0.5 * masked_mean(losses, mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean(clipped_more.to(values.dtype), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of softmax(logits), in nats."""
    log_z = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return log_z - (probs * logits).sum(dim=-1)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[token], without materialising the full log-softmax."""
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)
