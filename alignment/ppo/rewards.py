"""From a reward model's score to the per-token rewards PPO maximises (Ziegler et al. 2019).

    score_i   = clip(normalised RM score, -c, c), or the missing-EOS penalty if no EOS
    r_{i,t}   = -beta * KL_{i,t}               for every response token t
    r_{i,T_i} += score_i                       on the last valid token

The score is normalised by the reward model's stored statistics (mean and std of its scores
on SFT responses) before it gets here, so a clip of c means "c standard deviations".
"""

from __future__ import annotations

from typing import Optional

import torch


def final_scores(
    scores: torch.Tensor, has_eos: torch.Tensor, clip: Optional[float], missing_eos_penalty: Optional[float]
) -> torch.Tensor:
    """Clipped scores, with the penalty in place of the score of every response that never ended."""
    out = scores.float()
    if clip is not None:
        out = out.clamp(-clip, clip)
    if missing_eos_penalty is not None:
        out = torch.where(has_eos.to(out.device), out, torch.full_like(out, missing_eos_penalty))
    return out


def kl_shaped_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards [B, T], non-score part [B, T]): -beta*KL per token plus the score at the last token.

    A response with no valid token (width-0 rollout) gets no reward at all.
    """
    mask = mask.to(kl.dtype)
    non_score = -beta * kl * mask
    rewards = non_score.clone()
    lengths = mask.sum(dim=1).long()
    rows = torch.nonzero(lengths > 0).squeeze(-1)
    rewards[rows, lengths[rows] - 1] += scores.to(rewards.dtype)[rows]
    return rewards, non_score
