"""`rlhf run`: the whole loop from one recipe, resumable stage by stage.

Each step calls the same function as its `rlhf <stage>` subcommand. A step whose folder
holds its completion marker is skipped, so a killed run continues where it stopped; a
failing step leaves the steps before it intact and names its log. With `pipeline.rounds`
> 1, the new policy's samples go back to the labelers (InstructGPT, Llama 2): round r's
steps live in `round<r>/`, which links the shared folders (suite, base, data, sft) of
round 1 so that every stage function works unchanged.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import shutil
import sys
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from alignment.data.files import read_rows
from alignment.errors import UserError
from alignment.recipe import Recipe
from alignment.recipe.loader import with_overrides
from alignment.recipe.pipeline import ALL_STAGES, ROUND_STAGES
from alignment.run_dir import RunDir, write_json_atomic
from reward.labeling import CANDIDATES_FILE, COMPARISONS_FILE, export_comparisons, run_labels_stage, run_samples_stage
from ui.service import LabelService

SHARED_FOLDERS = ("suite", "base", "data", "sft")

# stage -> "module:function"; each function takes the (round's) recipe and returns metrics.
STAGE_FUNCTIONS: dict[str, str] = {
    "data": "alignment.data.stage:run_data_stage",
    "sft": "alignment.sft:train_sft",
    "samples": "alignment.pipeline:samples_step",
    "labels": "alignment.pipeline:labels_step",
    "reward": "reward.stage:train_reward",
    "ppo": "alignment.ppo.trainer:train_ppo",
    "dpo": "alignment.dpo:train_dpo",
    "grpo": "alignment.online_rl:train_grpo",
    "rloo": "alignment.online_rl:train_rloo",
    "eval": "alignment.evaluation.arms:run_eval_stage",
}


# `pipeline.smoke=true`: every stage shrunk to a few steps, to check a recipe end to end
# in a couple of minutes (CI uses it). The numbers it produces mean nothing.
SMOKE_OVERRIDES = [
    "suite.n_sft=800", "suite.n_prompts=120", "suite.n_eval=24", "data.eval_fraction=0.05",
    "sft.max_steps=30", "sft.eval_steps=1000", "sft.save_steps=15", "sft.gold_eval_prompts=8", "sft.report_to=[none]",
    "labels.prompts=96", "labels.candidates_per_prompt=4",
    "reward.max_steps=12", "reward.eval_steps=6", "reward.eval_fraction=0.2", "reward.normalize_samples=16", "reward.bootstrap_samples=200",
    "reward.report_to=[none]",
    "ppo.total_episodes=64", "ppo.rollout_batch_size=16", "ppo.mini_batch_size=8", "ppo.ppo_epochs=1",
    "ppo.save_every=1", "ppo.eval_every=0", "ppo.eval_max_prompts=8", "ppo.report_to=[none]",
    "dpo.max_steps=6", "dpo.save_steps=3", "dpo.eval_max_prompts=8", "dpo.report_to=[none]",
    "eval.max_prompts_per_set=8", "eval.kl_prompts=8", "eval.bootstrap_samples=200",
]


@dataclass
class Step:
    stage: str
    round: int
    recipe: Recipe

    @property
    def folder(self) -> Path:
        return Path(self.recipe.output_dir) / self.stage

    @property
    def label(self) -> str:
        return self.stage if self.round == 1 else f"{self.stage} (round {self.round})"

    def function(self) -> Callable[[Recipe], dict]:
        module, name = STAGE_FUNCTIONS[self.stage].split(":")
        fn = getattr(importlib.import_module(module), name)
        if "round" in inspect.signature(fn).parameters:
            return lambda recipe: fn(recipe, round=self.round)
        return fn


class WaitingForLabels(Exception):
    """Raised by the labels stage in human mode until enough judgments are in the store."""


def round_dir(recipe: Recipe, r: int) -> Path:
    root = Path(recipe.output_dir)
    return root if r == 1 else root / f"round{r}"


def round_recipe(recipe: Recipe, r: int) -> Recipe:
    """Round r's settings (`pipeline.round_overrides`) on the recipe; round r > 1 writes into
    `round<r>/`, and its reward model trains on every round's labels so far."""
    overrides = recipe.pipeline.round_overrides.get(r, [])
    rec = with_overrides(recipe, overrides, recipe.name, f"pipeline.round_overrides.{r}") if overrides else recipe
    if r == 1:
        return rec
    rec = copy.deepcopy(rec)
    rec.output_dir = str(round_dir(recipe, r))
    if not rec.reward.comparisons and rec.labels.source != "file":
        rec.reward.comparisons = [str(round_dir(recipe, k) / "labels" / "comparisons.jsonl") for k in range(1, r + 1)]
    return rec


def samples_step(recipe: Recipe, round: int = 1) -> dict:
    """Candidates for the labelers: from SFT in round 1, from the last round's policy after."""
    policy, name = None, "sft"
    if round > 1:
        here = Path(recipe.output_dir)
        name = next((m for m in ("ppo", "dpo") if (here / f"previous-{m}" / "config.json").is_file()), "sft")
        policy = str(here / f"previous-{name}") if name != "sft" else None
    path = run_samples_stage(recipe, policy_path=policy, policy_name=name)
    return {"candidates": str(path), "policy": policy or "sft"}


def labels_step(recipe: Recipe, round: int = 1) -> dict:
    """Simulated and AI annotators label at once; human labels are waited for; a file is used as is."""
    if recipe.labels.source in ("simulated", "ai", "simulated+ai"):
        return {"comparisons": str(run_labels_stage(recipe, round=round))}
    if recipe.labels.source == "file":
        run = RunDir(recipe)
        run.mark_done("labels", {"file": recipe.labels.file})
        return {"comparisons": recipe.labels.file}
    return human_labels_step(recipe, round)


def human_labels_step(recipe: Recipe, round: int) -> dict:
    """Create the campaign once; continue only when enough human judgments are in the store."""
    cfg = recipe.labels
    run = RunDir(recipe)
    name = cfg.campaign.replace("{round}", str(round))
    service = LabelService.open(cfg.db)
    try:
        existing = {c["name"]: c["id"] for c in service.list_campaigns()}
        if name in existing:
            campaign_id = existing[name]
        else:
            candidates = read_rows(run.stage_dir("samples", create=False) / CANDIDATES_FILE)
            campaign_id = service.create_campaign(name, mode=cfg.mode, overlap=cfg.overlap, guidelines=cfg.guidelines,
                                                  items=candidates, pairs_per_prompt=cfg.pairs_per_prompt, seed=recipe.seed)
            print(f"labels: created campaign {name!r} in {cfg.db}")
        progress = service.progress(campaign_id)
        if progress["fraction_done"] < cfg.human_min_fraction:
            needed = int(progress["target_judgments"] * cfg.human_min_fraction + 0.999) - progress["judgments"]
            raise WaitingForLabels(
                f"labels: campaign {name!r} has {progress['judgments']} of {progress['target_judgments']} judgments; "
                f"{max(needed, 1)} more needed. Open the app with `rlhf label serve --db {cfg.db}`, add labelers with "
                f"`rlhf label add-user`, then run this command again to continue."
            )
        out = run.stage_dir("labels") / COMPARISONS_FILE
        n = export_comparisons(service, campaign_id, out, aggregation=cfg.aggregation, include_ties=recipe.reward.ties == "half")
    finally:
        service.close()
    run.mark_done("labels", {"campaign": name, "rows": n})
    return {"comparisons": str(out), "rows": n}


def build_plan(recipe: Recipe) -> list[Step]:
    """The ordered steps of a recipe: shared stages once, round stages once per round."""
    unknown = [s for s in recipe.pipeline.stages if s not in STAGE_FUNCTIONS]
    if unknown:
        raise UserError(f"pipeline.stages: unknown stage(s) {unknown}; known: {list(STAGE_FUNCTIONS)}")
    if recipe.pipeline.rounds < 1:
        raise UserError(f"pipeline.rounds must be at least 1, got {recipe.pipeline.rounds}")
    stages = recipe.pipeline.stages
    plan = [Step(s, 1, recipe) for s in stages if s not in ROUND_STAGES and s != "eval"]
    for r in range(1, recipe.pipeline.rounds + 1):
        this_round = round_recipe(recipe, r)  # its own pipeline.stages may drop stages, never add them
        plan += [Step(s, r, this_round) for s in stages if s in ROUND_STAGES and s in this_round.pipeline.stages]
    plan += [Step(s, 1, recipe) for s in stages if s == "eval"]  # once, after every round: shared like data and SFT
    return plan


def link_round_folders(recipe: Recipe, r: int) -> None:
    """Round r sees round 1's shared folders (and the previous round's policy) by symlink."""
    if r == 1:
        return
    root = Path(recipe.output_dir)
    here = root / f"round{r}"
    here.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FOLDERS:
        link = here / name
        if not link.exists() and (root / name).exists():
            link.symlink_to(Path("..") / name, target_is_directory=True)
    previous = root if r == 2 else root / f"round{r - 1}"
    for name in ("ppo", "dpo"):
        link = here / f"previous-{name}"
        if not link.exists() and (previous / name).exists():
            link.symlink_to(Path("..") / (name if r == 2 else f"round{r - 1}/{name}"), target_is_directory=True)


class Tee(io.TextIOBase):
    """Write to the console and to a log file at once."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


@contextmanager
def logged_to(path: Path):
    """Console output of a stage also goes to its log file.

    Libraries that create logging handlers while a stage runs keep a reference to our
    stream; after the stage it is pointed back at the console alone, never at a closed file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        out, err = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                yield
        finally:
            out.streams, err.streams = (sys.__stdout__,), (sys.__stderr__,)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def headline(stage: str, metrics: dict) -> dict:
    """A few numbers per stage for summary.json: the ones a reader looks for first."""
    if not isinstance(metrics, dict):
        return {"output": str(metrics)} if metrics is not None else {}
    keys = ("gold", "accuracy", "heldout_accuracy", "kl", "score", "eval_loss", "train_loss", "rows", "judgments")
    out = {}
    for k, v in (metrics or {}).items():
        if any(k.startswith(p) for p in keys) and isinstance(v, (int, float)):
            out[k] = v
    for section in ("eval", "gold_test"):  # the reward stage: accuracy against gold, held out and on unseen prompts
        nested = metrics.get(section)
        g = nested.get("gold") if isinstance(nested, dict) else None
        if isinstance(g, dict) and isinstance(g.get("accuracy"), (int, float)):
            out[f"{section}/gold_accuracy"] = g["accuracy"]
    gold = (metrics or {}).get("gold")
    if isinstance(gold, dict):
        for split, g in gold.items():
            if isinstance(g, dict) and "gold" in g:
                out[f"gold/{split}"] = g["gold"]
    return out


def sft_skips_the_data_stage(run: RunDir, plan: list[Step]) -> str | None:
    """A warning when the finished SFT trained on the raw sources although the plan has a data
    stage: `rlhf sft` run alone before the data stage does that, and `rlhf run` would then go
    on from an SFT policy that never saw the cleaned mixture."""
    if not any(step.stage == "data" for step in plan):
        return None
    origin = run.read_metrics("sft").get("data")
    cleaned = run.root / "data" / "train.jsonl"
    if origin is None or Path(origin).resolve() == cleaned.resolve():
        return None
    return (f"warning: sft trained on {origin}, not on the data stage's {cleaned}; "
            f"rerun with --from sft to train on the cleaned mixture")


def run_pipeline(recipe: Recipe, from_stage: str | None = None, dry_run: bool = False) -> int:
    """Run (or print) the plan; returns the process exit code."""
    plan = build_plan(recipe)
    run = RunDir(recipe, create=not dry_run)
    if from_stage is not None and from_stage not in [s.stage for s in plan]:
        raise UserError(f"--from {from_stage}: not a stage of this recipe's plan {[s.stage for s in plan]}")
    if dry_run:
        print(f"plan for {recipe.name} -> {recipe.output_dir}")
        for i, step in enumerate(plan, 1):
            state = "done" if (step.folder / "COMPLETE.json").is_file() else "to run"
            print(f"  {i}. {step.label:<20} {str(step.folder):<40} {state}")
        return 0
    run.save_recipe()
    summary_path = run.root / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"stages": {}}
    summary.update(name=recipe.name, output_dir=str(run.root))
    if from_stage is not None:
        start = next(i for i, s in enumerate(plan) if s.stage == from_stage)
        for step in plan[start:]:
            RunDir(step.recipe, create=True).clear(step.stage)
    started = time.time()
    log_dir = run.root / "logs"
    for i, step in enumerate(plan, 1):
        key = step.stage if step.round == 1 else f"{step.stage}-round{step.round}"
        elapsed = time.time() - started
        eta = f", about {_fmt(elapsed / max(i - 1, 1) * (len(plan) - i + 1))} left" if i > 1 else ""
        if (step.folder / "COMPLETE.json").is_file():
            print(f"[{i}/{len(plan)}] {step.label}: already complete, skipping")
            if step.stage == "sft" and (warning := sft_skips_the_data_stage(run, plan)):
                print(warning)
            summary["stages"].setdefault(key, {"status": "done"})
            continue
        print(f"[{i}/{len(plan)}] {step.label} (elapsed {_fmt(elapsed)}{eta})", flush=True)
        link_round_folders(recipe, step.round)
        log = log_dir / f"{key}.log"
        t0 = time.time()
        try:
            with logged_to(log):
                metrics = step.function()(step.recipe)
        except WaitingForLabels as wait:
            summary["stages"][key] = {"status": "waiting", "message": str(wait)}
            write_json_atomic(summary_path, summary)
            print(str(wait))
            return 0
        except Exception as err:  # the stage failed: keep what came before, say where to look
            with open(log, "a", encoding="utf-8") as f:
                traceback.print_exc(file=f)
            summary["stages"][key] = {"status": "failed", "error": str(err).splitlines()[0] if str(err) else type(err).__name__,
                                      "log": str(log), "wall_time_s": round(time.time() - t0, 1)}
            write_json_atomic(summary_path, summary)
            print(f"rlhf run: stage '{step.label}' failed: {summary['stages'][key]['error']} (log: {log})", file=sys.stderr)
            return 1
        summary["stages"][key] = {"status": "done", "wall_time_s": round(time.time() - t0, 1),
                                  "metrics": headline(step.stage, metrics)}
        write_json_atomic(summary_path, summary)
    report = run.root / "eval" / "report.html"
    if report.is_file():
        shutil.copyfile(report, run.root / "report.html")
    summary["wall_time_s"] = round(sum(s.get("wall_time_s", 0) for s in summary["stages"].values()), 1)
    write_json_atomic(summary_path, summary)
    print(f"rlhf run: complete in {_fmt(time.time() - started)}; summary: {summary_path}")
    if (run.root / "report.html").is_file():
        print(f"rlhf run: report: {run.root / 'report.html'}")
    return 0
