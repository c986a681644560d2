"""Tiny checkpoints built in the test, for the evaluation tests that need no offline world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEXTS = [
    "Reverse the words: cat dog sun",
    "sun dog cat",
    "I cannot help with that.",
    "Sure. Ask what they need and offer your time.",
    "Give only the first word: red box cup",
    "red",
] * 4


def tiny_policy(folder: Path, seed: int = 0, vocab_size: int = 300, hidden: int = 32, texts: list[str] = TEXTS,
                sharpen: float = 1.0) -> str:
    """A save_pretrained tiny Llama + BPE tokenizer with a chat template (random weights).

    `sharpen` scales the final norm, i.e. the logits: random models then emit varied text
    instead of near-uniform noise, and two seeds differ visibly.
    """
    import torch

    from alignment.recipe.suite import TinyModelConfig
    from alignment.suite.model import create_model
    from alignment.suite.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size, 128)
    cfg = TinyModelConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128)
    model = create_model(cfg, tokenizer, seed)
    with torch.no_grad():
        model.model.norm.weight.mul_(sharpen)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_reward(folder: Path, policy_dir: str, seed: int = 0) -> str:
    """A reward checkpoint (random score head on the policy's backbone) with reward_stats.json."""
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    torch.manual_seed(seed)
    model = LlamaForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    model.config.pad_token_id = AutoTokenizer.from_pretrained(policy_dir).pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(folder)
    (folder / "reward_stats.json").write_text(json.dumps({"mean": 0.0, "std": 1.0, "n": 0}))
    return str(folder)


def write_prompts(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module", autouse=False)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two
    threads per process spin against each other (generation measured 20x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
