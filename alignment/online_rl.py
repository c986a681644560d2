"""GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024) through TRL, scored by our reward model.

Both sample a group of responses per prompt and use the group as the baseline, so they need
no critic. The reward function is the same as PPO's score: the reward model's normalised
score of the text (re-tokenized with its own tokenizer, so a reward model with another
vocabulary works), clipped, with the missing-EOS penalty in place of the score of a response
that never ended. Their KL to the SFT reference is TRL's: GRPO adds beta * k3 as a loss term,
RLOO subtracts beta * k1 (summed over the sequence) from the reward. Both end with PPO's
held-out evaluation, so `metrics.json` has the same eval/gold, eval/kl_k1 and eval/kl_k3.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import torch

from alignment.data.files import read_rows
from alignment.data.rows import prompt_messages
from alignment.errors import UserError
from alignment.models import load_policy, load_tokenizer, lora_config, pick_device, training_precision
from alignment.ppo.held_out import as_logged, evaluate_policy, finish_trained_policy, load_held_out
from alignment.ppo.metrics_log import MetricsLogger, trainer_callback
from alignment.ppo.rewards import final_scores
from alignment.ppo.trainer import random_reward
from alignment.recipe import Recipe
from alignment.run_dir import RunDir, resolve_data_path, tensorboard_dir
from reward.scoring import RewardScorer

Method = Literal["grpo", "rloo"]
TRL_KL_ESTIMATOR = {"grpo": "k3", "rloo": "k1"}


def _text(item) -> str:
    """A completion or prompt as TRL passes it: plain text, or a list of chat messages."""
    if isinstance(item, str):
        return item
    return item[-1]["content"] if item else ""


def _prompt(item):
    return item if isinstance(item, str) else [{"role": m["role"], "content": m["content"]} for m in item]


def trl_reward_function(score: Callable[[Sequence, Sequence[str]], torch.Tensor], eos_token_ids: list[int],
                        clip: Optional[float], missing_eos_penalty: Optional[float]):
    """A TRL reward function computing PPO's score: normalised, clipped, missing-EOS penalised."""

    def reward_model(prompts, completions, completion_ids=None, **_) -> list[float]:
        texts = [_text(c).strip() for c in completions]
        raw = score([_prompt(p) for p in prompts], texts).float()
        ended = torch.tensor([any(t in eos_token_ids for t in ids) for ids in completion_ids]) if completion_ids is not None \
            else torch.ones(len(texts), dtype=torch.bool)
        return final_scores(raw, ended, clip, missing_eos_penalty).tolist()

    return reward_model


def train_online(recipe: Recipe, method: Method, reward_fn=None, force: bool = False) -> dict:
    """Run (or resume) GRPO or RLOO; returns the final metrics. `reward_fn` replaces the reward model (tests)."""
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint

    if method == "grpo":
        from trl import GRPOConfig as TRLConfig
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as TRLConfig
        from trl import RLOOTrainer as Trainer
    from accelerate import PartialState

    cfg = getattr(recipe, method)
    run = RunDir(recipe)
    if run.is_done(method) and not force:
        print(f"{method}: already complete in {run.stage_dir(method)} (skipping)")
        return run.read_metrics(method)
    if force:
        run.clear(method)
    started = time.time()
    out = run.stage_dir(method)
    policy_path = cfg.policy or str(run.root / "sft")
    reward_path = cfg.reward_model or str(run.root / "reward")
    device = pick_device()
    tokenizer = load_tokenizer(policy_path, recipe.model, padding_side="left")
    precision = training_precision(recipe.model.dtype, device)  # the reference too: equal numerics at the start
    model = load_policy(policy_path, recipe.model, device=device, dtype=precision.weights)
    if reward_fn is None:
        if cfg.reward == "random":
            reward_fn = lambda prompts, responses: random_reward(prompts, responses, recipe.seed)
        else:
            if not Path(reward_path, "config.json").is_file():
                raise UserError(f"no reward model at {reward_path}: run `rlhf reward` first or set {method}.reward_model")

            scorer = RewardScorer.from_pretrained(reward_path, device=device, dtype=recipe.model.dtype)
            reward_fn = lambda prompts, responses: scorer.score(prompts, responses, normalize=True, batch_size=64)
    eos = sorted({tokenizer.eos_token_id} | set(_as_list(model.generation_config.eos_token_id)))
    trl_reward = trl_reward_function(reward_fn, eos, cfg.reward_clip, cfg.missing_eos_penalty)

    prompts_path = resolve_data_path(recipe, cfg.prompts)
    rows = read_rows(prompts_path)
    if any("prompt" not in r for r in rows):
        raise UserError(f"{prompts_path}: every row needs a 'prompt' field ({method} rolls out prompts)")
    dataset = Dataset.from_list([{"prompt": _prompt_messages(r["prompt"])} for r in rows])
    eval_rows = load_held_out(recipe, cfg.eval_prompts, cfg.eval_max_prompts, method)

    world = PartialState().num_processes
    per_step = cfg.batch_size * world * cfg.gradient_accumulation_steps
    if cfg.batch_size % cfg.num_generations and (cfg.batch_size * world) % cfg.num_generations:
        raise UserError(f"{method}.batch_size={cfg.batch_size} (x{world} processes) must be a multiple of "
                        f"{method}.num_generations={cfg.num_generations}")
    max_steps = max(cfg.total_episodes // per_step, 1)
    kwargs = dict(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        beta=cfg.beta,
        epsilon=cfg.cliprange,
        num_iterations=cfg.num_iterations,
        learning_rate=cfg.learning_rate,
        max_steps=max_steps,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=precision.bf16_autocast,
        use_cpu=device.type == "cpu",  # transformers refuses bf16 on a CPU without it
        gradient_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        disable_dropout=True,
    )
    if method == "grpo" and cfg.loss_type:
        kwargs["loss_type"] = cfg.loss_type
    args = TRLConfig(**kwargs)

    reference = None if cfg.lora.enabled else load_policy(policy_path, recipe.model, device=device,
                                                          dtype=precision.weights).eval()

    def held_out(policy, reference_ctx) -> dict:
        if not eval_rows:
            return {}
        metrics, details = evaluate_policy(policy, reference_ctx, tokenizer, eval_rows, cfg.max_new_tokens,
                                           cfg.temperature, reward_fn=reward_fn, seed=recipe.seed)
        return as_logged(metrics, details)

    logger = MetricsLogger(out, cfg.report_to, enabled=PartialState().is_main_process)
    start = held_out(model, lambda: contextlib.nullcontext(model)) if PartialState().is_main_process else {}
    logger.log(0, {k: v for k, v in start.items() if not k.startswith("_")})
    trainer = Trainer(
        model=model,
        reward_funcs=trl_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora, model) if cfg.lora.enabled else None,
        callbacks=[trainer_callback(logger, TRL_KL_ESTIMATOR[method])],
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(f"{method}: resuming from {last}")
    with tensorboard_dir(out / "tensorboard"):
        result = trainer.train(resume_from_checkpoint=last)

    summary: dict = {}
    if trainer.accelerator.is_main_process:
        summary = finish_trained_policy(trainer, held_out, reference, tokenizer, out, logger, start, recipe,
                                        cfg.lora.enabled)
        summary.update({
            "train_loss": result.training_loss, "steps": result.global_step, "episodes": result.global_step * per_step,
            "method": method, "beta": cfg.beta, "kl_estimator": TRL_KL_ESTIMATOR[method], "lora": cfg.lora.enabled,
            "wall_s": round(time.time() - started, 1),
        })
        run.write_metrics(method, summary)
        run.mark_done(method, {"model": str(out), "steps": result.global_step, "wall_s": summary["wall_s"]})
    trainer.accelerator.wait_for_everyone()
    logger.close()
    return summary


def _as_list(x) -> list:
    return [] if x is None else (list(x) if isinstance(x, (list, tuple)) else [x])


def _prompt_messages(prompt) -> list[dict]:
    return prompt_messages(prompt)



def train_grpo(recipe: Recipe, force: bool = False) -> dict:
    """The GRPO stage (`rlhf grpo`, and `grpo` in pipeline.stages)."""
    return train_online(recipe, "grpo", force=force)


def train_rloo(recipe: Recipe, force: bool = False) -> dict:
    """The RLOO stage (`rlhf rloo`, and `rloo` in pipeline.stages)."""
    return train_online(recipe, "rloo", force=force)
