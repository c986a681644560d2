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
    comparisons: list[str] = option(
        [],
        help="Preference or ranking files to train on. Empty: the labels stage's export "
        "(<output_dir>/labels/comparisons.jsonl), or labels.file when labels.source=file; "
        "data.preference_sources are always added.",
    )
    epochs: float = option(2.0, help="Passes over the comparisons.", gt=0)
    max_steps: int = option(-1, help="Stop after this many optimiser steps (-1: use epochs).", ge=1, also=(-1,))
    batch_size: int = option(16, help="Prompts per batch; all comparisons of a prompt share one batch (InstructGPT).", ge=1)
    learning_rate: float = option(1e-3, help="Peak learning rate.", gt=0)
    lr_scheduler: str = option("linear", help="transformers scheduler name.")
    warmup_ratio: float = option(0.05, help="Share of steps spent warming up.", ge=0, le=1)
    weight_decay: float = option(0.0, help="AdamW weight decay.", ge=0)
    use_margin: bool = option(True, help="Subtract the row's margin inside the Bradley-Terry sigmoid.")
    ties: Literal["exclude", "half"] = option(
        "exclude", help="Tie and both-bad judgments: dropped (counted), or trained towards P = 1/2."
    )
    center_rewards_coefficient: Optional[float] = option(
        None, help="Weight of the mean((r_c + r_r)^2) term that keeps rewards near 0 (TRL; 0.01 is typical).", ge=0,
    )
    eval_fraction: float = option(0.1, help="Share of prompts whose comparisons are held out (accuracy, early stopping).", ge=0, lt=1)
    early_stopping_patience: int = option(3, help="Evaluations without accuracy gain before stopping (0: off).", ge=0)
    eval_steps: int = option(50, help="Evaluate (and checkpoint) every N steps.", ge=1)
    logging_steps: int = option(10, help="Log every N steps.", ge=1)
    lora: LoraConfig = option(LoraConfig(), help="Parameter-efficient training.")
    share_prompt_prefix: bool = option(
        True, help="Read the prompt a prompt's responses share once per step and copy its key/value cache to each "
        "response (same rewards and gradients, fewer tokens). Needs a model with a standard KV cache; off with "
        "gradient_checkpointing, which drops caches."
    )
    cache_frozen_trunk: bool = option(
        True, help="With LoRA on the last blocks (lora.last_layers) and share_prompt_prefix: keep each training "
        "prompt's hidden states below the first adapted block from the first epoch, so that later epochs run only "
        "the adapted blocks (same rewards and gradients; memory: about 0.6 MB per prompt of 8 responses on SmolLM2)."
    )
    gradient_checkpointing: bool = option(False, help="Trade compute for memory (TRL's RewardConfig default is on).")
    report_to: list[str] = option(["tensorboard"], help="Loggers.")
    normalize_samples: int = option(256, help="Reference (SFT) responses scored to compute the reward mean and std.", ge=2)
    category_column: Optional[str] = option(
        None, help="Column for per-category accuracy (a key or metadata.<key>); default: suite family and constraints."
    )
    bootstrap_samples: int = option(2000, help="Bootstrap resamples for the accuracy CI.", ge=1)
    gold_test_prompts: str = option(
        "suite:eval_seen",
        help="Offline suite: unseen prompts whose SFT samples give the gold test (every gold-separated pair); "
        "empty: off.",
    )
    gold_test_samples: int = option(8, help="SFT samples per gold-test prompt (at labels.sample_temperature).", ge=0)
