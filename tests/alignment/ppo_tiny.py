"""A tiny world for the PPO/DPO/GRPO tests: a word-level tokenizer, a random Llama, prompts.

A vocabulary of a few words makes a trivially learnable reward ("say 'cat'") dense enough
that PPO visibly learns it in a handful of iterations on one CPU core.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

WORDS = "cat dog sun moon red blue one two three yes no the a say words".split()
SPECIALS = ["<pad>", "<|end|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(words: list[str] = WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<pad>",
                                   additional_special_tokens=SPECIALS[2:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_policy(path: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random tiny Llama and its tokenizer, saved as a save_pretrained folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def make_opinionated_policy(path: Path, seed: int = 0) -> Path:
    """A tiny policy whose generation_config.json shapes sampling as real checkpoints' do.

    SmolLM2-Instruct ships `repetition_penalty: 1.1` and many instruct models a temperature,
    top-k or top-p; here every one of them, plus an n-gram ban, a minimum length and a
    suppressed token, each strong enough to move the distribution. The LM head is scaled up so
    that the random model's logits are peaked: a repetition penalty on near-zero logits would
    change almost nothing.
    """
    from transformers import AutoModelForCausalLM

    make_policy(path, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    cat, dog = make_tokenizer().convert_tokens_to_ids(["cat", "dog"])
    model.generation_config.update(do_sample=True, temperature=0.5, top_k=4, top_p=0.6, repetition_penalty=1.8,
                                   no_repeat_ngram_size=3, min_new_tokens=3, suppress_tokens=[cat],
                                   bad_words_ids=[[dog]])
    model.save_pretrained(path)
    return Path(path)


def make_reward_model(path: Path, seed: int = 1, hidden: int = 16) -> Path:
    """A random reward model with its OWN tokenizer (another vocabulary order) and reward_stats.json."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = make_tokenizer(list(reversed(WORDS)) + ["zebra"])
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    (Path(path) / "reward_stats.json").write_text('{"mean": 0.5, "std": 2.0, "n": 10}')
    return Path(path)


def write_prompts(path: Path, n: int = 64, seed: int = 0) -> Path:
    """Prompt rows; those for held-out evaluation carry suite-like metadata (family `echo`)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        k = int(torch.randint(1, 4, (), generator=g))
        words = [WORDS[int(j)] for j in torch.randint(1, 13, (k,), generator=g)]
        rows.append({"prompt": "say " + " ".join(words), "metadata": {"id": f"p{i}"}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cat_reward(prompts, responses) -> torch.Tensor:
    """The trivially learnable reward: the share of response words that are 'cat'."""
    out = []
    for r in responses:
        words = r.split()
        out.append(sum(w == "cat" for w in words) / max(len(words), 1))
    return torch.tensor(out)


def tiny_overrides(tmp: Path, policy: Path, prompts: Path, **ppo) -> list[str]:
    base = {
        "policy": str(policy), "critic_init": "policy", "prompts": str(prompts), "eval_prompts": "",
        "total_episodes": 64, "rollout_batch_size": 16, "mini_batch_size": 8, "ppo_epochs": 2,
        "max_new_tokens": 8, "learning_rate": 3e-3, "kl_coef": 0.05, "adaptive_kl": False, "critic_warmup_steps": 0,
        "missing_eos_penalty": None,
        "save_every": 0, "sample_every": 0, "report_to": "[none]",
    }
    base.update(ppo)
    return [f"output_dir={tmp}", "seed=0"] + [f"ppo.{k}={'null' if v is None else v}" for k, v in base.items()]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: a model this small only loses time to thread hand-offs, badly so on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
