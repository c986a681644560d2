"""Regression evaluation settings (`rlhf eval`, and the last stage of `rlhf run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from alignment.recipe.base import Section, option


@dataclass
class EvalConfig(Section):
    prompts: list[str] = option(
        ["suite:eval_seen", "suite:eval_heldout_family", "suite:eval_heldout_phrasing", "suite:safety"],
        help="Prompt sets to evaluate on.",
    )
    samples_per_prompt: int = option(1, help="Generations per prompt.")
    temperature: float = option(0.0, help="0 for greedy decoding.")
    max_new_tokens: int = option(32, help="Response length budget.")
    bootstrap_samples: int = option(2000, help="Paired bootstrap resamples for the 95% CIs.")
    gates: Optional[str] = option(None, help="YAML file of regression gates.")
