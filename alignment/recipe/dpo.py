"""DPO, GRPO and RLOO hyper-parameters (TRL trainers).

All three start from the SFT checkpoint, keep it as the KL reference, and end with the same
held-out evaluation as PPO (gold, KL k1/k3, score), so that `rlhf eval` compares them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option
from alignment.recipe.sft import LoraConfig


@dataclass
class DPOConfig(Section):
    policy: Optional[str] = option(None, help="Policy and reference checkpoint (default: the run's sft/ folder).")
    preferences: Optional[str] = option(
        None, help="Preference or ranking rows (default: the run's labels/comparisons.jsonl export); "
        "data.preference_sources are added to them."
    )
    loss_type: list[str] = option(
        ["sigmoid"], help="TRL DPO loss(es): sigmoid (DPO), ipo, hinge, robust, exo_pair, nca_pair, bco_pair, "
        "sppo_hard, aot, apo_zero, apo_down, discopop, sigmoid_norm, sft; several are summed with loss_weights."
    )
    loss_weights: Optional[list[float]] = option(None, help="Weights of the loss types (default: 1 each).", ge=0)
    beta: float = option(0.1, help="Strength of the implicit KL to the reference (tau for IPO).", gt=0)
    label_smoothing: float = option(0.0, help="Assumed label-flip rate for robust DPO (cDPO); 0 for plain DPO.", ge=0, le=0.5)
    epochs: float = option(2.0, help="Passes over the pairs.", gt=0)
    max_steps: int = option(-1, help="Stop after this many optimiser steps (-1: use epochs).", ge=1, also=(-1,))
    batch_size: int = option(32, help="Pairs per batch (per device), when prompts_per_step is 0.", ge=1)
    prompts_per_step: int = option(
        0, help="0: TRL's batches of batch_size pairs. N > 0: each batch is every pair of N prompts, each prompt "
        "and each distinct completion read once (alignment/prompt_groups.py; sigmoid loss, one process).", ge=0,
    )
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimiser step.", ge=1)
    learning_rate: float = option(
        1e-4, help="Peak learning rate (quickstart: 5e-4 drifted to KL 4.1 and lost 0.08 gold; 1e-4 kept KL at 0.2).", gt=0,
    )
    lr_scheduler: str = option("cosine", help="transformers scheduler name.")
    warmup_ratio: float = option(0.05, help="Share of steps spent warming up.", ge=0, le=1)
    precompute_ref_log_probs: bool = option(
        True, help="Score every pair under the reference once before training (one reference pass, not one per epoch)."
    )
    gradient_checkpointing: bool = option(False, help="Trade compute for memory.")
    lora: LoraConfig = option(LoraConfig(), help="LoRA policy; the reference is the adapter switched off.")
    logging_steps: int = option(10, help="Log every N steps.", ge=1)
    save_steps: int = option(100, help="Checkpoint every N steps (for resume).", ge=1)
    eval_prompts: str = option("suite:eval_seen", help="Held-out prompts for the final gold and KL evaluation.")
    eval_max_prompts: int = option(200, help="Held-out prompts scored.", ge=0)
    max_new_tokens: int = option(32, help="Response length budget in the held-out evaluation.", ge=1)
    temperature: float = option(1.0, help="Sampling temperature of the held-out KL estimate.", gt=0)
    report_to: list[str] = option(["tensorboard"], help="Loggers.")

    def cross_checks(self) -> list[tuple[tuple[str, ...], str]]:
        """Steps by prompt compute plain DPO on precomputed reference log-probabilities only."""
        if self.prompts_per_step and list(self.loss_type) != ["sigmoid"]:
            return [(("prompts_per_step", "loss_type"), f"prompts_per_step={self.prompts_per_step} trains the sigmoid "
                     f"(DPO) loss only, got loss_type={list(self.loss_type)}; set prompts_per_step=0 for TRL's losses")]
        if self.prompts_per_step and self.gradient_checkpointing:
            return [(("prompts_per_step", "gradient_checkpointing"), "prompts_per_step reads each prompt once "
                     "through a key/value cache, which gradient checkpointing drops; set one of them off")]
        if self.prompts_per_step and not self.precompute_ref_log_probs:
            return [(("prompts_per_step", "precompute_ref_log_probs"), "prompts_per_step reads the reference's "
                     "precomputed log-probabilities; set precompute_ref_log_probs=true")]
        return []


@dataclass
class OnlineRLConfig(Section):
    policy: Optional[str] = option(None, help="Policy and reference checkpoint (default: the run's sft/ folder).")
    reward_model: Optional[str] = option(None, help="Reward checkpoint (default: the run's reward/ folder).")
    reward: Literal["model", "random"] = option("model", help="'random' is the side-channel ablation (see ppo.reward).")
    prompts: str = option("suite:prompts", help="Prompts to roll out (file or suite:<split>).")
    total_episodes: int = option(2048, help="Completions generated over the whole run.", ge=1)
    num_generations: int = option(4, help="Samples per prompt (group size).", ge=2)
    batch_size: int = option(16, help="Completions per device per step (a multiple of num_generations).", ge=1)
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimiser step.", ge=1)
    num_iterations: int = option(1, help="Optimisation passes per generation batch (mu in the GRPO paper).", ge=1)
    learning_rate: float = option(3e-4, help="Peak learning rate.", gt=0)
    beta: float = option(0.05, help="KL coefficient against the reference (GRPO: k3 loss term; RLOO: k1 in the reward).", gt=0)
    cliprange: float = option(0.2, help="Ratio clip (epsilon).", gt=0)
    loss_type: Optional[str] = option(None, help="GRPO loss normalisation (TRL: grpo, dapo, dr_grpo, bnpo...; default TRL's).")
    temperature: float = option(1.0, help="Sampling temperature.", gt=0)
    max_new_tokens: int = option(32, help="Response length budget.", ge=1)
    missing_eos_penalty: Optional[float] = option(
        -1.0, help="Score that replaces the reward model's for a response without EOS, as in PPO (None: off).", unbounded=True,
    )
    reward_clip: float = option(5.0, help="Clip normalised scores to [-c, c], as in PPO.", gt=0)
    lora: LoraConfig = option(LoraConfig(), help="LoRA policy.")
    gradient_checkpointing: bool = option(False, help="Trade compute for memory.")
    logging_steps: int = option(5, help="Log every N steps.", ge=1)
    save_steps: int = option(100, help="Checkpoint every N steps (for resume).", ge=1)
    eval_prompts: str = option("suite:eval_seen", help="Held-out prompts for the final gold and KL evaluation.")
    eval_max_prompts: int = option(200, help="Held-out prompts scored.", ge=0)
    report_to: list[str] = option(["tensorboard"], help="Loggers.")

    def cross_checks(self) -> list[tuple[tuple[str, ...], str]]:
        """A batch holds whole groups of samples of one prompt (for one process; see online_rl)."""
        if self.batch_size % self.num_generations:
            return [(("batch_size", "num_generations"), f"{self.batch_size} must be a multiple of num_generations={self.num_generations}")]
        return []
