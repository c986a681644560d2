"""Supervised fine-tuning hyper-parameters (mapped onto TRL's SFTConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from alignment.recipe.base import Section, option


@dataclass
class LoraConfig(Section):
    enabled: bool = option(False, help="Train LoRA adapters instead of all weights.")
    r: int = option(16, help="LoRA rank.", ge=1)
    alpha: int = option(32, help="LoRA alpha.", gt=0)
    dropout: float = option(0.0, help="LoRA dropout (SFT and reward; PPO, DPO, GRPO and RLOO turn every dropout off).", ge=0, lt=1)
    target_modules: Optional[list[str]] = option(
        None, help="Modules to adapt; default: all linear layers ('all-linear')."
    )
    last_layers: Optional[int] = option(
        None, help="Adapt only the last N transformer blocks (default: all). Backward then stops at the "
        "lowest adapted block, so a step costs little more than its forward: on SmolLM2-135M (30 blocks) "
        "on one AVX2 CPU core, N=8 trained 8 x 128 tokens in 10.8 s against 16.6 s for all 30 blocks.", ge=1,
    )


@dataclass
class SFTConfig(Section):
    epochs: float = option(4.0, help="Passes over the demonstrations.", gt=0)
    max_steps: int = option(-1, help="Stop after this many optimiser steps (-1: use epochs).", ge=1, also=(-1,))
    batch_size: int = option(32, help="Per-device batch size.", ge=1)
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimiser step.", ge=1)
    learning_rate: float = option(2e-3, help="Peak learning rate.", gt=0)
    lr_scheduler: str = option("cosine", help="transformers scheduler name.")
    warmup_ratio: float = option(0.05, help="Share of steps spent warming up.", ge=0, le=1)
    weight_decay: float = option(0.0, help="AdamW weight decay.", ge=0)
    assistant_only_loss: bool = option(True, help="Compute the loss on assistant tokens only.")
    packing: bool = option(False, help="Pack several examples per sequence.")
    gradient_checkpointing: bool = option(False, help="Trade compute for memory.")
    lora: LoraConfig = option(LoraConfig(), help="Parameter-efficient fine-tuning.")
    eval_steps: int = option(100, help="Evaluate the loss every N steps.", ge=1)
    save_steps: int = option(100, help="Checkpoint every N steps (for resume).", ge=1)
    save_total_limit: int = option(2, help="Intermediate checkpoints kept.", ge=1)
    logging_steps: int = option(10, help="Log every N steps.", ge=1)
    report_to: list[str] = option(["tensorboard"], help="Loggers: tensorboard, wandb, none.")
    gold_eval_prompts: int = option(200, help="Held-out prompts scored by the gold checkers after training.", ge=0)
    gold_eval_temperature: float = option(0.0, help="0 for greedy decoding in the gold evaluation.", ge=0)
    max_new_tokens: int = option(32, help="Response length budget for the gold evaluation.", ge=1)
