"""The DPO trainer the stage builds, on a finished run's SFT policy and labels, for the DPO benchmarks."""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig

from alignment.dpo import to_trl_pair
from alignment.models import load_policy, load_tokenizer, lora_config, pick_device, training_precision
from alignment.run_dir import RunDir


def dpo_trainer(recipe, rows: list[dict], trainer_class, max_steps: int, batch_size: int, output_dir: str,
                **trainer_kwargs):
    """`trainer_class` (TRL's DPOTrainer or ours) as `rlhf dpo` builds it: the run's SFT policy, the
    recipe's LoRA and precision, the reference's log-probabilities precomputed on `rows`."""
    cfg, device = recipe.dpo, pick_device()
    policy = str(RunDir(recipe).root / "sft")
    tokenizer = load_tokenizer(policy, recipe.model)
    precision = training_precision(recipe.model.dtype, device)
    model = load_policy(policy, recipe.model, device=device, dtype=precision.weights)
    args = DPOConfig(output_dir=output_dir, per_device_train_batch_size=batch_size, max_steps=max_steps,
                     learning_rate=cfg.learning_rate, precompute_ref_log_probs=True, max_length=recipe.model.max_length,
                     gradient_checkpointing=False, report_to="none", bf16=precision.bf16_autocast,
                     use_cpu=device.type == "cpu", disable_dropout=True, seed=recipe.seed, save_strategy="no",
                     logging_steps=max(1, max_steps))
    return trainer_class(model=model, args=args, train_dataset=Dataset.from_list([to_trl_pair(r) for r in rows]),
                         processing_class=tokenizer,
                         peft_config=lora_config(cfg.lora, model) if cfg.lora.enabled else None, **trainer_kwargs)
