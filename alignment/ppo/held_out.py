"""Held-out evaluation shared by PPO, DPO, GRPO and RLOO, so their numbers compare directly.

On prompts the policy never trained on:
- `gold`: mean gold score of greedy responses (the offline suite's checkers), the true
  alignment measure a proxy reward cannot fake;
- `kl_k1`, `kl_k3`: KL(policy || reference) per sequence, estimated from responses sampled
  from the policy at the training temperature (k1 and k3 of Schulman's note, summed over
  tokens). DPO has no rollouts of its own, so this is the one KL every method reports alike;
- `score`: the reward function's mean score of the greedy responses, when one is given;
- `length`, `eos_rate` of the sampled responses.

`paired_bootstrap_ci` gives the 95% interval of a gain measured on the same prompts.
"""

from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

import torch

from alignment.data.files import read_rows
from alignment.generation import generate
from alignment.ppo.kl import kl_estimate
from alignment.ppo.masks import masked_sum, truncate_after_eos
from alignment.ppo.rollout import encode_prompts, eos_ids, left_pad, policy_forward, sample_responses


def gold_scores(rows: Sequence[dict], responses: Sequence[str]) -> Optional[list[float]]:
    """Per-prompt gold scores, or None when the rows carry no suite metadata."""
    if not rows or not all(isinstance(r.get("metadata"), dict) and "family" in r["metadata"] for r in rows):
        return None
    from alignment.suite import gold_score

    return [gold_score(row["metadata"], text).score for row, text in zip(rows, responses)]


@torch.no_grad()
def sequence_kl(
    policy, reference_ctx: Callable, tokenizer, prompts: Sequence, max_new_tokens: int, temperature: float,
    batch_size: int = 64,
) -> dict[str, float]:
    """Sample from the policy and estimate KL(policy || reference) per sequence (k1 and k3).

    `reference_ctx()` is a context manager yielding the reference model (see
    actor_critic.reference_mode), so a LoRA policy is compared with its own base weights.
    """
    device = next(policy.parameters()).device
    eos = eos_ids(tokenizer, policy)
    encoded = encode_prompts(tokenizer, prompts)
    k1, k3, lengths, ended = [], [], [], []
    for start in range(0, len(encoded), batch_size):
        q_ids, q_mask = left_pad(encoded[start : start + batch_size], tokenizer.pad_token_id, device)
        raw = sample_responses(policy, q_ids, q_mask, max_new_tokens, temperature, eos, tokenizer.pad_token_id)
        r_ids, r_mask, has_eos = truncate_after_eos(raw, eos, tokenizer.pad_token_id)
        logp, _ = policy_forward(policy, q_ids, q_mask, r_ids, r_mask, temperature)
        with reference_ctx() as ref:
            ref_logp, _ = policy_forward(ref, q_ids, q_mask, r_ids, r_mask, temperature)
        k1 += masked_sum(kl_estimate(logp, ref_logp, "k1"), r_mask, dim=1).tolist()
        k3 += masked_sum(kl_estimate(logp, ref_logp, "k3"), r_mask, dim=1).tolist()
        lengths += r_mask.sum(dim=1).tolist()
        ended += has_eos.tolist()
    n = max(len(k1), 1)
    return {"kl_k1": sum(k1) / n, "kl_k3": sum(k3) / n, "length": sum(lengths) / n, "eos_rate": sum(ended) / n}


def evaluate_policy(
    policy,
    reference_ctx: Callable,
    tokenizer,
    rows: Sequence[dict],
    max_new_tokens: int,
    temperature: float = 1.0,
    reward_fn: Optional[Callable] = None,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[dict[str, float], dict]:
    """(metrics, details): gold, score, KL on held-out `rows`; details hold per-prompt gold and responses."""
    prompts = [row["prompt"] for row in rows]
    was_training = policy.training
    policy.eval()
    try:
        greedy = generate(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
        devices = [device.index or 0] if (device := next(policy.parameters()).device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            metrics = sequence_kl(policy, reference_ctx, tokenizer, prompts, max_new_tokens, temperature, batch_size)
    finally:
        policy.train(was_training)
    gold = gold_scores(rows, greedy)
    if gold is not None:
        metrics["gold"] = sum(gold) / len(gold)
    if reward_fn is not None:
        metrics["score"] = float(reward_fn(prompts, greedy).float().mean())
    return metrics, {"gold": gold, "responses": greedy}


def paired_bootstrap_ci(
    after: Sequence[float], before: Sequence[float], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean gain, low, high): percentile bootstrap of the mean paired difference."""
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    if not diffs:
        return float("nan"), float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1.0 - level) / 2
    lo = means[int(tail * samples)]
    hi = means[min(int((1.0 - tail) * samples), samples - 1)]
    return sum(diffs) / n, lo, hi


def load_held_out(recipe, path: str, max_prompts: int, stage: str) -> list[dict]:
    """Held-out prompt rows for the evaluation, or [] (with a note) when the file is absent."""
    from pathlib import Path

    from alignment.run_dir import resolve_data_path

    if not path or max_prompts <= 0:
        return []
    resolved = resolve_data_path(recipe, path)
    if not Path(resolved).exists():
        print(f"{stage}: no held-out prompts at {resolved} ({stage}.eval_prompts); held-out evaluation is off")
        return []
    return [row for row in read_rows(resolved) if "prompt" in row][:max_prompts]


def as_logged(metrics: dict, details: dict) -> dict:
    """`eval/<name>` metrics, plus the per-prompt gold list under `_gold` (kept out of the logs)."""
    out = {f"eval/{k}": v for k, v in metrics.items()}
    out["_gold"] = details.get("gold")
    return out


def gain_summary(final: dict, start: Optional[dict], samples: int = 2000, seed: int = 0) -> dict:
    """Final held-out figures, the starting policy's as `start/...`, and the gold gain with its 95% CI."""
    summary = {k: v for k, v in final.items() if not k.startswith("_")}
    if start:
        summary.update({f"start/{k[len('eval/'):]}": v for k, v in start.items() if k.startswith("eval/")})
    if final.get("_gold") and start and start.get("_gold"):
        gain, lo, hi = paired_bootstrap_ci(final["_gold"], start["_gold"], samples, seed)
        summary.update({"gold_gain": gain, "gold_gain_ci95": [lo, hi]})
    return summary
