"""The pipeline's evaluation stage: every arm of one run side by side.

`rlhf run` ends by calling `run_eval_stage(recipe)`: the base model, SFT and each finished
preference-tuning stage (PPO, DPO, GRPO, RLOO) are evaluated on the recipe's eval prompts,
with SFT as the baseline and as the KL reference (the policy every RL stage is regularised
towards), and the run's reward model, if trained, as the proxy. The outputs are the same
`eval/metrics.json`, `eval/report.md` and `eval/report.html` as `rlhf eval`, plus an `arms`
table (held-out gold with its 95% CI and KL from the reference per arm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from alignment.errors import UserError
from alignment.evaluation import compare
from alignment.evaluation.gates import load_gates
from alignment.evaluation.generation_cache import GenerationCache
from alignment.evaluation.prompts import load_prompt_sets
from alignment.evaluation.runner import EvalSettings, evaluate_models
from alignment.recipe import Recipe
from alignment.recipe.model import OFFLINE_MODEL
from alignment.run_dir import RunDir, resolve_model_path

STAGE = "eval"
POLICY_STAGES = ("sft", "ppo", "dpo", "grpo", "rloo")


def discover_arms(recipe: Recipe) -> dict[str, str]:
    """{arm: checkpoint} for the base model and every finished policy stage of the run."""
    run = RunDir(recipe, create=False)
    arms: dict[str, str] = {}
    base = resolve_model_path(recipe)
    if recipe.model.name_or_path != OFFLINE_MODEL or (Path(base) / "config.json").is_file():
        arms["base"] = base
    for stage in POLICY_STAGES:
        if run.is_done(stage) and (run.root / stage / "config.json").is_file():
            arms[stage] = str(run.root / stage)
    # later labeling rounds (pipeline.rounds > 1) keep their policies in round<r>/<stage>
    for r in range(2, recipe.pipeline.rounds + 1):
        for stage in POLICY_STAGES[1:]:
            folder = run.root / f"round{r}" / stage
            if (folder / "COMPLETE.json").is_file() and (folder / "config.json").is_file():
                arms[f"{stage}@round{r}"] = str(folder)
    return arms


def stage_or_path(recipe: Recipe, value: str) -> str:
    """'sft' (a finished stage of this run) -> runs/<name>/sft; anything else as given."""
    run_path = Path(recipe.output_dir) / value
    return str(run_path) if value in POLICY_STAGES and run_path.is_dir() else value


def evaluate_arms(
    recipe: Recipe,
    arms: Optional[dict[str, str]] = None,
    reward: Optional[str] = None,
    reference: Optional[str] = None,
    baseline: Optional[str] = None,
    out_dir: Optional[str | Path] = None,
) -> dict:
    """Evaluate several arms of one run on `recipe.eval.prompts`; returns metrics.json's content.

    Defaults: arms = base + every finished policy stage; baseline = 'sft' (else the first
    arm); reference = `recipe.eval.reference` or the SFT arm; reward = the run's finished
    reward stage; output in runs/<name>/eval/. Gates apply only if `recipe.eval.gates` is set.
    """
    run = RunDir(recipe)
    arms = dict(arms) if arms else discover_arms(recipe)
    if not arms:
        raise UserError(f"no model to evaluate in {run.root}: no base model and no finished policy stage")
    baseline = baseline or ("sft" if "sft" in arms else next(iter(arms)))
    if reference is None:
        reference = stage_or_path(recipe, recipe.eval.reference) if recipe.eval.reference else arms.get("sft")
    if reward is None and run.is_done("reward"):
        reward = str(run.root / "reward")
    settings = EvalSettings.from_recipe(recipe)
    known = compare.known_metrics(compare.metric_specs(settings.retention_set))
    gates = load_gates(recipe.eval.gates, known) if recipe.eval.gates else []
    prompts = load_prompt_sets(recipe.eval.prompts, recipe, recipe.eval.max_prompts_per_set)
    cache = GenerationCache(recipe.eval.cache_dir or run.root / STAGE / "cache")
    metrics = evaluate_models(
        arms, baseline, prompts, settings, out_dir or run.stage_dir(STAGE), reward=reward, reference=reference,
        gates=gates, cache=cache, model_cfg=recipe.model, title=f"{recipe.name}: every arm against {baseline}",
        arms=True,
    )
    return metrics


def run_eval_stage(recipe: Recipe, force: bool = False) -> dict:
    """The `eval` stage of `rlhf run`: skipped when done; the marker is written last."""
    run = RunDir(recipe)
    if run.is_done(STAGE) and not force:
        print(f"eval: already complete in {run.stage_dir(STAGE)} (skipping)")
        return run.read_metrics(STAGE)
    metrics = evaluate_arms(recipe)
    run.mark_done(STAGE, {"arms": list(metrics["arms"]), "baseline": metrics["baseline"],
                          "passed": metrics["passed"], "wall_time_s": metrics["wall_time_s"]})
    for name, row in metrics["arms"].items():
        gold = row.get("gold")
        kl = row.get("kl.k3_seq")
        g = f"gold {gold['value']:.3f} [{gold['low']:.3f}, {gold['high']:.3f}]" if gold else "gold –"
        k = f"KL {kl['value']:.2f}" if kl else "KL –"
        print(f"eval: {name:<6} {g}  {k}")
    return metrics
