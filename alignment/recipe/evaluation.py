"""Regression evaluation settings (`rlhf eval`, and the last stage of `rlhf run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from alignment.recipe.base import Section, option


@dataclass
class EvalConfig(Section):
    prompts: list[str] = option(
        [
            "suite:eval_seen",
            "suite:eval_heldout_family",
            "suite:eval_heldout_phrasing",
            "suite:eval_heldout_constraints",
            "suite:safety",
        ],
        help="Prompt sets to evaluate on: suite:<split> or files of rows with a 'prompt'.",
    )
    max_prompts_per_set: Optional[int] = option(None, help="Use only the first N prompts of each set (quick checks).", ge=1)
    samples_per_prompt: int = option(1, help="Generations per prompt (1 when decoding greedily).", ge=1)
    temperature: float = option(0.0, help="0 for greedy decoding.", ge=0)
    max_new_tokens: int = option(32, help="Response length budget.", ge=1)
    batch_size: int = option(64, help="Prompts per generation and scoring batch.", ge=1)
    bootstrap_samples: int = option(2000, help="Paired bootstrap resamples for the 95% CIs.", ge=1)
    kl_prompts: int = option(
        64, help="Prompts sampled at temperature 1 to estimate KL from the reference (0: no KL).", ge=0,
    )
    reference: Optional[str] = option(
        None,
        help="Reference policy for KL: a checkpoint, or a stage name of this run ('sft'); "
        "default: the SFT stage in `rlhf run`, the baseline in `rlhf eval`.",
    )
    retention_set: str = option(
        "eval_seen", help="Prompt set whose gold score measures capability retention (seen SFT families)."
    )
    report_examples: int = option(5, help="Biggest regressions and improvements shown in the report.", ge=0)
    cache_dir: Optional[str] = option(
        None, help="Generation cache folder; default ~/.cache/rlhf/generations (runs/<name>/eval/cache in `rlhf run`)."
    )
    gates: Optional[str] = option(None, help="YAML file of regression gates (default: configs/gates/default.yaml).")
