"""The whole recipe: one YAML file describes a run from data to evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option
from alignment.recipe.data import DataConfig
from alignment.recipe.dpo import DPOConfig, OnlineRLConfig
from alignment.recipe.evaluation import EvalConfig
from alignment.recipe.labels import LabelsConfig
from alignment.recipe.model import ModelConfig
from alignment.recipe.pipeline import PipelineConfig
from alignment.recipe.ppo import PPOConfig
from alignment.recipe.reward import RewardConfig
from alignment.recipe.self_instruct import SelfInstructConfig
from alignment.recipe.sft import SFTConfig
from alignment.recipe.suite import SuiteConfig


@dataclass
class Recipe(Section):
    name: str = option("run", help="Run name; the run directory defaults to runs/<name>.")
    seed: int = option(0, help="Seed for data generation, sampling and training.", ge=0)
    output_dir: str = option("runs/{name}", help="Run directory; '{name}' is replaced by the run name.")
    model: ModelConfig = option(ModelConfig(), help="Base model and tokenizer.")
    suite: SuiteConfig = option(SuiteConfig(), help="Offline task suite (used by suite:* paths).")
    data: DataConfig = option(DataConfig(), help="Data sources, cleaning and mixing.")
    self_instruct: SelfInstructConfig = option(SelfInstructConfig(), help="`rlhf data generate`: Self-Instruct data.")
    sft: SFTConfig = option(SFTConfig(), help="Supervised fine-tuning.")
    labels: LabelsConfig = option(LabelsConfig(), help="Comparisons: simulated, human or from a file.")
    reward: RewardConfig = option(RewardConfig(), help="Reward model.")
    ppo: PPOConfig = option(PPOConfig(), help="PPO with KL control.")
    dpo: DPOConfig = option(DPOConfig(), help="Direct preference optimisation.")
    grpo: OnlineRLConfig = option(OnlineRLConfig(), help="GRPO (TRL) with our reward model.")
    rloo: OnlineRLConfig = option(OnlineRLConfig(), help="RLOO (TRL) with our reward model.")
    eval: EvalConfig = option(EvalConfig(), help="Regression evaluation.")
    pipeline: PipelineConfig = option(PipelineConfig(), help="Stages run by `rlhf run`.")
