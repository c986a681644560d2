"""Reward-model training hyper-parameters (reward/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option
from alignment.recipe.sft import LoraConfig


@dataclass
class RewardConfig(Section):
    init_from: Literal["sft", "base"] = option("sft", help="Initialise the backbone from the SFT checkpoint or the base model.")
    model_name_or_path: Optional[str] = option(None, help="Explicit backbone; overrides init_from.")
    epochs: float = option(2.0, help="Passes over the comparisons.")
    batch_size: int = option(32, help="Pairs per batch.")
    learning_rate: float = option(1e-3, help="Peak learning rate.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    use_margin: bool = option(True, help="Subtract the row's margin inside the Bradley-Terry sigmoid.")
    ties: Literal["exclude", "half"] = option("exclude", help="How tie judgments enter the loss.")
    eval_fraction: float = option(0.1, help="Comparisons held out for accuracy and early stopping.")
    early_stopping_patience: int = option(3, help="Evaluations without accuracy gain before stopping.")
    eval_steps: int = option(50, help="Evaluate every N steps.")
    lora: LoraConfig = option(LoraConfig(), help="Parameter-efficient training.")
    report_to: list[str] = option(["tensorboard"], help="Loggers.")
    normalize_samples: int = option(256, help="SFT responses scored to compute the reward mean and std.")
