"""The Bradley–Terry pairwise loss that every reward model here is trained with.

Under Bradley–Terry, P(a ≻ b) = σ(r(a) − r(b)). A comparison i with reward difference
d_i = r(chosen_i) − r(rejected_i) contributes

    ℓ_i = −[ y_i · log σ(d_i − m_i) + (1 − y_i) · log σ(−(d_i − m_i)) ]

- y_i = 1 for a strict preference (the usual −log σ(d − m) of InstructGPT);
  y_i = 1/2 for a tie or a "both bad" judgment when those are kept (recipe
  `reward.ties: half`): the loss then pulls the two rewards together instead of apart.
- m_i is the optional margin (Llama 2: a larger margin for "significantly better"); it asks
  the chosen response to win by at least m_i. Ties have no margin.
- w_i is the pair's weight: 1/C(K,2) for the pairs expanded from one K-wise ranking, so that a
  ranking counts as one example (InstructGPT), else 1.

The batch loss is the weighted mean Σ w_i ℓ_i / Σ w_i, so a batch of ranking pairs takes
steps of the same size as a batch of plain pairs; only relative weights matter.
An optional centring term c · mean((r_c + r_r)²) (TRL's `center_rewards_coefficient`,
Eisenstein et al. 2023) keeps rewards near zero without changing which response wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    center_coefficient: float | None = None,
) -> torch.Tensor:
    """Weighted mean Bradley–Terry negative log-likelihood over a batch of comparisons.

    `target` is P(chosen ≻ rejected) as judged: 1 for a preference, 0.5 for a tie.
    """
    d = rewards_chosen - rewards_rejected
    if margin is not None:
        d = d - margin
    if target is None:
        nll = -F.logsigmoid(d)
    else:
        nll = -(target * F.logsigmoid(d) + (1 - target) * F.logsigmoid(-d))
    if weight is None:
        loss = nll.mean()
    else:
        loss = (weight * nll).sum() / weight.sum().clamp_min(torch.finfo(nll.dtype).tiny)
    if center_coefficient:
        loss = loss + center_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
    return loss


def preference_probability(rewards_a: torch.Tensor, rewards_b: torch.Tensor) -> torch.Tensor:
    """P(a ≻ b) under the model: σ(r(a) − r(b)); what calibration is checked against."""
    return torch.sigmoid(rewards_a - rewards_b)
