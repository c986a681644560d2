"""PPO hyper-parameters. Names follow the papers (Ziegler et al. 2019, Ouyang et al. 2022).

Batch sizes are global (summed over processes), so a run under `accelerate launch` with N
processes does the same work per iteration as a single process, split N ways. The defaults
are sized for the offline quickstart (tiny Llama, 2 CPU cores, about 5 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option
from alignment.recipe.model import DtypeName
from alignment.recipe.sft import LoraConfig


@dataclass
class PPOConfig(Section):
    # --- what is optimised, against what
    policy: Optional[str] = option(None, help="Actor and reference checkpoint (default: the run's sft/ folder).")
    reward_model: Optional[str] = option(None, help="Reward checkpoint (default: the run's reward/ folder).")
    reward: Literal["model", "random"] = option(
        "model", help="'model' scores with the reward model; 'random' is an ablation (seeded N(0,1) per "
        "response) that tells how much of a gold gain comes from side channels such as the EOS penalty."
    )
    critic: Literal["separate", "shared"] = option(
        "separate", help="'separate': a critic model of its own (a second network in memory, its own forward and "
        "backward); 'shared': a scalar value head on the actor's final hidden states (TRL 0.x's "
        "AutoModelForCausalLMWithValueHead): one forward gives logprobs and values, one backward takes "
        "pg_loss + vf_coef * vf_loss, so the value loss also trains the actor's trunk."
    )
    critic_init: Literal["reward", "policy"] = option(
        "reward", help="Initialise the separate critic from the reward model (needs the same tokenizer) or from the "
        "policy. Ignored with critic=shared (the value head starts at zero on the actor's trunk)."
    )
    dtype: Optional[DtypeName] = option(
        None, help="Precision of PPO's rollout and update (default: model.dtype). bfloat16 on a CPU is fp32 weights "
        "under bf16 autocast, 2-2.5x faster where the CPU has AVX512-BF16/AMX, but its sampler drifts about 0.04 "
        "nats/token from the recomputed logprobs (fp32: 1e-5); the update recomputes them, so the first ratio is 1 either way."
    )
    prompts: str = option("suite:prompts", help="Prompts to roll out (file or suite:<split>).")
    max_prompt_length: int = option(96, help="Prompts longer than this (in tokens, after the chat template) are skipped.", ge=1)
    # --- sizes
    total_episodes: int = option(4096, help="Prompts rolled out over the whole run.", ge=1)
    rollout_batch_size: int = option(64, help="Prompts per rollout (one PPO iteration), over all processes.", ge=1)
    mini_batch_size: int = option(16, help="Episodes per optimiser step, over all processes.", ge=1)
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimiser step.", ge=1)
    ppo_epochs: int = option(4, help="Passes over each rollout.", ge=1)
    learning_rate: float = option(
        5e-5, help="Actor learning rate (quickstart: 3e-4 clipped 27% of tokens in the first iteration; 5e-5 about 5%).", gt=0,
    )
    critic_learning_rate: Optional[float] = option(
        None, help="Critic learning rate (default: actor's); with critic=shared, the value head's.", gt=0,
    )
    # --- sampling
    temperature: float = option(1.0, help="Sampling temperature; logprobs are recomputed with it.", gt=0)
    top_k: int = option(0, help="Top-k sampling (0: off).", ge=0)
    top_p: float = option(1.0, help="Nucleus sampling (1.0: off).", gt=0, le=1)
    max_new_tokens: int = option(32, help="Response length budget.", ge=1)
    rollout_engine: Literal["hf", "vllm"] = option(
        "hf", help="What samples the rollout: 'hf' (transformers generate) or 'vllm' (a vLLM engine in this process, "
        "given the actor's weights after every optimiser phase, LoRA merged; needs the vllm extra, "
        "scripts/setup_vllm_env.sh). Logprobs are recomputed by the training model either way, so the first ratio is 1."
    )
    # --- score
    missing_eos_penalty: Optional[float] = option(
        -1.0, help="Score that replaces the reward model's for a response without EOS (None: no penalty).", unbounded=True,
    )
    reward_clip: float = option(5.0, help="Clip normalised scores to [-c, c].", gt=0)
    # --- KL control
    kl_coef: float = option(0.1, help="Initial beta.", ge=0)
    kl_estimator: Literal["k1", "k2", "k3"] = option(
        "k1", help="KL estimator (Schulman's note). With kl_in=loss, k1 is refused: its gradient is grad log p, zero in "
        "expectation; k2's expected gradient is exactly grad KL(pi || ref), k3's is grad KL(ref || pi) (close near ref)."
    )
    kl_in: Literal["reward", "loss"] = option(
        "reward", help="Apply the KL penalty in the reward or as a loss term (beta * mean KL estimate; needs "
        "kl_estimator=k2 or k3)."
    )
    adaptive_kl: bool = option(True, help="Adaptive KL controller (Ziegler et al.); False keeps beta = kl_coef.")
    target_kl: float = option(1.5, help="Target KL per sequence (nats) for the adaptive controller.", gt=0)
    kl_horizon: int = option(
        1024, help="Horizon of the adaptive controller, in episodes (Ziegler et al. used 10000 for far longer runs).", ge=1,
    )
    kl_stop: Optional[float] = option(100.0, help="Stop with a warning when sequence KL exceeds this.", gt=0)
    # --- learning
    gamma: float = option(1.0, help="Discount.", ge=0, le=1)
    lam: float = option(0.95, help="GAE lambda.", ge=0, le=1)
    cliprange: float = option(0.2, help="Policy ratio clip.", gt=0)
    cliprange_value: float = option(0.2, help="Value clip.", gt=0)
    vf_coef: float = option(0.1, help="Value-loss coefficient.", ge=0)
    entropy_coef: float = option(0.0, help="Entropy bonus coefficient.", ge=0)
    ptx_coef: float = option(0.0, help="PPO-ptx: weight of an SFT loss mix-in (on data.sources).", ge=0)
    whiten_advantages: bool = option(True, help="Whiten advantages over valid tokens.")
    critic_warmup_steps: int = option(
        2, help="Critic-only iterations before the actor moves (the reward head is a value only at the last token); "
        "with critic=shared only the value head trains in them, the trunk stays put.", ge=0,
    )
    max_grad_norm: float = option(1.0, help="Gradient clipping.", gt=0)
    critic_trainable_layers: Optional[int] = option(
        None, help="Train only the separate critic's last N blocks and its head (default: all of it). Its frozen "
        "lower blocks then cost no backward and no AdamW state, and when they hold the actor's frozen weights "
        "(see share_frozen_trunk) the critic reads the actor's shared hidden states instead of running them.", ge=0,
    )
    lora: LoraConfig = option(LoraConfig(), help="LoRA actor; the reference is the adapter switched off.")
    share_frozen_trunk: bool = option(
        True, help="With LoRA on the last blocks (lora.last_layers), run the frozen lower blocks once per rollout "
        "and start every later forward (old and reference logprobs, values, each update epoch) from their "
        "hidden states: same numbers, and on SmolLM2 with last_layers=8 the update's forward runs 8 of 30 "
        "blocks. Off, or without last_layers, every forward runs the whole model.",
    )
    gradient_checkpointing: bool = option(False, help="Trade compute for memory.")
    # --- bookkeeping
    save_every: int = option(10, help="Checkpoint every N iterations (0: only at the end).", ge=0)
    sample_every: int = option(10, help="Log a table of sample completions every N iterations.", ge=0)
    eval_every: int = option(20, help="Gold evaluation on held-out prompts every N iterations (0: start and end only).", ge=0)
    eval_prompts: str = option("suite:eval_seen", help="Held-out prompts for the gold evaluation.")
    eval_max_prompts: int = option(200, help="Held-out prompts scored per evaluation.", ge=0)
    report_to: list[str] = option(["tensorboard"], help="Loggers: tensorboard or none (metrics.jsonl is always written).")

    def cross_checks(self) -> list[tuple[tuple[str, ...], str]]:
        """A rollout splits into whole minibatches, a minibatch into whole micro-batches.

        These hold for one process; `train_ppo` checks the per-process split once it knows how
        many processes `accelerate launch` started.
        """
        if self.rollout_batch_size % self.mini_batch_size:
            return [(("rollout_batch_size", "mini_batch_size"), f"{self.rollout_batch_size} must be a multiple of ppo.mini_batch_size="
                                           f"{self.mini_batch_size}")]
        if self.mini_batch_size % self.gradient_accumulation_steps:
            return [(("mini_batch_size", "gradient_accumulation_steps"), f"{self.mini_batch_size} must be a multiple of ppo.gradient_accumulation_steps="
                                        f"{self.gradient_accumulation_steps}")]
        return []
