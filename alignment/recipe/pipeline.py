"""Which stages `rlhf run` executes, in which order, and how many labeling rounds."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option

ALL_STAGES = ["data", "sft", "samples", "labels", "reward", "ppo", "dpo", "eval"]


@dataclass
class PipelineConfig(Section):
    stages: list[str] = option(list(ALL_STAGES), help=f"Stages in order; any of {ALL_STAGES}.")
    rounds: int = option(1, help="Labeling rounds: each new policy's samples go back to the labelers.", ge=1)
    smoke: bool = option(False, help="Shrink every stage to a few steps (tests, dry checks).")
