"""Tiny tokenizers and reward models built in the test, so that unit tests need no suite."""

from __future__ import annotations

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = "the a cat dog sat on mat red blue green sun moon reverse words answer yes no one two three".split()


def make_tokenizer(seed_words: list[str] = WORDS, vocab_size: int = 320, template: str = CHAT_TEMPLATE,
                   pad_is_eos: bool = False):
    """A BPE tokenizer trained on a few words, with a chat template and pad/eos tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(seed_words[i:] + seed_words[:i]) for i in range(len(seed_words))]
    tok.train_from_iterator(corpus * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>",
                                   pad_token="<eos>" if pad_is_eos else "<pad>")
    fast.chat_template = template
    return fast


def make_reward_model(tokenizer, seed: int = 0, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                         num_labels=1, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():  # a head big enough that different texts get visibly different rewards
        model.score.weight.normal_(0, 1.0)
    return model.eval()
