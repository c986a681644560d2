"""The offline world: generated task suite, tokenizer and tiny base model."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option


@dataclass
class TinyModelConfig(Section):
    vocab_size: int = option(512, help="BPE vocabulary trained on the suite.")
    hidden_size: int = option(128, help="Width of the tiny Llama.")
    intermediate_size: int = option(384, help="MLP width.")
    num_hidden_layers: int = option(4, help="Transformer blocks.")
    num_attention_heads: int = option(4, help="Attention heads.")
    max_position_embeddings: int = option(256, help="Longest sequence the model supports.")


@dataclass
class SuiteConfig(Section):
    n_sft: int = option(4000, help="Demonstrations generated for SFT.")
    n_prompts: int = option(2000, help="Prompts (no answer) for sampling candidates and RL.")
    n_eval: int = option(200, help="Held-out prompts per evaluation split.")
    demo_error_rate: float = option(
        0.3, help="Fraction of demonstrations that deliberately break a constraint or pad the answer."
    )
    heldout_families: list[str] = option(
        ["last_word"], help="Task families never seen in training; used for generalisation eval."
    )
    heldout_phrasings: int = option(
        1, help="Instruction phrasings per family kept out of training (robustness to wording)."
    )
    heldout_constraint_pairs: list[list[str]] = option(
        [["case", "end_phrase"]],
        help="Pairs of constraint types never combined in training; together they form the "
        "eval_heldout_constraints split (compositional generalisation).",
    )
    safety_fraction: float = option(
        0.075, help="Share of sft rows and prompts that are safety requests (refuse harmful, answer benign)."
    )
    tiny_model: TinyModelConfig = option(TinyModelConfig(), help="Shape of the local base model.")
