"""Direct preference optimisation (Rafailov et al. 2023) on the exported comparisons, through TRL.

The stage: read the preference rows (the label store's export, rankings expanded to pairs,
plus any extra preference files), train the SFT policy with TRL's DPOTrainer against the
frozen SFT reference (with LoRA: the same weights, adapter off), with the loss variant the
recipe names (sigmoid = DPO, ipo, hinge, robust, ...). Then the same held-out evaluation as
PPO: gold of greedy responses, KL to the reference per sequence (k1, k3), reward-model score,
before and after, so `metrics.json` carries the gold gain over SFT with its 95% CI.

Per-row `weight` (from expanded rankings) is not used: TRL's DPO loss has no per-example
weights. A ranking of K therefore counts as C(K,2) pairs here.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import is_peft_model
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from trl import DPOTrainer
from trl.trainer.utils import use_adapter

from alignment.data.files import read_rows
from alignment.data.pairs import PairDrops, usable_pairs
from alignment.data.rows import prompt_messages, to_preference_rows, validate_rows
from alignment.errors import DataError, UserError
from alignment.interrupt import trainer_callback as exit_after_checkpoint
from alignment.models import load_policy, load_tokenizer, lora_config, pick_device, training_precision, warmup_arguments
from alignment.ppo.held_out import as_logged, evaluate_policy, finish_trained_policy, load_held_out
from alignment.ppo.metrics_log import MetricsLogger, trainer_callback
from alignment.prompt_groups import PromptGroupBatches, PromptGroupCollator, prefix_batch, sigmoid_dpo_loss
from alignment.recipe import Recipe
from alignment.reference_logprobs import completion_logprob_sums, completion_logprobs, pair_completions
from alignment.run_dir import RunDir, resolve_data_path, tensorboard_dir
from reward.scoring import RewardScorer

STAGE = "dpo"
LABELS_EXPORT = "labels/comparisons.jsonl"  # reward.labeling.COMPARISONS_FILE


def preference_rows(recipe: Recipe, run: RunDir) -> tuple[list[dict], list[str], PairDrops]:
    """Every preference pair DPO trains on, the files they came from, and what was dropped.

    The label export (or `dpo.preferences`), plus `data.preference_sources`: cleaned by the
    data stage when it ran (`data/preferences.jsonl`), else as given. Degenerate pairs (empty
    or identical responses) are dropped by the check the reward stage uses too, and each
    file's drops are printed in the same line.
    """
    primary = recipe.dpo.preferences or str(run.root / LABELS_EXPORT)
    cleaned = run.root / "data" / "preferences.jsonl"
    if run.is_done("data") and cleaned.is_file():  # the data stage's cleaned mixture of preference_sources
        extra = [str(cleaned)]
    else:
        extra = [resolve_data_path(recipe, s.path) for s in recipe.data.preference_sources]
    paths = [resolve_data_path(recipe, primary)] + extra
    rows: list[dict] = []
    used, drops = [], PairDrops()
    for i, path in enumerate(paths):
        if not Path(path).exists():
            if i == 0 and recipe.dpo.preferences is None:
                continue  # the default export may be absent when preference_sources are given
            raise DataError(f"{path}: file not found")
        part = read_rows(path)
        kind = validate_rows(part, None, path)
        if kind == "sft":
            raise DataError(f"{path}: DPO needs preference or ranking rows, got SFT rows")
        # ties and "both bad" carry no preference for DPO (exported only with reward.ties=half)
        preferences = [r for r in to_preference_rows(part, kind) if r.get("label") not in ("tie", "both_bad")]
        kept, drops = usable_pairs(preferences, path, drops)
        rows.extend(kept)
        used.append(path)
    for line in drops.lines(STAGE):
        print(line)
    if not rows and drops.dropped:
        raise DataError(f"{', '.join(used)}: no usable preference pairs for DPO ({'; '.join(drops.lines(STAGE))})")
    if not rows:
        raise UserError(
            f"no preference rows for DPO: expected the label export at {paths[0]} (run the labels stage) "
            "or set dpo.preferences / data.preference_sources"
        )
    return rows, used, drops


def rows_within_budget(rows: list[dict], max_steps: int, per_step: int, seed: int, by_prompt: bool = False
                       ) -> list[dict]:
    """The pairs `max_steps` optimiser steps of `per_step` pairs (or, `by_prompt`, of every pair of
    `per_step` prompts) can read: a seeded random subset of pairs (of prompts) when that is fewer
    than all of them, else every row.

    With `precompute_ref_log_probs` TRL scores the reference on the whole dataset before the
    first step; when `max_steps` stops training inside the first epoch, most of that work is
    never used (on the SmolLM2 recipe: 600 pairs precomputed for 240 read, 12 of 20 minutes).
    The trainer shuffles the subset again, so which pairs a step sees is as random as before.
    """
    units = [str(r["prompt"]) for r in rows] if by_prompt else list(range(len(rows)))
    distinct = list(dict.fromkeys(units))
    needed = max_steps * per_step
    if max_steps <= 0 or needed >= len(distinct):
        return rows
    keep = set(random.Random(seed).sample(distinct, needed))
    return [r for r, unit in zip(rows, units) if unit in keep]


def rows_for_steps(recipe: Recipe, rows: list[dict], processes: int = 1) -> list[dict]:
    """The pairs the recipe's `dpo.max_steps` read: batches of pairs, or of whole prompts."""
    cfg = recipe.dpo
    per_step = (cfg.prompts_per_step or cfg.batch_size) * cfg.gradient_accumulation_steps * processes
    return rows_within_budget(rows, cfg.max_steps, per_step, recipe.seed, by_prompt=cfg.prompts_per_step > 0)


def to_trl_pair(row: dict) -> dict:
    """A conversational pair, so that TRL renders it with the policy's chat template."""
    return {
        "prompt": prompt_messages(row["prompt"]),
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }


class SharedPromptDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer, whose reference log-probabilities read each prompt once and each distinct
    completion once (`alignment.reference_logprobs`) instead of every pair's two conversations whole.

    On the SmolLM2 recipe's 720 pairs TRL's pass read 1440 conversations (164 s of the stage's 525);
    they hold ~1030 distinct completions of ~240 prompts. Settings the shared reading does not
    cover (a length-desensitised `ld_alpha`, `keep_end` truncation, gradient checkpointing,
    which drops caches, several processes) keep TRL's own pass.

    With `prompts_per_step` > 0 training reads the same way (`alignment.prompt_groups`): each
    batch is every pair of that many prompts, and the policy's sums come from one cached forward
    of each prompt and its distinct completions. That path computes the sigmoid (DPO) loss only,
    on precomputed reference log-probabilities, in one process.
    """

    def __init__(self, *args, prompts_per_step: int = 0, **kwargs):
        self.prompts_per_step = prompts_per_step
        super().__init__(*args, **kwargs)
        if prompts_per_step and not self._reads_shared():
            raise ValueError("prompts_per_step needs one process, keep_start truncation, no gradient checkpointing "
                             "and no ld_alpha")
        if prompts_per_step and (list(self.loss_types) != ["sigmoid"] or not self.precompute_ref_logps
                                 or self.f_divergence_type != "reverse_kl" or self.use_weighting
                                 or self.aux_loss_enabled):
            raise ValueError("prompts_per_step computes plain DPO only: loss_type [sigmoid], precomputed "
                             "reference log-probs, reverse KL, no WPO weighting, no MoE aux loss")

    def _reads_shared(self) -> bool:
        return (self.ld_alpha is None and self.args.truncation_mode == "keep_start"
                and not self.args.gradient_checkpointing and self.accelerator.num_processes == 1)

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        if not self._reads_shared() or not isinstance(dataset, Dataset):
            return super()._precompute_ref_logps(dataset, name, batch_size)
        pairs = [pair_completions(example, self.args.max_length) for example in dataset]
        model = self.ref_model or self.model
        adapter_off = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter_off = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        distinct = list(dict.fromkeys(c for pair in pairs for c in pair))
        with tqdm(total=len(distinct), desc=f"reference log-probs ({name}, each prompt read once)",
                  unit="completion") as bar, torch.no_grad(), adapter_off, self.accelerator.autocast():
            logps = completion_logprobs(model, distinct, self._tokenizer.pad_token_id, progress=bar.update)
        dataset = dataset.add_column("ref_chosen_logps", np.array([logps[c] for c, _ in pairs], dtype=np.float32))
        return dataset.add_column("ref_rejected_logps", np.array([logps[r] for _, r in pairs], dtype=np.float32))

    def get_train_dataloader(self):
        if not self.prompts_per_step:
            return super().get_train_dataloader()
        data = self.train_dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps",
                                                  "ref_rejected_logps"])
        batches = PromptGroupBatches([tuple(ids) for ids in data["prompt_ids"]], self.prompts_per_step, self.args.seed)
        loader = DataLoader(data, batch_sampler=batches, num_workers=self.args.dataloader_num_workers,
                            collate_fn=PromptGroupCollator(self._tokenizer.pad_token_id, self.args.max_length))
        return self.accelerator.prepare(loader)

    def _compute_loss(self, model, inputs, return_outputs):
        if "chosen_row" not in inputs:
            return super()._compute_loss(model, inputs, return_outputs)
        with self.accelerator.autocast():
            logps = completion_logprob_sums(self.accelerator.unwrap_model(model), prefix_batch(inputs))
        loss, chosen_rewards, rejected_rewards = sigmoid_dpo_loss(logps, inputs, self.beta)
        metrics = self._metrics["train" if self.model.training else "eval"]
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(logps[inputs["chosen_row"]].mean().item())
        metrics["logps/rejected"].append(logps[inputs["rejected_row"]].mean().item())
        metrics["pairs_per_step"].append(float(len(inputs["chosen_row"])))
        if return_outputs:
            raise ValueError("prompts_per_step returns no model outputs")
        return loss


def optional_reward_fn(recipe: Recipe, run: RunDir, device):
    """The reward model's scorer for the held-out `score`, when a reward model exists."""
    path = run.root / "reward"
    if not (path / "config.json").is_file():
        return None

    scorer = RewardScorer.from_pretrained(path, device=device, dtype=recipe.model.dtype)
    return lambda prompts, responses: scorer.score(prompts, responses, normalize=True)


def train_dpo(recipe: Recipe, force: bool = False) -> dict:
    """Run (or resume) the DPO stage; returns its metrics."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig as TRLDPOConfig

    cfg = recipe.dpo
    run = RunDir(recipe)
    if run.is_done(STAGE) and not force:
        print(f"dpo: already complete in {run.stage_dir(STAGE)} (skipping)")
        return run.read_metrics(STAGE)
    if force:
        run.clear(STAGE)
    started = time.time()
    out = run.stage_dir(STAGE)
    policy_path = cfg.policy or str(run.root / "sft")
    rows, sources, drops = preference_rows(recipe, run)
    device = pick_device()
    state = PartialState()
    available = len(rows)
    if cfg.prompts_per_step and state.num_processes > 1:
        raise UserError(f"dpo.prompts_per_step={cfg.prompts_per_step} trains in one process; this run has "
                        f"{state.num_processes}: set dpo.prompts_per_step=0 for TRL's batches")
    rows = rows_for_steps(recipe, rows, state.num_processes)
    if len(rows) < available:
        print(f"dpo: dpo.max_steps={cfg.max_steps} reads {len(rows)} of the {available} pairs; "
              "training (and the reference's log-probabilities) uses that seeded subset")
    if cfg.prompts_per_step:
        print(f"dpo: each step trains on every pair of {cfg.prompts_per_step} prompt(s), each prompt and each "
              f"distinct completion read once ({len({str(r['prompt']) for r in rows})} prompts)")
    tokenizer = load_tokenizer(policy_path, recipe.model)
    precision = training_precision(recipe.model.dtype, device)  # the reference too: equal numerics at the start
    model = load_policy(policy_path, recipe.model, device=device, dtype=precision.weights)
    reference = None if cfg.lora.enabled else load_policy(policy_path, recipe.model, device=device,
                                                          dtype=precision.weights).eval()
    reward_fn = optional_reward_fn(recipe, run, device)
    eval_rows = load_held_out(recipe, cfg.eval_prompts, cfg.eval_max_prompts, STAGE)

    def held_out(policy, reference_ctx) -> dict:
        if not eval_rows:
            return {}
        metrics, details = evaluate_policy(policy, reference_ctx, tokenizer, eval_rows, cfg.max_new_tokens,
                                           cfg.temperature, reward_fn=reward_fn, seed=recipe.seed)
        return as_logged(metrics, details)

    main_process = state.is_main_process
    logger = MetricsLogger(out, cfg.report_to, enabled=main_process)
    # before training the policy is its own reference
    start = held_out(model, lambda: contextlib.nullcontext(model)) if main_process else {}
    logger.log(0, {k: v for k, v in start.items() if not k.startswith("_")})

    args = TRLDPOConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        **warmup_arguments(cfg.warmup_ratio),
        beta=cfg.beta,
        loss_type=list(cfg.loss_type),
        loss_weights=cfg.loss_weights,
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        max_length=recipe.model.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=precision.bf16_autocast,
        use_cpu=device.type == "cpu",  # transformers refuses bf16 on a CPU without it
        dataloader_num_workers=0,
        disable_dropout=True,
    )
    trainer = SharedPromptDPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list([to_trl_pair(r) for r in rows]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora, model) if cfg.lora.enabled else None,
        callbacks=[trainer_callback(logger), exit_after_checkpoint(STAGE)],
        prompts_per_step=cfg.prompts_per_step,
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(f"dpo: resuming from {last}")
    with tensorboard_dir(out / "tensorboard"):
        result = trainer.train(resume_from_checkpoint=last)

    summary: dict = {}
    if trainer.accelerator.is_main_process:  # one process evaluates and writes; the others wait
        summary = finish_trained_policy(trainer, held_out, reference, tokenizer, out, logger, start, recipe,
                                        cfg.lora.enabled)
        summary.update({
            "train_loss": result.training_loss, "steps": result.global_step,
            "pairs": len(rows), "pairs_available": available, "sources": sources,
            "dropped_pairs_by_file": drops.as_dict(),
            "loss_type": list(cfg.loss_type), "beta": cfg.beta, "lora": cfg.lora.enabled,
            "wall_s": round(time.time() - started, 1),
        })
        run.write_metrics(STAGE, summary)
        run.mark_done(STAGE, {"model": str(out), "steps": result.global_step, "wall_s": summary["wall_s"]})
    trainer.accelerator.wait_for_everyone()
    logger.close()
    return summary
