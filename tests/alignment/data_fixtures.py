"""Shared helpers for the data-stage tests: a tiny local tokenizer and recipes that use it.

The offline world's tokenizer would do as well, but building the world takes tens of
seconds; a byte-level BPE trained on a few hundred generated rows takes well under one.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignment.data.synthetic import clean_sft_rows
from alignment.recipe import load_recipe

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'system' -%}{{ message['content'] + '\\n' }}"
    "{%- else -%}{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}{%- endif -%}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)


def make_tokenizer(folder: Path) -> Path:
    """A 400-token byte-level BPE with a chat template, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [m["content"] for r in clean_sft_rows(300, seed=99) for m in r["messages"]]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return folder


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def recipe_for(tmp: Path, tokenizer: Path, sources: list[dict], eval_sets: list[str], *overrides: str):
    """A recipe that needs no offline world: local tokenizer, local files, no suite splits."""
    return load_recipe(
        None,
        [
            f"output_dir={tmp / 'run'}",
            f"model.name_or_path={tokenizer}",
            "model.max_length=256",
            f"data.sources={json.dumps(sources)}",
            f"data.eval_sets={json.dumps(eval_sets)}",
            "eval.prompts=[]",
            "data.report_plots=false",  # matplotlib is slow on a busy 2-core machine; one test draws them
            *overrides,
        ],
    )
