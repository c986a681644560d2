"""A byte-level BPE tokenizer trained on the suite, with a chat template.

Byte-level BPE (GPT-2 style) covers every string, so held-out phrasings and whatever a
policy generates round-trip exactly even when the merges were learnt on training text only.
The chat template marks the assistant's turn with `{% generation %}` so that TRL's
`assistant_only_loss` can mask everything else; the end-of-turn token is inside the
generation block, so the model learns to stop.
"""

from __future__ import annotations

from typing import Iterable

PAD, EOS, USER, ASSISTANT = "<|pad|>", "<|end|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, USER, ASSISTANT)

# <|user|>\n{content}\n<|assistant|>\n{content}<|end|>\n ; system text (if any) opens the
# first user turn, because the tiny model has no system role of its own.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int = 256):
    """Train byte-level BPE on `texts` and wrap it as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        additional_special_tokens=[USER, ASSISTANT],
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
