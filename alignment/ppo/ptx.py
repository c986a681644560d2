"""PPO-ptx (Ouyang et al. 2022, section 3.5): mix the SFT loss into PPO against forgetting.

    loss = PPO loss + ptx_coef * mean cross-entropy of demonstration completions

The demonstrations are the ones SFT trained on (the cleaned mixture when the data stage ran,
else `data.sources`), tokenized with the policy's chat template, the loss on the assistant's
reply only. Batches cycle through them in a seeded order.
"""

from __future__ import annotations

import random
from typing import Iterator

import torch

from alignment.data.rows import sft_messages


def encode_demonstration(tokenizer, row: dict, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) with -100 on everything but the final assistant reply."""
    messages = sft_messages(row)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    labels = [-100] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids):]
    return ids, labels


class PtxBatches:
    """An endless, seeded stream of right-padded demonstration batches."""

    def __init__(self, tokenizer, rows: list[dict], batch_size: int, max_length: int, seed: int, device):
        self.examples = [encode_demonstration(tokenizer, r, max_length) for r in rows]
        self.examples = [e for e in self.examples if any(label != -100 for label in e[1])]
        if not self.examples:
            raise ValueError("no demonstration has a reply left after truncation to model.max_length")
        self.batch_size, self.pad, self.device = batch_size, tokenizer.pad_token_id, device
        self.rng = random.Random(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            order = list(range(len(self.examples)))
            self.rng.shuffle(order)
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield self._collate([self.examples[i] for i in order[start : start + self.batch_size]])

    def _collate(self, batch) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (x, y) in enumerate(batch):
            ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device), "labels": labels.to(self.device)}


def ptx_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch, use_cache=False).loss
