"""Where comparisons come from: simulated annotators, humans in the app, or files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option


@dataclass
class AnnotatorConfig(Section):
    name: str = option(help="Persona name, stored as the labeler's user name.")
    temperature: float = option(0.1, help="Bradley-Terry temperature on gold-score differences.", gt=0)
    flip_prob: float = option(0.25, help="Probability that the judgment is flipped (AlpacaFarm used 0.25).", ge=0, le=1)
    tie_margin: float = option(
        0.0, help="Pairwise: say 'tie' when the gold scores differ by at most this (0: only when equal).", ge=0,
    )


@dataclass
class LabelsConfig(Section):
    source: Literal["simulated", "human", "file"] = option(
        "simulated", help="simulated annotators, human labelers in the app, or an existing file."
    )
    db: str = option("sqlite:///{output_dir}/labels/labels.db", help="SQLAlchemy URL of the label store.")
    campaign: str = option("{name}-round{round}", help="Campaign name in the store.")
    mode: Literal["pairwise", "ranking"] = option("pairwise", help="Pairwise comparison or k-wise ranking.")
    prompts: int = option(1000, help="Prompts sampled for candidate generation.", ge=1)
    balance_by: Optional[str] = option(
        None, help="Prompt field (a column, a dotted path, or a metadata key, e.g. family) whose values share the labelled prompts "
        "equally, so that a rare category such as safety requests is not drowned out; a value with fewer prompts "
        "than its share gives all it has. None: the first labels.prompts prompts."
    )
    candidates_per_prompt: int = option(4, help="Responses sampled per prompt (K).", ge=2)
    sample_temperature: float = option(1.0, help="Sampling temperature for candidates.", ge=0)
    max_new_tokens: int = option(32, help="Candidate length budget.", ge=1)
    sample_engine: Literal["hf", "vllm"] = option(
        "hf", help="What samples the candidates: 'hf' (transformers generate) or 'vllm' (needs the vllm extra, "
        "scripts/setup_vllm_env.sh)."
    )
    pairs_per_prompt: int = option(2, help="Pairs formed per prompt from the K candidates.", ge=1)
    overlap: int = option(1, help="Labelers per item.", ge=1)
    annotators: list[AnnotatorConfig] = option(
        [
            AnnotatorConfig(name="sim-careful", temperature=0.05, flip_prob=0.15),
            AnnotatorConfig(name="sim-typical", temperature=0.1, flip_prob=0.25),
            AnnotatorConfig(name="sim-noisy", temperature=0.2, flip_prob=0.35),
        ],
        help="Simulated annotator personas (source=simulated).",
    )
    file: Optional[str] = option(None, help="Preference or ranking file (source=file).")
    guidelines: str = option(
        "Prefer the response that does the task correctly and follows every instruction "
        "(case, format, required ending). Choose 'tie' only when both are equally good.",
        help="Guidelines shown to labelers.",
    )
    human_min_fraction: float = option(
        1.0, help="source=human: share of target judgments (items x overlap) needed before the run continues.", ge=0, le=1,
    )
    aggregation: Literal["majority", "all"] = option("all", help="Majority vote or every judgment kept.")
