"""The reward stage of a run: comparisons in, a scored and evaluated reward checkpoint out.

`train_reward(recipe)` is what `rlhf reward` and `rlhf run` call. It writes, into
`runs/<name>/reward/`:

- the reward model: a save_pretrained `AutoModelForSequenceClassification(num_labels=1)`
  folder with its tokenizer (LoRA adapters are merged, so plain transformers loads it);
- `reward_stats.json`: mean and std of raw rewards on reference (SFT) responses;
- `metrics.json`: data counts (with every dropped row by reason), training summary and the
  held-out evaluation (reward/evaluation.py); on the offline suite also `gold_test`, the
  same evaluation on every gold-separated pair of SFT samples on unseen prompts (the
  figure to compare settings by: thousands of pairs, where the held-out split has ~200);
  `calibration.png`;
- `checkpoints/` (resume) and `tensorboard/`; `COMPLETE.json` last.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, EarlyStoppingCallback
from transformers.trainer_utils import get_last_checkpoint

from alignment.data.files import read_rows
from alignment.data.pairs import PairDrops, usable_pairs
from alignment.errors import DataError, UserError
from alignment.generation import generate
from alignment.interrupt import trainer_callback as exit_after_checkpoint
from alignment.models import load_policy, load_tokenizer, lora_config, pick_device, pick_dtype, save_model, training_precision
from alignment.recipe import Recipe
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path, resolve_model_path, tensorboard_dir
from alignment.stopwatch import Stopwatch
from alignment.suite import gold_score
from alignment.threads import settle_threads
from reward.comparisons import Comparisons, prepare, read_comparison_file, split_by_prompt, tokenize
from reward.evaluation import evaluate_pairs, format_table, plot_calibration
from reward.labeling import CANDIDATES_FILE, COMPARISONS_FILE
from reward.scoring import RewardScorer, RewardStats
from reward.training import BradleyTerryTrainer, PairCollator, indexed_dataset, trl_args

STAGE = "reward"


def comparison_files(recipe: Recipe, run: RunDir) -> list[str]:
    """Where this run's comparisons come from (see `reward.comparisons` in the recipe)."""
    files = list(recipe.reward.comparisons)
    if not files:
        if recipe.labels.source == "file":
            if not recipe.labels.file:
                raise UserError("labels.source=file but labels.file is not set")
            files.append(recipe.labels.file)
        else:
            exported = run.stage_dir("labels", create=False) / COMPARISONS_FILE
            if not exported.is_file():
                raise UserError(
                    f"no comparisons: {exported} does not exist. Run the labels stage (`rlhf run`), export "
                    "the labeling campaign there (`rlhf label export`), or set reward.comparisons / labels.file"
                )
            files.append(str(exported))
    files += [resolve_data_path(recipe, s.path) for s in recipe.data.preference_sources]
    return files


def reward_model_to_train(init: str, seed: int):
    """The backbone at `init` with a fresh scalar head, drawn from `seed`.

    The head is the one randomly initialised part, and `from_pretrained` draws it from the
    process's global RNG: without seeding, the reward model would depend on whatever ran
    before it in the process (`rlhf run` trains SFT first; `rlhf reward` alone does not).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(init, num_labels=1)
    settle_threads(model)  # trained on the CPU unless a GPU is there, where the count does not matter
    return model


def load_comparisons(files: list[str], ties: str, use_margin: bool) -> Comparisons:
    """Every file's pairs through the shared pair check (drops printed per file), then ties and weights."""
    rows, drops = [], PairDrops()
    for path in files:
        kept, drops = usable_pairs(read_comparison_file(path), str(path), drops)
        rows += kept
    for line in drops.lines(STAGE):
        print(line)
    comparisons = prepare(rows, ties=ties, use_margin=use_margin)
    comparisons.dropped.update(drops.total())
    comparisons.sources, comparisons.pair_drops = files, drops
    if not comparisons.rows:
        raise DataError(f"{', '.join(files)}: no usable comparisons ({comparisons.report()})")
    return comparisons


def split_comparisons(comparisons: Comparisons, eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Train and held-out rows, split by prompt; a split that cannot be made names the files."""
    return split_by_prompt(comparisons.rows, eval_fraction, seed, origin=", ".join(comparisons.sources),
                           account=comparisons.report())


def backbone_path(recipe: Recipe, run: RunDir) -> str:
    cfg = recipe.reward
    if cfg.model_name_or_path:
        return cfg.model_name_or_path
    if cfg.init_from == "sft":
        sft = run.stage_dir("sft", create=False)
        if not (sft / "config.json").is_file():
            raise UserError(f"reward.init_from=sft but there is no SFT checkpoint at {sft}; run `rlhf sft` first "
                            "or set reward.init_from=base")
        return str(sft)
    return resolve_model_path(recipe)


def reference_responses(recipe: Recipe, run: RunDir, comparisons: Comparisons, n: int) -> tuple[list, list[str], str]:
    """(prompts, responses, source) on which to compute the normalisation statistics.

    Preferred: the run's SFT samples (`samples/candidates.jsonl`), which are exactly the
    reference policy's responses. Without them, fresh samples from the SFT checkpoint on the
    comparisons' prompts; without an SFT checkpoint either, the comparisons' own responses
    (said in the source field, since they may come from another policy).
    """
    candidates = run.stage_dir("samples", create=False) / CANDIDATES_FILE
    if candidates.is_file():
        rows = read_rows(candidates)
        pairs = [(r["prompt"], resp if isinstance(resp, str) else resp["text"]) for r in rows for resp in r["responses"]]
        pairs = pairs[:n]
        return [p for p, _ in pairs], [r for _, r in pairs], f"SFT samples ({candidates})"
    prompts = list({repr(r["prompt"]): r["prompt"] for r in comparisons.rows}.values())[:n]
    sft = run.stage_dir("sft", create=False)
    if (sft / "config.json").is_file():
        tok = load_tokenizer(str(sft), recipe.model)
        policy = load_policy(str(sft), recipe.model)
        responses = generate(policy, tok, prompts, max_new_tokens=recipe.labels.max_new_tokens,
                             temperature=recipe.labels.sample_temperature, seed=recipe.seed)
        return prompts, responses, f"fresh SFT samples ({sft})"
    rows = comparisons.rows[:n]
    return ([r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
            "comparison responses (no SFT policy in this run)")


def train_reward(recipe: Recipe, force: bool = False) -> dict:
    """Run the reward stage (resuming an interrupted run); returns its metrics."""
    run = RunDir(recipe)
    run.save_recipe()
    if run.is_done(STAGE) and not force:
        print(f"reward: already complete in {run.stage_dir(STAGE)} (skipping)")
        return run.read_metrics(STAGE)
    if force:
        run.clear(STAGE)
    clock = Stopwatch()
    ensure_offline_world(recipe)
    cfg = recipe.reward
    out = run.stage_dir(STAGE)

    comparisons = load_comparisons(comparison_files(recipe, run), cfg.ties, cfg.use_margin)
    train_rows, eval_rows = split_comparisons(comparisons, cfg.eval_fraction, recipe.seed)
    init = backbone_path(recipe, run)
    tokenizer = load_tokenizer(init, recipe.model)
    train_c, eval_c = Comparisons(train_rows, comparisons.dropped), Comparisons(eval_rows, comparisons.dropped)
    train_tok = tokenize(train_c, tokenizer, recipe.model.max_length)
    eval_tok = tokenize(eval_c, tokenizer, recipe.model.max_length)
    if not train_tok:
        raise DataError(f"{', '.join(comparisons.sources)}: no comparisons left to train on ({comparisons.report()})")
    comparisons.rows = train_c.rows + eval_c.rows
    print(f"reward: {comparisons.report()}; {len(train_c.rows)} train / {len(eval_c.rows)} held out")

    device = pick_device()
    model = reward_model_to_train(init, recipe.seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = trl_args(cfg, str(out / "checkpoints"), recipe.seed, len(train_tok), has_eval=bool(eval_tok),
                    bf16=training_precision(recipe.model.dtype, device).bf16_autocast)
    callbacks = [EarlyStoppingCallback(cfg.early_stopping_patience)] if eval_tok and cfg.early_stopping_patience > 0 else []
    callbacks.append(exit_after_checkpoint(STAGE))
    share_prefix = cfg.share_prompt_prefix and not cfg.gradient_checkpointing
    trainer = BradleyTerryTrainer(
        model=model,
        args=args,
        data_collator=PairCollator(tokenizer.pad_token_id, share_prefix=share_prefix),
        train_dataset=indexed_dataset(train_tok),
        eval_dataset=indexed_dataset(eval_tok) if eval_tok else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora, model, task_type="SEQ_CLS") if cfg.lora.enabled else None,
        callbacks=callbacks,
        cache_frozen_trunk=cfg.cache_frozen_trunk and share_prefix,
    )
    clock.lap("prepare")  # reading, splitting and tokenising the comparisons; loading the backbone
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(f"reward: resuming from {last}")
    with tensorboard_dir(out / "tensorboard"):
        result = trainer.train(resume_from_checkpoint=last)
    clock.lap("train")  # with the trainer's periodic held-out evaluations

    model = trainer.model
    if cfg.lora.enabled:
        model = model.merge_and_unload()
    model = model.to(device).eval()
    save_model(model, tokenizer, out)  # in the precision it trained in
    clock.lap("save")  # with merging the adapter
    # scored from here on in model.dtype, as PPO, DPO and the evaluation read it: the normalisation
    # statistics are then those of the scores PPO sees, and the accuracies those of the model it optimises
    scorer = RewardScorer(model.to(pick_dtype(recipe.model.dtype, device)), tokenizer, stats=None,
                          max_length=recipe.model.max_length)
    prompts, responses, source = reference_responses(recipe, run, comparisons, cfg.normalize_samples)
    stats = RewardStats.of(scorer.raw_scores(prompts, responses))
    stats.save(out)
    clock.lap("normalization")

    metrics = {
        "data": {"sources": comparisons.sources, "train_pairs": len(train_c.rows), "eval_pairs": len(eval_c.rows),
                 "train_groups": len(train_tok),
                 "dropped": dict(comparisons.dropped), "dropped_pairs_by_file": comparisons.pair_drops.as_dict(),
                 "init_from": init},
        "train": {"steps": result.global_step, "train_loss": result.training_loss,
                  "best_eval_accuracy": trainer.state.best_metric, "best_checkpoint": trainer.state.best_model_checkpoint,
                  "wall_time_s": round(clock.seconds["prepare"] + clock.seconds["train"], 1),
                  "device": device.type, "lora": cfg.lora.enabled},
        "normalization": {"mean": stats.mean, "std": stats.std, "n": stats.n, "source": source},
    }
    held = [r for r in eval_c.rows if r["target"] == 1.0]
    if held:
        metrics["eval"] = evaluate_rows(scorer, held, cfg)
        plot_calibration(metrics["eval"], out / "calibration.png")
        print(format_table(metrics["eval"]))
    clock.lap("held_out_eval")
    test = gold_test_rows(recipe, run)
    clock.lap("gold_test_sampling")
    if test:
        metrics["gold_test"] = evaluate_rows(scorer, test, cfg)
        gold = metrics["gold_test"]["gold"]
        print(f"reward: gold test ({gold['n_pairs']} gold-separated pairs of SFT samples on "
              f"{metrics['gold_test']['n_prompts']} unseen prompts): accuracy {gold['accuracy']:.3f} "
              f"[{gold['accuracy_ci'][0]:.3f}, {gold['accuracy_ci'][1]:.3f}], length-only {gold['length_only_accuracy']:.3f}")
    clock.lap("gold_test_scoring")
    metrics["wall_time_s"] = round(clock.total, 1)
    metrics["phase_seconds"] = clock.rounded()
    run.write_metrics(STAGE, metrics)
    run.mark_done(STAGE, {"model": str(out), "wall_time_s": metrics["wall_time_s"]})
    phases = ", ".join(f"{name} {s:.0f}s" for name, s in clock.seconds.items())
    print(f"reward: saved {out} (total {metrics['wall_time_s']:.0f}s: {phases})")
    return metrics


def gold_test_rows(recipe: Recipe, run: RunDir) -> list[dict]:
    """On the offline suite: every gold-separated pair among `gold_test_samples` SFT samples of
    each `gold_test_prompts` prompt, chosen = the higher gold. [] when off or not applicable.

    The in-run held-out split is a few percent of the labelled prompts: ~200 noisy pairs, a CI
    ±0.08 wide, too coarse to compare training settings by. These prompts were never labelled
    and there are thousands of pairs, oriented by gold rather than by a label.
    """
    cfg = recipe.reward
    path = resolve_data_path(recipe, cfg.gold_test_prompts) if cfg.gold_test_prompts else ""
    sft = run.stage_dir("sft", create=False)
    if not path or not (sft / "config.json").is_file() or cfg.gold_test_samples < 2:
        return []
    if not Path(path).is_file():
        print(f"reward: no gold-test prompts at {path} (reward.gold_test_prompts); gold test off")
        return []
    rows = [r for r in read_rows(path) if "family" in (r.get("metadata") or {})]
    if not rows:
        return []
    samples = generate(load_policy(str(sft), recipe.model), load_tokenizer(str(sft), recipe.model),
                       [r["prompt"] for r in rows], max_new_tokens=recipe.labels.max_new_tokens,
                       temperature=recipe.labels.sample_temperature, seed=recipe.seed + 1,
                       num_return_sequences=cfg.gold_test_samples)
    pairs = []
    for row, responses in zip(rows, samples):
        distinct = list(dict.fromkeys(t for t in responses if t.strip()))
        golds = [gold_score(row["metadata"], t).score for t in distinct]
        for a, b in combinations(range(len(distinct)), 2):
            if golds[a] != golds[b]:
                c, r = (a, b) if golds[a] > golds[b] else (b, a)
                pairs.append({"prompt": row["prompt"], "chosen": distinct[c], "rejected": distinct[r],
                              "metadata": row["metadata"], "target": 1.0, "weight": 1.0, "margin": 0.0})
    return pairs


def evaluate_rows(scorer, rows: list[dict], cfg, batch_size: int = 64) -> dict:
    """Score held-out strict preferences and compute every metric of reward/evaluation.py."""
    rc, rr = scorer.raw_pair_scores([r["prompt"] for r in rows], [r["chosen"] for r in rows],
                                    [r["rejected"] for r in rows], batch_size=batch_size)
    return evaluate_pairs(rows, rc.numpy(), rr.numpy(), category_column=cfg.category_column,
                          bootstrap_samples=cfg.bootstrap_samples)
