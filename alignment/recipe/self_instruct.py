"""Self-Instruct (Wang et al. 2023): grow an instruction set from a seed pool with a model.

`rlhf data generate <recipe>` runs it and writes `runs/<name>/self_instruct/train.jsonl`,
which a recipe then names as a data source (`path: self_instruct:train`), so that the data
stage inspects, cleans, decontaminates and mixes it like any other source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from alignment.recipe.base import Section, option

BANNED_WORDS = ["image", "images", "picture", "pictures", "graph", "graphs", "file", "files", "draw", "plot",
                "video", "audio", "flowchart", "diagram"]
"""Self-Instruct's list of what a text-only model cannot do (its "map" and "go to" are left out:
the offline suite's tasks use "map" as an ordinary word)."""

GENERATE_TEMPLATE = (
    "Here are some example tasks:\n{examples}\n\nWrite one new task of the same kind, different from all of "
    "these. Reply with the task only."
)


@dataclass
class SelfInstructConfig(Section):
    seeds: str = option("suite:sft", help="Seed pool: suite:<split> or a file of SFT or prompt rows (their user turns).")
    max_seeds: Optional[int] = option(None, help="Use only the first N seed rows (None: all).", ge=1)
    generator: Optional[str] = option(
        None, help="Model that writes instructions and responses: a folder, hub id or offline:<name>. "
        "None: the recipe's base model (the policy)."
    )
    dtype: str = option("bfloat16-if-native", help="The generator's weights' dtype (see model.dtype).")
    rounds: int = option(2, help="Rounds; the pool grows by each round's kept instructions.", ge=1)
    per_round: int = option(64, help="Instructions proposed per round (before filtering).", ge=1)
    in_context: int = option(4, help="Examples shown per proposal, sampled from the pool.", ge=1)
    machine_in_context: int = option(
        1, help="Of those, how many come from earlier rounds' generated instructions once there are some "
        "(Self-Instruct: 2 of 8).", ge=0,
    )
    template: str = option(GENERATE_TEMPLATE, help="Proposal prompt (user turn); {examples} is the numbered list.")
    temperature: float = option(1.0, help="Sampling temperature of proposals.", ge=0)
    top_p: float = option(0.95, help="Nucleus sampling of proposals.", gt=0, le=1)
    max_new_tokens: int = option(48, help="Length budget of a proposed instruction.", ge=1)
    response_temperature: float = option(0.0, help="Temperature of the responses (0: greedy).", ge=0)
    response_max_new_tokens: int = option(32, help="Length budget of a response.", ge=1)
    rouge_threshold: float = option(
        0.7, help="Drop a proposal whose ROUGE-L F1 with any pool instruction is at least this (Self-Instruct's 0.7).",
        gt=0, le=1,
    )
    min_words: int = option(3, help="Drop instructions with fewer words.", ge=1)
    max_words: int = option(150, help="Drop instructions with more words.", ge=1)
    banned_words: list[str] = option(list(BANNED_WORDS), help="Drop instructions naming any of these (format rule).")
    batch_size: int = option(16, help="Generation batch size.", ge=1)
