"""AI feedback on the real-model recipe: is an AI annotator worth its labels, and does
Self-Instruct data help SFT? Four measurements (docs/labeling.md, docs/data.md).

    OMP_NUM_THREADS=1 python bench/ai_feedback_experiment.py --part judge   # or rm, sft, filters, all
    [--work runs/ai_feedback] [--pairs 300]

World: configs/smollm2-135m-instruct.yaml (SmolLM2-135M-Instruct, the suite's gold checkers).
Candidates are 4 samples (T=1, 24 tokens, bf16) of the untuned model per prompt: the first 64
prompts of `suite:prompts` are labelled (the recipe's labels.prompts), the next 400 give the
test pairs: every gold-separated pair, at most 3 per prompt, in a random order per pair.

1. `judge`: agreement with gold of the AI annotator (the untuned model as judge, logprobs of
   "A"/"B", the shipped principles) with the order swap, and without it (the first order
   only); a tie (order-inconsistent) counts 1/2. Bootstrap 95% CIs over pairs.
2. `rm`: the 64 labelled prompts' candidates are labelled once by the AI annotator and once by
   the recipe's simulated personas; the larger export is subsampled to the smaller one's size;
   a reward model is trained on each with the recipe's reward settings (from the base model);
   both are scored on the test pairs as judges (the same machinery: the upper reference the AI
   judge is compared with), with a paired bootstrap CI of the difference.
3. `sft`: `rlhf data generate` (Self-Instruct from the suite's SFT instructions with the untuned
   model), then the data stage and SFT at the recipe's budget on suite data alone and on suite
   plus Self-Instruct data; greedy gold on every held-out split, paired bootstrap CIs.
4. `filters`: the share of proposed instructions each Self-Instruct filter removed (from 3).

Every figure is appended to bench/results/ai_feedback.jsonl with the 1-minute load average
before and after its part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = str(ROOT / "configs" / "smollm2-135m-instruct.yaml")
RESULTS = ROOT / "bench" / "results" / "ai_feedback.jsonl"
LABEL_PROMPTS, TEST_PROMPTS, SAMPLES, PER_PROMPT = 64, 400, 4, 3


def load(work: Path, arm: str, *overrides: str):
    from alignment.recipe import load_recipe

    out = work / arm
    if not (out / "suite" / "COMPLETE.json").is_file():  # every arm shares the one world
        shutil.copytree(work / "world" / "suite", out / "suite", dirs_exist_ok=True)
    return load_recipe(RECIPE, [f"output_dir={out}", *overrides])


def record(part: str, load_before: float, **figures) -> None:
    entry = {"part": part, "at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_1min_before": round(load_before, 2),
             "load_1min_after": round(os.getloadavg()[0], 2), **figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=1))


def ci(values) -> list[float]:
    from alignment.stats import bootstrap_mean_ci

    return [round(v, 4) for v in bootstrap_mean_ci(values)]


# ------------------------------------------------------------------ candidates and test pairs


def candidates(work: Path) -> tuple[list[dict], list[dict]]:
    """(label candidate rows, test pairs), sampled once and cached."""
    path = work / "candidates.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        return saved["label"], saved["test"]
    from alignment.data.files import read_rows
    from alignment.generation import generate
    from alignment.models import load_policy, load_tokenizer
    from alignment.run_dir import resolve_data_path, resolve_model_path
    from alignment.suite import gold_score

    recipe = load(work, "world")
    prompts = read_rows(resolve_data_path(recipe, "suite:prompts"))[: LABEL_PROMPTS + TEST_PROMPTS]
    model_path = resolve_model_path(recipe)
    cfg = type(recipe.model)(name_or_path=model_path, dtype="bfloat16")
    t = time.time()
    samples = generate(load_policy(model_path, cfg), load_tokenizer(model_path, cfg), [r["prompt"] for r in prompts],
                       max_new_tokens=recipe.labels.max_new_tokens, temperature=1.0, seed=recipe.seed,
                       batch_size=32, num_return_sequences=SAMPLES, progress=True)
    print(f"candidates: {len(prompts)} prompts x {SAMPLES} in {time.time() - t:.0f}s")
    rows = []
    for row, responses in zip(prompts, samples):
        distinct = list(dict.fromkeys(r for r in responses if r.strip()))
        if len(distinct) >= 2:
            rows.append({"prompt": row["prompt"], "responses": distinct, "metadata": row["metadata"]})
    label_rows = [r for r in rows if r["prompt"] in {p["prompt"] for p in prompts[:LABEL_PROMPTS]}]
    rng = random.Random(0)
    test = []
    for row in rows[len(label_rows):]:
        golds = [gold_score(row["metadata"], t).score for t in row["responses"]]
        pairs = [(a, b) for a, b in combinations(range(len(golds)), 2) if golds[a] != golds[b]]
        for a, b in rng.sample(pairs, min(PER_PROMPT, len(pairs))):
            if rng.random() < 0.5:
                a, b = b, a
            test.append({"prompt": row["prompt"], "first": row["responses"][a], "second": row["responses"][b],
                         "first_better": golds[a] > golds[b], "family": row["metadata"]["family"]})
    path.write_text(json.dumps({"label": label_rows, "test": test}))
    return label_rows, test


def score_verdicts(test: list[dict], verdicts, use_first_order_only: bool = False) -> dict:
    """Agreement with gold (tie = 1/2), decisive accuracy and tie rate."""
    from reward.ai_judge import combine

    points, decisive, debiased = [], [], []
    for pair, v in zip(test, verdicts):
        if v.p_first != 0.5:  # the order-averaged probability's side, even where the orders disagree
            debiased.append(float((v.p_first > 0.5) == pair["first_better"]))
        if use_first_order_only:
            v = combine(v.p_orders[:1])
        if v.choice == "tie":
            points.append(0.5)
        else:
            ok = (v.choice == "first") == pair["first_better"]
            points.append(float(ok))
            decisive.append(float(ok))
    return {"agreement": ci(points), "decisive_accuracy": ci(decisive), "tie_rate": round(1 - len(decisive) / len(points), 4),
            "pairs": len(points), "averaged_p_side_accuracy": ci(debiased), "points": points}


# ------------------------------------------------------------------ parts


def part_judge(work: Path, n_pairs: int) -> None:
    from alignment.run_dir import resolve_model_path
    from reward.ai_judge import LogprobJudge, judge_pairs
    from reward.principles import load_principles

    _, test = candidates(work)
    test = test[:n_pairs]
    before = os.getloadavg()[0]
    recipe = load(work, "world")
    cfg = recipe.labels.ai
    t = time.time()
    judge = LogprobJudge.from_pretrained(resolve_model_path(recipe), "bfloat16", cfg.template,
                                         load_principles(ROOT / cfg.principles), cfg.max_length)
    verdicts = judge_pairs(judge, [p["prompt"] for p in test], [p["first"] for p in test],
                           [p["second"] for p in test], swap=True, batch_size=8, progress=True)
    wall = time.time() - t
    swap, single = score_verdicts(test, verdicts), score_verdicts(test, verdicts, use_first_order_only=True)
    (work / "judge_verdicts.json").write_text(json.dumps([v.p_orders for v in verdicts]))
    a_rate = sum(v.p_orders[0] > 0.5 for v in verdicts) / len(verdicts)
    record("judge", before, judge="SmolLM2-135M-Instruct (untuned), bf16, logprob verdict", wall_s=round(wall, 1),
           pairs=len(test), with_swap={k: v for k, v in swap.items() if k != "points"},
           without_swap={k: v for k, v in single.items() if k != "points"},
           first_order_says_A_rate=round(a_rate, 4),
           mean_confidence=round(sum(v.confidence for v in verdicts) / len(verdicts), 4))


def part_rm(work: Path, n_pairs: int) -> None:
    from alignment.data.files import read_rows, write_rows
    from alignment.errors import UserError
    from alignment.ppo.held_out import paired_bootstrap_ci
    from alignment.run_dir import RunDir
    from reward.ai_judge import RewardModelJudge, judge_pairs
    from reward.labeling import run_labels_stage
    from reward.stage import train_reward

    label_rows, test = candidates(work)
    test = test[:n_pairs]
    before = os.getloadavg()[0]
    exports, label_stats = {}, {}
    arms = [("rm_ai", ["labels.source=ai"]), ("rm_ai_noswap", ["labels.source=ai", "labels.ai.swap=false"]),
            ("rm_simulated", ["labels.source=simulated"])]
    for arm, overrides in arms:
        recipe = load(work, arm, *overrides)
        run = RunDir(recipe)
        write_rows(label_rows, run.stage_dir("samples") / "candidates.jsonl")
        run.mark_done("samples", {"rows": len(label_rows)})
        t = time.time()
        try:
            exports[arm] = read_rows(run_labels_stage(recipe))
        except UserError as err:  # e.g. every swapped AI verdict was order-inconsistent: only ties
            label_stats[arm] = {"error": str(err), "wall_s": round(time.time() - t, 1)}
            print(f"{arm}: {err}")
            continue
        label_stats[arm] = {"rows": len(exports[arm]), "wall_s": round(time.time() - t, 1),
                            "judgments": json.loads((run.stage_dir("labels") / "metrics.json").read_text()).get("judgments")}
        print(f"{arm}: {len(exports[arm])} comparisons in {time.time() - t:.0f}s")
    # the swapped AI annotator may leave almost nothing but ties: an arm with under 20 labels is reported, not trained
    n = min(len(rows) for rows in exports.values() if len(rows) >= 20)
    results, points = {}, {}
    for arm, rows in exports.items():
        if len(rows) < n:
            continue
        subset = sorted(random.Random(0).sample(range(len(rows)), n))
        path = work / arm / "labels" / f"equal_{n}.jsonl"
        write_rows([rows[i] for i in subset], path)
        recipe = load(work, arm, "reward.init_from=base", f"reward.comparisons=[{path}]")
        t = time.time()
        metrics = train_reward(recipe, force=True)
        judge = RewardModelJudge.from_pretrained(str(work / arm / "reward"))
        verdicts = judge_pairs(judge, [p["prompt"] for p in test], [p["first"] for p in test],
                               [p["second"] for p in test], swap=True, batch_size=16)
        s = score_verdicts(test, verdicts)
        points[arm] = s.pop("points")
        results[arm] = {"labels": n, "of_exported": len(rows), "train_wall_s": round(time.time() - t, 1),
                        "held_out_accuracy": metrics.get("eval", {}).get("accuracy"), "gold_test": s}
    gold_agree = {}
    for arm, rows in exports.items():  # how often each label set itself agrees with gold
        from alignment.suite import gold_score

        ok = [float(gold_score(r["metadata"], r["chosen"]).score > gold_score(r["metadata"], r["rejected"]).score)
              for r in rows if gold_score(r["metadata"], r["chosen"]).score != gold_score(r["metadata"], r["rejected"]).score]
        gold_agree[arm] = {"labels_agreeing_with_gold": ci(ok), "gold_separated_labels": len(ok), "labels": len(rows)}
    diff = {f"{arm}_minus_rm_simulated": [round(v, 4) for v in paired_bootstrap_ci(points[arm], points["rm_simulated"])]
            for arm in points if arm != "rm_simulated"}
    record("rm", before, arms=results, labelling=label_stats, labels_vs_gold=gold_agree, ai_minus_simulated=diff, test_pairs=len(test))


def part_sft(work: Path) -> None:
    from alignment.data.stage import run_data_stage
    from alignment.gold_eval import GOLD_SPLITS, has_gold
    from alignment.data.files import read_rows
    from alignment.generation import generate
    from alignment.models import load_policy, load_tokenizer
    from alignment.ppo.held_out import paired_bootstrap_ci
    from alignment.run_dir import resolve_data_path
    from alignment.sft import train_sft
    from alignment.suite import gold_score

    before = os.getloadavg()[0]
    si = load(work, "sft_self_instruct")
    t = time.time()
    report_path = Path(si.output_dir) / "self_instruct" / "report.json"
    if not (report_path.parent / "COMPLETE.json").is_file():  # generated once; a rerun of this part reuses it
        gen = subprocess.run([sys.executable, "-m", "alignment.cli", "data", "generate", RECIPE,
                              f"output_dir={si.output_dir}"], cwd=ROOT, capture_output=True, text=True)
        print(gen.stdout, gen.stderr[-2000:])
        if gen.returncode:
            raise SystemExit(f"rlhf data generate failed ({gen.returncode})")
        report = json.loads(report_path.read_text())
        record("filters", before, proposals=report["proposals"], kept=report["kept"], removed=report["removed"],
               rounds={r: {"proposals": v["proposals"], "kept": v["kept"]} for r, v in report["rounds"].items()},
               generate_wall_s=round(time.time() - t, 1))
    arms = {"suite_only": load(work, "sft_suite_only"),
            "suite_plus_self_instruct": load(work, "sft_self_instruct", "data.sources=[{path: suite:sft}, "
                                             "{path: self_instruct:train, name: self_instruct}]")}
    scores, info = {}, {}
    for name, recipe in arms.items():
        t = time.time()
        run_data_stage(recipe, progress=False)  # a finished stage (an earlier run of this part) is reused
        train_sft(recipe)
        data = json.loads((Path(recipe.output_dir) / "data" / "COMPLETE.json").read_text())
        sft = Path(recipe.output_dir) / "sft"
        model, tok = load_policy(str(sft), recipe.model), load_tokenizer(str(sft), recipe.model)
        rows = {s: [r for r in read_rows(resolve_data_path(recipe, f"suite:{s}")) if has_gold(r)]
                for s in GOLD_SPLITS if s != "safety"}
        flat = [r for rs in rows.values() for r in rs]
        answers = generate(model, tok, [r["prompt"] for r in flat], max_new_tokens=recipe.eval.max_new_tokens,
                           temperature=0.0, batch_size=64, progress=True)
        golds = [gold_score(r["metadata"], a).score for r, a in zip(flat, answers)]
        scores[name] = {"all": golds}
        k = 0
        for split, rs in rows.items():
            scores[name][split] = golds[k : k + len(rs)]
            k += len(rs)
        info[name] = {"mixture_rows": data.get("rows"),
                      "wall_s": round(time.time() - t, 1),
                      "gold": {s: ci(v) for s, v in scores[name].items()}}
    diffs = {s: [round(v, 4) for v in paired_bootstrap_ci(scores["suite_plus_self_instruct"][s], scores["suite_only"][s])]
             for s in scores["suite_only"]}
    record("sft", before, arms=info, self_instruct_minus_suite_only=diffs,
           prompts={s: len(v) for s, v in scores["suite_only"].items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["judge", "rm", "sft", "filters", "all"], default="all")
    p.add_argument("--work", default=str(ROOT / "runs" / "ai_feedback"))
    p.add_argument("--pairs", type=int, default=300)
    args = p.parse_args()
    work = Path(args.work)
    if not (work / "world" / "suite" / "COMPLETE.json").is_file():
        from alignment.recipe import load_recipe
        from alignment.suite.world import build_world

        build_world(load_recipe(RECIPE, [f"output_dir={work / 'world'}"]))
    if args.part in ("judge", "all"):
        part_judge(work, args.pairs)
    if args.part in ("rm", "all"):
        part_rm(work, args.pairs)
    if args.part in ("sft", "filters", "all"):
        part_sft(work)


if __name__ == "__main__":
    main()
