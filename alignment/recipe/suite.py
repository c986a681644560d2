"""The offline world: generated task suite, tokenizer and tiny base model."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option


@dataclass
class TinyModelConfig(Section):
    vocab_size: int = option(512, help="BPE vocabulary trained on the suite.", ge=1)
    hidden_size: int = option(128, help="Width of the tiny Llama.", ge=1)
    intermediate_size: int = option(384, help="MLP width.", ge=1)
    num_hidden_layers: int = option(4, help="Transformer blocks.", ge=1)
    num_attention_heads: int = option(4, help="Attention heads.", ge=1)
    max_position_embeddings: int = option(256, help="Longest sequence the model supports.", ge=1)

    def cross_checks(self) -> list[tuple[tuple[str, ...], str]]:
        """Attention heads split the width evenly."""
        if self.hidden_size % self.num_attention_heads:
            return [(("hidden_size", "num_attention_heads"), f"{self.hidden_size} must be a multiple of num_attention_heads="
                                    f"{self.num_attention_heads}")]
        return []


@dataclass
class SuiteConfig(Section):
    n_sft: int = option(4000, help="Demonstrations generated for SFT.", ge=1)
    n_prompts: int = option(2000, help="Prompts (no answer) for sampling candidates and RL.", ge=1)
    n_eval: int = option(200, help="Held-out prompts per evaluation split.", ge=1)
    demo_error_rate: float = option(
        0.3, help="Fraction of demonstrations that deliberately break a constraint or pad the answer.", ge=0, le=1,
    )
    heldout_families: list[str] = option(
        ["last_word"], help="Task families never seen in training; used for generalisation eval."
    )
    heldout_phrasings: int = option(
        1, help="Instruction phrasings per family kept out of training (robustness to wording).", ge=0,
    )
    heldout_constraint_pairs: list[list[str]] = option(
        [["case", "end_phrase"]],
        help="Pairs of constraint types never combined in training; together they form the "
        "eval_heldout_constraints split (compositional generalisation).",
    )
    safety_fraction: float = option(
        0.075, help="Share of sft rows and prompts that are safety requests (refuse harmful, answer benign).", ge=0, le=1,
    )
    tiny_model: TinyModelConfig = option(TinyModelConfig(), help="Shape of the local base model.")
