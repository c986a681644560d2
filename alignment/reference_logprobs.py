"""The DPO reference's log-probabilities, each distinct completion read once, after its prompt read once.

DPO needs log pi_ref(y | x) = sum_t log pi_ref(y_t | x, y_<t) for the chosen and the rejected
completion of every pair it trains on. TRL's `precompute_ref_log_probs` reads each pair as two
whole conversations. The pairs of a labeling round are every pair of K samples of a prompt,
so a prompt's completions recur in up to K - 1 pairs and its tokens (on SmolLM2 the chat
prompt is ~53 tokens, a completion <= 24) in every one of them. Here each prompt is read once
into a key/value cache (`reward.encoding.prefix_then_suffixes`, the reward model's prompt
sharing), each distinct completion continues from a copy of it, and the sums are handed to
TRL's DPOTrainer as its `ref_chosen_logps` / `ref_rejected_logps` columns.

The tokens are TRL's own (`prompt_ids`, `chosen_ids`, `rejected_ids` of its tokenized
dataset, cut at `max_length` as its collator cuts them), so the figures are those TRL would
compute, up to float rounding (tests/alignment/test_reference_logprobs.py compares them).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from transformers import DynamicCache

from reward.encoding import PrefixBatch, batches_of_groups, prefix_then_suffixes

Completion = tuple[tuple[int, ...], tuple[int, ...]]
"""(prompt ids, completion ids)"""


def completion_batch(groups: Sequence[tuple[tuple[int, ...], Sequence[tuple[int, ...]]]], pad_id: int) -> PrefixBatch:
    """Completions of each prompt as one group: the prompt but its last token is the shared prefix,
    and each suffix is that last token followed by the completion, so that every completion token
    is predicted inside the suffix forward."""
    for prompt, completions in groups:
        if len(prompt) < 2 or not all(completions):
            raise ValueError("each prompt needs at least 2 tokens and each completion at least 1")
    return PrefixBatch.of_parts([prompt[:-1] for prompt, _ in groups],
                                [[(prompt[-1], *c) for c in completions] for prompt, completions in groups], pad_id)


def completion_logprob_sums(model, batch: PrefixBatch) -> torch.Tensor:
    """sum_t log p(y_t | x, y_<t) for each suffix row of a `completion_batch`, differentiable:
    autograd flows through the prompt's cache, so a prompt's tokens get the summed gradient of
    all its completions, as when each conversation is read whole."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, lm_head = hf.base_model, hf.get_output_embeddings()
    _, hidden = prefix_then_suffixes(backbone, batch, DynamicCache(config=backbone.config),
                                     {"input_ids": batch.prefix_ids}, {"input_ids": batch.suffix_ids})
    logp = lm_head(hidden[:, :-1]).float().log_softmax(dim=-1)
    token_logp = logp.gather(-1, batch.suffix_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logp * batch.suffix_mask[:, 1:]).sum(dim=1)


def by_prompt(completions: Sequence[Completion]) -> list[tuple[tuple[int, ...], list[tuple[int, ...]]]]:
    """The distinct completions given, grouped by prompt in first-seen order."""
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for prompt, completion in dict.fromkeys(completions):
        groups.setdefault(prompt, []).append(completion)
    return list(groups.items())


def completion_logprobs(model, completions: Sequence[Completion], pad_id: int, rows_per_batch: int = 32,
                        progress: Callable[[int], None] | None = None) -> dict[Completion, float]:
    """sum_t log p(y_t | x, y_<t) under `model` (a causal LM) for every distinct (x, y) given,
    without gradients, whole prompts' completions `rows_per_batch` at a time. `progress(n)` is
    told how many completions each batch finished."""
    items = by_prompt(completions)
    device = next(model.parameters()).device
    found: dict[Completion, float] = {}
    for chosen in batches_of_groups([len(cs) for _, cs in items], rows_per_batch):
        batch_groups = [items[g] for g in chosen]
        with torch.no_grad():
            sums = completion_logprob_sums(model, completion_batch(batch_groups, pad_id).to(device)).tolist()
        keys = [(prompt, c) for prompt, cs in batch_groups for c in cs]
        found.update(zip(keys, sums))
        if progress is not None:
            progress(len(keys))
    return found


def pair_completions(example: dict, max_length: int | None) -> tuple[Completion, Completion]:
    """A TRL-tokenized pair's (prompt, chosen) and (prompt, rejected), cut at `max_length` as TRL's
    collator cuts prompt + completion with `truncation_mode="keep_start"`."""
    prompt = tuple(example["prompt_ids"])
    room = None if max_length is None else max(0, max_length - len(prompt))
    return ((prompt, tuple(example["chosen_ids"][:room])), (prompt, tuple(example["rejected_ids"][:room])))
