"""Which stages `rlhf run` executes, in which order, and how many labeling rounds."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option

ALL_STAGES = ["data", "sft", "samples", "labels", "reward", "ppo", "dpo", "eval"]
ROUND_STAGES = ("samples", "labels", "reward", "ppo", "dpo")
"""The stages a labeling round repeats; the others run once for the whole run."""


@dataclass
class PipelineConfig(Section):
    stages: list[str] = option(list(ALL_STAGES), help=f"Stages in order; any of {ALL_STAGES}.")
    rounds: int = option(1, help="Labeling rounds: each new policy's samples go back to the labelers.", ge=1)
    round_overrides: dict[int, list[str]] = option(
        {}, help="Per-round settings, as overrides on the recipe: {2: [labels.candidates_per_prompt=4, "
                   "ppo.target_kl=1.0, 'pipeline.stages=[samples,labels,reward,ppo]']}. They win over the "
                   "recipe and the command line for that round; a round's pipeline.stages can drop "
                   "stages of the run's pipeline.stages, not add any.")
    smoke: bool = option(False, help="Shrink every stage to a few steps (tests, dry checks).")
