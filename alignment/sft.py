"""Supervised fine-tuning on demonstrations, through TRL's SFTTrainer.

The stage: read the demonstrations (the cleaned mixture when the data stage ran, else the
recipe's sources), hold out an eval split, train with the loss on assistant tokens only,
save a plain `save_pretrained` folder in `runs/<name>/sft/`, then measure what matters on
the offline suite: gold score on held-out prompts, beside the untrained base model's and
the demonstrations' own, so that "SFT learned the task" and "SFT copied the flaws of its
teachers" are both visible.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from alignment.data.loading import load_rows
from alignment.data.rows import sft_messages
from alignment.errors import DataError
from alignment.gold_eval import demonstrations_gold, evaluate_gold
from alignment.interrupt import trainer_callback as exit_after_checkpoint
from alignment.models import (load_policy, load_tokenizer, lora_config, pick_device, save_model, training_precision,
                              warmup_arguments)
from alignment.recipe import Recipe
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path, resolve_model_path, tensorboard_dir

STAGE = "sft"
_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


def demonstration_rows(recipe: Recipe, run: RunDir) -> tuple[list[dict], str]:
    """The rows SFT trains on, and where they came from."""
    if run.is_done("data") and (run.root / "data" / "train.jsonl").is_file():
        path = run.root / "data" / "train.jsonl"
        rows, _ = load_rows(str(path), "sft")
        return rows, str(path)
    rows: list[dict] = []
    for source in recipe.data.sources:
        path = resolve_data_path(recipe, source.path)
        part, _ = load_rows(path, "sft", source=path)
        rows.extend(part[: source.max_rows] if source.max_rows else part)
    return rows, ", ".join(s.path for s in recipe.data.sources)


def to_trl_example(row: dict, use_messages: bool) -> dict:
    """`messages` when the chat template marks assistant turns, else prompt/completion.

    Both give TRL a loss on assistant tokens only: the first through the template's
    `{% generation %}` markers, the second through TRL's completion-only loss.
    """
    messages = sft_messages(row)
    if use_messages:
        return {"messages": messages}
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(rows) * eval_fraction)) if eval_fraction > 0 and len(rows) > 1 else 0
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


def train_sft(recipe: Recipe, force: bool = False) -> dict:
    """Run the SFT stage (resuming an interrupted run); returns its metrics."""
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    run = RunDir(recipe)
    run.save_recipe()
    if run.is_done(STAGE) and not force:
        print(f"sft: already complete in {run.stage_dir(STAGE)} (skipping)")
        return run.read_metrics(STAGE)
    if force:
        run.clear(STAGE)
    started = time.time()
    ensure_offline_world(recipe)
    cfg = recipe.sft
    out = run.stage_dir(STAGE)

    base_path = resolve_model_path(recipe)
    tokenizer = load_tokenizer(base_path, recipe.model)
    rows, origin = demonstration_rows(recipe, run)
    use_messages = bool(_GENERATION_TAG.search(tokenizer.chat_template or ""))
    if not use_messages and any(sft_messages(r)[-1]["role"] != "assistant" for r in rows):
        raise DataError(f"{origin}: every row must end with an assistant turn (the template has no generation markers)")
    n_too_long = count_truncated(tokenizer, rows, recipe.model.max_length)
    rows, n_untrainable = drop_untrainable(tokenizer, rows, recipe.model.max_length, origin,
                                           assistant_only=cfg.assistant_only_loss)
    train_rows, eval_rows = split_rows(rows, recipe.data.eval_fraction, recipe.seed)

    device = pick_device()
    precision = training_precision(recipe.model.dtype, device)
    model = load_policy(base_path, recipe.model, device=device, dropout=True, dtype=precision.weights)
    args = TRLSFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        **warmup_arguments(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        max_length=recipe.model.max_length,
        assistant_only_loss=cfg.assistant_only_loss and use_messages,
        completion_only_loss=cfg.assistant_only_loss if not use_messages else None,
        packing=cfg.packing,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=precision.bf16_autocast,
        use_cpu=device.type == "cpu",  # transformers refuses bf16 on a CPU without it
        dataset_num_proc=None,
        dataloader_num_workers=0,
        save_only_model=False,
    )
    to_ds = lambda part: Dataset.from_list([to_trl_example(r, use_messages) for r in part])
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_ds(train_rows),
        eval_dataset=to_ds(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora, model) if cfg.lora.enabled else None,
        callbacks=[exit_after_checkpoint(STAGE)],
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(f"sft: resuming from {last}")
    with tensorboard_dir(out / "tensorboard"):
        result = trainer.train(resume_from_checkpoint=last)
        eval_metrics = trainer.evaluate() if eval_rows else {}

    policy = trainer.model
    if cfg.lora.enabled:
        policy.save_pretrained(out / "adapter")
        policy = policy.merge_and_unload()
    save_model(policy, tokenizer, out)

    metrics = {
        "train_loss": result.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        "steps": result.global_step,
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "rows_truncated_at_max_length": n_too_long,
        "rows_dropped_no_assistant_token_within_max_length": n_untrainable,
        "data": origin,
        "lora": cfg.lora.enabled,
        "device": device.type,
    }
    metrics.update(gold_report(recipe, policy, tokenizer, base_path, rows))
    metrics["wall_time_s"] = round(time.time() - started, 1)
    run.write_metrics(STAGE, metrics)
    run.mark_done(STAGE, {"model": str(out), "wall_time_s": metrics["wall_time_s"]})
    print_summary(metrics)
    return metrics


def gold_report(recipe: Recipe, policy, tokenizer, base_path: str, rows: list[dict]) -> dict:
    """Gold score of the fine-tuned policy, the base model and the demonstrations."""
    cfg = recipe.sft
    gold = evaluate_gold(policy, tokenizer, recipe, cfg.gold_eval_prompts, cfg.max_new_tokens, cfg.gold_eval_temperature)
    if not gold:
        return {}
    base = load_policy(base_path, recipe.model, device=next(policy.parameters()).device)
    base_gold = evaluate_gold(base, tokenizer, recipe, cfg.gold_eval_prompts, cfg.max_new_tokens, cfg.gold_eval_temperature)
    return {"gold": gold, "base_gold": base_gold, "demonstrations_gold": demonstrations_gold(rows)}


def answer_starts(tokenizer, rows: list[dict]) -> list[int]:
    """Per row, the number of tokens before its first assistant token (the templated prompt)."""
    prefixes = []
    for row in rows:
        messages = sft_messages(row)
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        prefixes.append(tokenizer.apply_chat_template(messages[:first], tokenize=False, add_generation_prompt=True)
                        if first else "")
    return [len(ids) for ids in tokenizer(prefixes, add_special_tokens=False)["input_ids"]]


def drop_untrainable(tokenizer, rows: list[dict], max_length: int, origin: str,
                     assistant_only: bool = True) -> tuple[list[dict], int]:
    """Rows that keep at least one assistant token within `max_length`, and how many did not.

    Sequences are cut at `model.max_length` tokens; with the loss on assistant tokens only, a
    row whose prompt alone fills that budget has nothing left to learn from. Such rows are
    dropped with their count printed, and when none is left the stage stops here in one line,
    instead of handing the trainer an empty dataset (`num_samples=0` from deep inside torch).
    With the loss on every token a cut-off row still trains on its prompt, and is kept.
    """
    if not assistant_only or not rows:
        return rows, 0
    starts = answer_starts(tokenizer, rows)
    kept = [row for row, start in zip(rows, starts) if start < max_length]
    dropped = len(rows) - len(kept)
    if not kept:
        raise DataError(f"{origin}: no row has an assistant token within model.max_length={max_length} "
                        f"(all {len(rows)} rows are cut off before the answer); raise model.max_length or shorten the prompts")
    if dropped:
        first = [i + 1 for i, start in enumerate(starts) if start >= max_length][:5]
        print(f"sft: {origin}: dropped {dropped} of {len(rows)} rows whose answer starts beyond model.max_length="
              f"{max_length} tokens (rows {', '.join(map(str, first))}{', ...' if dropped > 5 else ''})")
    return kept, dropped


def count_truncated(tokenizer, rows: list[dict], max_length: int) -> int:
    texts = [tokenizer.apply_chat_template(sft_messages(r), tokenize=False) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(n > max_length for n in lengths)


def print_summary(metrics: dict) -> None:
    print(f"sft: {metrics['steps']} steps, train loss {metrics['train_loss']:.3f}, eval loss {metrics['eval_loss']}")
    demo = metrics.get("demonstrations_gold")
    if demo:
        print(f"sft: demonstrations' own gold score {demo['gold']:.3f}")
    for split, g in metrics.get("gold", {}).items():
        base = metrics["base_gold"].get(split, {}).get("gold", float("nan"))
        low, high = g["gold_ci"]
        print(f"sft: gold on {split:<22} {g['gold']:.3f} [{low:.3f}, {high:.3f}]  (base model {base:.3f})")
