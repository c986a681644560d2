"""Masks over response tokens, and statistics that only see the tokens the mask keeps.

Every per-token tensor in PPO is [batch, response_len] with padding after each response's
end. Anything averaged over tokens (losses, whitening, KL) must ignore that padding, or the
statistics depend on how long the longest response in the batch happened to be.
"""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() if dim is None else (x * mask).sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the kept tokens; 0 (not NaN) when nothing is kept."""
    mask = mask.to(x.dtype)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the kept tokens (Bessel-corrected by default, as TRL and OpenRLHF do)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.to(x.dtype).sum()
        var = var * n / (n - 1).clamp_min(1.0)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the kept tokens; padded positions come out as 0.

    With `shift_mean=False` only the scale changes (used for rewards, whose sign matters).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    white = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        white = white + mean
    return white * mask.to(x.dtype)


def truncate_after_eos(
    response_ids: torch.Tensor, eos_token_id: int | list[int], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first EOS: (ids, mask, has_eos).

    The EOS token itself stays in the response and in the mask: choosing to stop is an action
    the policy took, and its logprob and value belong to the episode. Tokens after it become
    `pad_token_id` with mask 0. A response without EOS keeps every token (`has_eos` False, so
    that the caller can penalise it); a response whose first token is EOS has length 1; a batch
    of width 0 (no tokens generated) gives empty masks and `has_eos` False.
    """
    eos = torch.as_tensor(eos_token_id, device=response_ids.device).reshape(-1)
    is_eos = torch.isin(response_ids, eos)
    # number of EOS tokens strictly before each position: > 0 means "after the first EOS"
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    mask = eos_before == 0
    ids = response_ids.masked_fill(~mask, pad_token_id)
    return ids, mask.long(), is_eos.any(dim=1)


def first_eos_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Response lengths in tokens (EOS included) from a truncation mask."""
    return mask.long().sum(dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2... over real tokens; left pads get 0.

    A left-padded prompt then has the same positions as when it is alone in its batch, so
    padding changes neither logprobs nor values.
    """
    return (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)
