"""Held-out evaluation shared by PPO, DPO, GRPO and RLOO, so their numbers compare directly.

On prompts the policy never trained on:
- `gold`: mean gold score of greedy responses (the offline suite's checkers), the true
  alignment measure a proxy reward cannot fake;
- `gold_sampled`: mean gold of the responses sampled at the training temperature for the KL
  estimate (`samples_per_prompt` per prompt, averaged per prompt; no extra generation). It is
  what RL optimises and what the pipeline's report compares; greedy gold can hide a gain when
  greedy decoding already meets what the preferences teach. Several samples per prompt,
  because the baseline is drawn once per run with a fixed seed: with one sample, one unlucky
  draw (0.436, where the eval stage's 4 samples gave 0.455) biased every run's gain alike;
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
from alignment.models import save_model
from alignment.ppo.actor_critic import reference_mode
from alignment.ppo.kl import kl_estimate
from alignment.ppo.masks import masked_sum, truncate_after_eos
from alignment.ppo.rollout import decode_responses, encode_prompts, eos_ids, left_pad, policy_forward, sample_responses
from alignment.run_dir import resolve_data_path
from alignment.suite import gold_score


def gold_scores(rows: Sequence[dict], responses: Sequence[str]) -> Optional[list[float]]:
    """Per-prompt gold scores, or None when the rows carry no suite metadata."""
    if not rows or not all(isinstance(r.get("metadata"), dict) and "family" in r["metadata"] for r in rows):
        return None

    return [gold_score(row["metadata"], text).score for row, text in zip(rows, responses)]


@torch.no_grad()
def sequence_kl(
    policy, reference_ctx: Callable, tokenizer, prompts: Sequence, max_new_tokens: int, temperature: float,
    batch_size: int = 64,
    texts: Optional[list] = None,
) -> dict[str, float]:
    """Sample from the policy and estimate KL(policy || reference) per sequence (k1 and k3).

    The decoded samples are appended to `texts` when a list is given.

    `reference_ctx()` is a context manager yielding the reference model (see
    actor_critic.reference_mode), so a LoRA policy is compared with its own base weights.
    """
    device = next(policy.parameters()).device
    eos = eos_ids(tokenizer, policy)
    encoded = encode_prompts(tokenizer, prompts)
    k1, k3, lengths, ended = [], [], [], []
    for start in range(0, len(encoded), batch_size):
        q_ids, q_mask = left_pad(encoded[start : start + batch_size], tokenizer.pad_token_id, device)
        raw, _ = sample_responses(policy, q_ids, q_mask, max_new_tokens, temperature, eos, tokenizer.pad_token_id)
        r_ids, r_mask, has_eos = truncate_after_eos(raw, eos, tokenizer.pad_token_id)
        logp, _ = policy_forward(policy, q_ids, q_mask, r_ids, r_mask, temperature)
        with reference_ctx() as ref:
            ref_logp, _ = policy_forward(ref, q_ids, q_mask, r_ids, r_mask, temperature)
        k1 += masked_sum(kl_estimate(logp, ref_logp, "k1"), r_mask, dim=1).tolist()
        k3 += masked_sum(kl_estimate(logp, ref_logp, "k3"), r_mask, dim=1).tolist()
        lengths += r_mask.sum(dim=1).tolist()
        ended += has_eos.tolist()
        if texts is not None:
            texts += decode_responses(tokenizer, r_ids, r_mask)
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
    samples_per_prompt: int = 4,
) -> tuple[dict[str, float], dict]:
    """(metrics, details): gold, score, KL on held-out `rows`; details hold per-prompt gold and responses."""
    prompts = [row["prompt"] for row in rows]
    k = max(1, samples_per_prompt)
    was_training = policy.training
    policy.eval()
    try:
        greedy = generate(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
        devices = [device.index or 0] if (device := next(policy.parameters()).device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            sampled: list[str] = []
            metrics = sequence_kl(policy, reference_ctx, tokenizer, [p for p in prompts for _ in range(k)],
                                  max_new_tokens, temperature, batch_size, texts=sampled)
    finally:
        policy.train(was_training)
    gold = gold_scores(rows, greedy)
    each = gold_scores([row for row in rows for _ in range(k)], sampled)
    gold_sampled = None if each is None else [sum(each[i * k:(i + 1) * k]) / k for i in range(len(rows))]
    if gold is not None:
        metrics["gold"] = sum(gold) / len(gold)
        metrics["gold_sampled"] = sum(gold_sampled) / len(gold_sampled)
    if reward_fn is not None:
        metrics["score"] = float(reward_fn(prompts, greedy).float().mean())
    return metrics, {"gold": gold, "gold_sampled": gold_sampled, "responses": greedy}


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
    out["_gold_sampled"] = details.get("gold_sampled")
    return out


def gain_summary(final: dict, start: Optional[dict], samples: int = 2000, seed: int = 0) -> dict:
    """Final held-out figures, the starting policy's as `start/...`, and the gold gain with its 95% CI."""
    summary = {k: v for k, v in final.items() if not k.startswith("_")}
    if start:
        summary.update({f"start/{k[len('eval/'):]}": v for k, v in start.items() if k.startswith("eval/")})
    for key, name in (("_gold", "gold_gain"), ("_gold_sampled", "gold_sampled_gain")):
        if final.get(key) and start and start.get(key):
            gain, lo, hi = paired_bootstrap_ci(final[key], start[key], samples, seed)
            summary.update({name: gain, f"{name}_ci95": [lo, hi]})
    return summary


def finish_trained_policy(trainer, held_out: Callable, reference, tokenizer, out, logger, start: dict, recipe,
                          lora: bool) -> dict:
    """After a TRL trainer (DPO, GRPO, RLOO) on the main process: evaluate the trained policy on
    the held-out prompts against `reference`, log it, save it (with LoRA: the adapter, then the
    merged model) and return the gain summary over `start`."""
    policy = trainer.accelerator.unwrap_model(trainer.model)
    final = held_out(policy, lambda: reference_mode(policy, reference))
    logger.log(trainer.state.global_step, {k: v for k, v in final.items() if not k.startswith("_")})
    if lora:
        policy.save_pretrained(out / "adapter")
        policy = policy.merge_and_unload()
    save_model(policy, tokenizer, out)
    return gain_summary(final, start, recipe.eval.bootstrap_samples, recipe.seed)
