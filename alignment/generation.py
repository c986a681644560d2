"""Batched generation from chat prompts: left padding, stop at EOS, seeded.

Shared by the SFT gold evaluation, candidate sampling for labelers and the regression
evaluation, so that every stage decodes the same way.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from alignment.data.rows import prompt_messages


def chat_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[str]:
    """Prompts rendered with the chat template, ready for the assistant's turn."""
    return [
        tokenizer.apply_chat_template(prompt_messages(p), tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    num_return_sequences: int = 1,
    top_k: int = 0,
    top_p: float = 1.0,
    progress: bool = False,
) -> list[str] | list[list[str]]:
    """Responses for `prompts`; a list per prompt when `num_return_sequences > 1`.

    Temperature 0 means greedy. Sampling is seeded through a forked RNG, so the caller's
    global random state is left as it was.
    """
    texts = chat_prompts(tokenizer, prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    sampling = temperature > 0
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_return_sequences=num_return_sequences,
    )
    if sampling:
        # explicit 0 and 1.0: otherwise a checkpoint's generation_config (top_k=50 by default) applies silently
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    try:
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            batches = range(0, len(texts), batch_size)
            for start in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
                enc = tokenizer(
                    texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(device)
                ids = model.generate(**enc, **kwargs)
                new = ids[:, enc["input_ids"].shape[1] :]
                out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    out = [t.strip() for t in out]
    if num_return_sequences == 1:
        return out
    n = num_return_sequences
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]
