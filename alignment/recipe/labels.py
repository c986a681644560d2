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


JUDGE_TEMPLATE = (
    "Judge two responses to a request.\n{principles}\n\nRequest:\n{prompt}\n\nResponse A:\n{a}\n\n"
    "Response B:\n{b}\n\nWhich response is better? Answer A or B."
)


@dataclass
class AIJudgeConfig(Section):
    """The AI annotator: a model that judges candidate pairs through the label store."""

    name: str = option("ai-judge", help="User name of the AI annotator in the label store (its kind is 'ai').")
    model: Optional[str] = option(
        None, help="Judge model: a causal LM folder, hub id or offline:<name> (scored by the logprobs of the verdict "
        "tokens), or a reward-model folder (scored by its reward difference). None: the recipe's base model."
    )
    dtype: str = option("bfloat16-if-native", help="Judge weights' dtype (see model.dtype; bfloat16 is fine for "
                       "judging where it is native, float32 to be exact).")
    template: str = option(
        JUDGE_TEMPLATE, help="Judge prompt (the user turn, rendered with the judge's chat template); must contain "
        "{prompt}, {a}, {b}; {principles} is replaced by the principles, one per line."
    )
    principles: Optional[str] = option(
        "configs/principles/helpful_harmless.yaml",
        help="Principles file (a YAML list of {name, description, critique, revision}); the judge prompt lists "
        "every principle's description. None: no principles in the prompt.",
    )
    swap: bool = option(
        True, help="Judge each pair in both orders (A/B and B/A) and average; a verdict whose winner changes with "
        "the order is a tie. False: one order, as the store shows it."
    )
    batch_size: int = option(16, help="Pairs judged per forward pass (each pair is 2 sequences with swap).", ge=1)
    max_length: int = option(512, help="Judge prompts longer than this many tokens are cut from the left.", ge=16)


@dataclass
class CritiqueConfig(Section):
    """Constitutional AI's critique-and-revise (Bai et al. 2022), stored as AI judgments."""

    principles: str = option("configs/principles/helpful_harmless.yaml",
                             help="Principles file: a YAML list of {name, description, critique, revision}.")
    model: Optional[str] = option(None, help="Model that answers, critiques and revises. None: the recipe's base model.")
    dtype: str = option("bfloat16-if-native", help="Its weights' dtype (see model.dtype).")
    prompts: int = option(64, help="Prompts of the suite's prompts split (first N, or balanced by labels.balance_by).", ge=1)
    prompts_file: Optional[str] = option(None, help="Prompt rows to use instead of suite:prompts.")
    rounds: int = option(1, help="Critique-then-revise rounds (K); each round revises the previous revision.", ge=1)
    principles_per_item: int = option(1, help="Principles sampled per item and round (seeded per item).", ge=1)
    temperature: float = option(0.0, help="Sampling temperature of answers, critiques and revisions (0: greedy).", ge=0)
    max_new_tokens: int = option(48, help="Length budget of the original answer and of each revision.", ge=1)
    critique_max_new_tokens: int = option(48, help="Length budget of each critique.", ge=1)
    batch_size: int = option(16, help="Items generated per batch.", ge=1)
    annotator: str = option("ai-critique", help="User name (kind 'ai') that stores the (revision > original) judgments.")
    campaign: str = option("{name}-critique", help="Campaign the pairs are stored in.")


@dataclass
class LabelsConfig(Section):
    source: Literal["simulated", "human", "file", "ai", "simulated+ai"] = option(
        "simulated", help="simulated annotators, human labelers in the app, an existing file, the AI annotator "
        "(labels.ai), or the simulated personas and the AI annotator sharing the campaign."
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
    ai: AIJudgeConfig = option(AIJudgeConfig(), help="The AI annotator (source=ai or simulated+ai, `rlhf label judge`).")
    critique: CritiqueConfig = option(CritiqueConfig(), help="`rlhf label critique`: critique-and-revise pairs.")
