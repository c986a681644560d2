"""DPO, GRPO and RLOO hyper-parameters (TRL trainers)."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.recipe.base import Section, option
from alignment.recipe.sft import LoraConfig


@dataclass
class DPOConfig(Section):
    loss_type: str = option("sigmoid", help="TRL DPO loss: sigmoid, ipo, hinge, robust, ...")
    beta: float = option(0.1, help="Strength of the implicit KL to the reference.")
    epochs: float = option(2.0, help="Passes over the pairs.")
    batch_size: int = option(32, help="Pairs per batch.")
    learning_rate: float = option(5e-4, help="Peak learning rate.")
    lora: LoraConfig = option(LoraConfig(), help="LoRA policy.")
    report_to: list[str] = option(["tensorboard"], help="Loggers.")


@dataclass
class OnlineRLConfig(Section):
    total_episodes: int = option(2048, help="Prompts rolled out over the whole run.")
    num_generations: int = option(4, help="Samples per prompt (group size).")
    batch_size: int = option(16, help="Per-device batch size.")
    learning_rate: float = option(3e-4, help="Peak learning rate.")
    beta: float = option(0.05, help="KL coefficient against the reference.")
    temperature: float = option(1.0, help="Sampling temperature.")
    max_new_tokens: int = option(32, help="Response length budget.")
    lora: LoraConfig = option(LoraConfig(), help="LoRA policy.")
    report_to: list[str] = option(["tensorboard"], help="Loggers.")
