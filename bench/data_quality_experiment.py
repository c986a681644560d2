"""Does cleaning pay, and does decontamination remove a leak's inflation? Two SFT experiments.

    python bench/data_quality_experiment.py [--work /tmp/dq_experiment] [--seed 0] [--quick]

Every run is the quickstart recipe (configs/quickstart.yaml: 4 epochs, batch 32, lr 2e-3)
on the same offline world (suite.n_eval=400: the suite has too few distinct safety prompts
for more), with its own output folder and the same seed. Gold is greedy on held-out prompts
of the seen task families: `eval_seen` (the split `rlhf sft` reports first, the headline),
`eval_heldout_phrasing` and `eval_heldout_constraints` (400 each, also reported pooled),
with 95% percentile-bootstrap CIs over prompts; differences between runs are paired (same
prompts). Each SFT takes 2-8 minutes on 2 shared CPU cores;
--quick trains 20 steps on 60 prompts (a dry run of the script, not figures).

1. **Clean vs dirty.** Defects *replace* good rows (`inject_defects(..., keep_size=True)`: the
   dirty set has the suite's 4,000 rows, as a real scrape with duplicates has fewer distinct
   good rows, not more rows). Each kind hits 10% of the rows: exact duplicates, near
   duplicates (case/spacing changed, a word repeated, 30% upper-cased), empty responses,
   echoes (the instruction as the answer), mojibake, control characters, and PII appended to
   the answer ("Reach me at ... for details.", 10% split over e-mails, phones, cards, keys).
   Empty responses, echoes, PII tails and upper-cased near copies teach wrong behaviour;
   duplicates only re-weight. Runs:
   - `pristine`: the suite's demonstrations before damage (what the defects cost);
   - `dirty`: the damaged rows, quickstart settings;
   - `clean`: what `rlhf data clean` keeps (default filters + near-dedup + PII dropped),
     quickstart settings (4 epochs over fewer rows, so fewer optimiser steps);
   - `clean_equal_steps`: the same cleaned rows for as many optimiser steps as `dirty`
     (equal compute: same steps, batch size and learning-rate schedule).
   Also reported: how often each model's own answers carry the defects (empty, echo, PII,
   mojibake), which shows whether the damaged rows taught their behaviour.
2. **Leak.** 5% of the prompts of each of those three splits (60 of 1,200), with their
   reference answers (gold 1.0), replace as many of the demonstrations SFT trains on, in place
   (same size, same order, same held-out rows as the no-leak run). The held-out *family* is
   left out: 20 examples of a family never trained on would teach the family itself and lift
   its unleaked prompts too, which is a different effect from memorising a leaked prompt.
   Runs: `pristine` (no leak; shared with experiment 1), `leak`, and
   `leak_decontaminated` (the data stage with only the decontaminate filter). Figures: gold on
   the leaked prompts and on the other prompts of the same splits in each run; the inflation is
   (leaked - other) in the leak run against the same difference without the leak, and
   decontamination should bring it back.

Results: printed, written to <work>/results.jsonl and appended to
bench/results/data_quality.jsonl (--no-append skips that).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
HEADLINE = "eval_seen"
GOLD_SPLITS = ("eval_seen", "eval_heldout_phrasing", "eval_heldout_constraints")
EVAL_SETS = ("eval_seen", "eval_heldout_phrasing", "eval_heldout_family", "eval_heldout_constraints")
ONLY_DECONTAMINATE = [f"data.filters.{f}=null" for f in ("encoding", "empty", "echo", "exact_dedup")]
DEFECT_RATES = {k: 0.10 for k in ("exact_duplicate", "near_duplicate", "empty", "echo", "mojibake", "control_chars")}
DEFECT_RATES |= {k: 0.025 for k in ("pii_email", "pii_phone", "pii_card", "pii_api_key")}
LEAK_RATE = 0.05


def _recipe(work: Path, name: str, seed: int, quick: bool, *overrides: str):
    from alignment.recipe import load_recipe

    extra = ["sft.max_steps=20"] if quick else []
    return load_recipe(
        QUICKSTART,
        [f"name={name}", f"output_dir={work / name}", f"seed={seed}", "sft.gold_eval_prompts=0",
         "sft.report_to=[none]", "suite.n_eval=400", *overrides, *extra],
    )


def _write(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _ci(values) -> dict:
    from alignment.stats import bootstrap_mean_ci

    mean, low, high = bootstrap_mean_ci(np.asarray(values, dtype=float))
    return {"mean": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}


def _fmt(ci: dict) -> str:
    return f"{ci['mean']:.3f} [{ci['ci95'][0]:.3f}, {ci['ci95'][1]:.3f}]"


def _behaviour(prompts: list[dict], responses: list[str]) -> dict:
    """Share of the model's own answers that carry each defect the dirty data holds."""
    from alignment.data.defects import encoding_defects, pii_defects, response_defects

    counts = {"empty_or_trivial": 0, "echo": 0, "pii": 0, "encoding": 0, "upper_case": 0}
    for p, r in zip(prompts, responses):
        kinds = {f.kind for f in response_defects(p["prompt"], "r", r)}
        counts["empty_or_trivial"] += bool(kinds & {"empty", "trivial"})
        counts["echo"] += "echo" in kinds
        counts["pii"] += bool(pii_defects("r", r)) or "reach me" in r.lower()
        counts["encoding"] += bool(encoding_defects("r", r))
        letters = [c for c in r if c.isalpha()]
        counts["upper_case"] += len(letters) >= 4 and all(c.isupper() for c in letters)
    return {k: round(v / max(len(responses), 1), 4) for k, v in counts.items()}


def _evaluate(recipe, prompts: list[dict]) -> tuple[np.ndarray, dict]:
    """Per-prompt greedy gold of the run's SFT model, and a summary (gold breakdown, behaviour)."""
    from alignment.generation import generate
    from alignment.gold_eval import score_responses
    from alignment.models import load_policy, load_tokenizer
    from alignment.suite import gold_score

    folder = str(Path(recipe.output_dir) / "sft")
    tokenizer = load_tokenizer(folder, recipe.model)
    model = load_policy(folder, recipe.model)
    responses = generate(model, tokenizer, [p["prompt"] for p in prompts], max_new_tokens=recipe.sft.max_new_tokens,
                         seed=recipe.seed)
    scores = np.array([gold_score(p["metadata"], r).score for p, r in zip(prompts, responses)])
    summary = score_responses(prompts, responses)
    return scores, {"breakdown": {k: round(v, 4) for k, v in summary["breakdown"].items()},
                    "mean_response_words": round(summary["mean_response_words"], 2),
                    "defects_in_answers": _behaviour(prompts, responses)}


def _train(recipe, clean: bool) -> dict:
    from alignment.data.stage import run_data_stage
    from alignment.sft import train_sft

    start = time.time()
    if clean:
        run_data_stage(recipe, progress=False)
    metrics = train_sft(recipe)
    return {"rows": metrics["train_rows"] + metrics["eval_rows"], "train_rows": metrics["train_rows"],
            "steps": metrics["steps"], "train_loss": round(metrics["train_loss"], 4),
            "eval_loss": None if metrics.get("eval_loss") is None else round(metrics["eval_loss"], 4),
            "seconds": round(time.time() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/dq_experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 training steps per run, 60 prompts: checks the script, not the figures")
    parser.add_argument("--only", choices=["clean", "leak"], help="Run one experiment (the pristine run is shared).")
    parser.add_argument("--eval-prompts", type=int, default=400, help="Prompts evaluated per split (at most suite.n_eval=400).")
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/data_quality.jsonl.")
    args = parser.parse_args()
    work = Path(args.work)
    if args.quick:
        args.eval_prompts = min(args.eval_prompts, 20)

    import torch

    torch.set_num_threads(1)
    from alignment.data.files import read_rows
    from alignment.data.synthetic import inject_defects
    from alignment.run_dir import ensure_offline_world, resolve_data_path

    world = _recipe(work, "world", args.seed, args.quick)
    ensure_offline_world(world)
    sft_rows = read_rows(resolve_data_path(world, "suite:sft"))
    prompts = [p for s in GOLD_SPLITS for p in read_rows(resolve_data_path(world, f"suite:{s}"))[: args.eval_prompts]]
    headline = np.array([p["metadata"]["split"] == HEADLINE for p in prompts])
    # every run reads the world's files, so all of them train and evaluate on the same suite
    evals = [resolve_data_path(world, f"suite:{s}") for s in EVAL_SETS]
    common = [f"model.name_or_path={Path(world.output_dir) / 'base'}", f"data.eval_sets={json.dumps(evals)}", "eval.prompts=[]"]
    source = lambda path, name: f"data.sources={json.dumps([{'path': str(path), 'name': name}])}"
    results: dict = {"seed": args.seed, "quick": args.quick, "headline_split": HEADLINE, "pooled_splits": GOLD_SPLITS,
                     "n_prompts": {"headline": int(headline.sum()), "pooled": len(prompts)},
                     "settings": "configs/quickstart.yaml (4 epochs, batch 32, lr 2e-3), greedy gold"}
    runs: dict[str, dict] = {}
    scores: dict[str, np.ndarray] = {}

    def run(name: str, recipe, clean: bool = False) -> None:
        runs[name] = _train(recipe, clean)
        scores[name], more = _evaluate(recipe, prompts)
        runs[name] |= {"gold": _ci(scores[name][headline]), "gold_pooled": _ci(scores[name]), **more}
        print(f"[{name}] {runs[name]['rows']} rows, {runs[name]['steps']} steps, {runs[name]['seconds']:.0f}s; "
              f"{HEADLINE} gold {_fmt(runs[name]['gold'])}, pooled {_fmt(runs[name]['gold_pooled'])}; "
              f"answers with defects {more['defects_in_answers']}", flush=True)

    run("pristine", _recipe(work, "pristine", args.seed, args.quick, *common, source(resolve_data_path(world, "suite:sft"), "suite")))

    if args.only in (None, "clean"):
        dirty, truth = inject_defects(sft_rows, DEFECT_RATES, seed=args.seed, keep_size=True)
        dirty_path = _write(dirty, work / "dirty.jsonl")
        run("dirty", _recipe(work, "dirty", args.seed, args.quick, *common, source(dirty_path, "dirty")))
        cleaning = ["data.filters.pii.action=drop", "data.filters.near_dedup={}"]
        run("clean", _recipe(work, "clean", args.seed, args.quick, *common, source(dirty_path, "dirty"), *cleaning), clean=True)
        equal = _recipe(work, "clean_equal_steps", args.seed, args.quick, *common, source(dirty_path, "dirty"), *cleaning,
                        f"sft.max_steps={runs['dirty']['steps']}")
        run("clean_equal_steps", equal, clean=True)
        report = json.loads((Path(equal.output_dir) / "data" / "report.json").read_text())
        manifest = [json.loads(line) for line in (Path(equal.output_dir) / "data" / "manifest.jsonl").read_text().splitlines()]
        dropped = {e["row"] - 1 for e in manifest if e["action"] == "drop"}
        damaged = {i for i, kinds in enumerate(truth) if kinds & {"exact_duplicate", "near_duplicate", "empty", "echo"}
                   or any(k.startswith("pii_") for k in kinds)}
        results["clean_vs_dirty"] = {
            "defect_rates": DEFECT_RATES,
            "rows": {"dirty": len(dirty), "undamaged": sum(not k for k in truth), "clean": report["mixture"]["sft"]["total_rows"]},
            "filters": {k: v["dropped"] + v["changed"] for k, v in report["filters"]["sft"].items()},
            "cleaner": {"dropped": len(dropped), "dropped_undamaged_rows": len(dropped - damaged),
                        "missed_droppable_rows": len(damaged - dropped)},
            "runs": {k: runs[k] for k in ("pristine", "dirty", "clean", "clean_equal_steps")},
            "paired": {
                f"{which}_{a}_minus_{b}": _ci((scores[a] - scores[b])[m])
                for which, m in (("headline", headline), ("pooled", np.ones_like(headline)))
                for a, b in (("clean", "dirty"), ("clean_equal_steps", "dirty"), ("dirty", "pristine"))
            },
        }
        print(json.dumps(results["clean_vs_dirty"]["paired"]), flush=True)

    if args.only in (None, "leak"):
        rng = random.Random(args.seed)
        leaked_idx: set[int] = set()
        for split in GOLD_SPLITS:  # 5% of each split
            where = [i for i, p in enumerate(prompts) if p["metadata"]["split"] == split]
            leaked_idx |= set(rng.sample(where, max(1, round(LEAK_RATE * len(where)))))
        leaked = [p for i, p in enumerate(prompts) if i in leaked_idx]
        leak_rows = [
            {"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["metadata"]["reference"]}],
             "metadata": {**p["metadata"], "leaked": True}}
            for p in leaked
        ]
        # Each leaked row takes the place of one demonstration that SFT trains on (not of one in the
        # 5% it holds out for its eval loss), in place: the leak run sees the same rows in the same
        # order as the no-leak run except those 60, so the comparison is not blurred by a reshuffle.
        from alignment.sft import split_rows

        trained, _ = split_rows(list(range(len(sft_rows))), world.data.eval_fraction, args.seed)
        replaced = rng.sample(sorted(trained), len(leak_rows))
        mixed = list(sft_rows)
        for i, row in zip(replaced, leak_rows):
            mixed[i] = row
        leak_path = _write(mixed, work / "leaked.jsonl")
        run("leak", _recipe(work, "leak", args.seed, args.quick, *common, source(leak_path, "leaked")))
        decon = _recipe(work, "leak_decontaminated", args.seed, args.quick, *common, source(leak_path, "leaked"), *ONLY_DECONTAMINATE)
        run("leak_decontaminated", decon, clean=True)
        mask = np.array([i in leaked_idx for i in range(len(prompts))])
        manifest = [json.loads(line) for line in (Path(decon.output_dir) / "data" / "manifest.jsonl").read_text().splitlines()]
        leaked_rows = {i + 1 for i, r in enumerate(mixed) if r.get("metadata", {}).get("leaked")}
        removed = {e["row"] for e in manifest if e["filter"] == "decontaminate"}
        gap = lambda name: scores[name][mask].mean() - scores[name][~mask].mean()

        def gap_ci(name: str, minus: str | None = None, n: int = 2000) -> dict:
            # bootstrap over prompts, resampling leaked and other prompts separately; paired across runs
            r = np.random.default_rng(0)
            a, b = np.flatnonzero(mask), np.flatnonzero(~mask)
            draws = []
            for _ in range(n):
                ia, ib = r.choice(a, a.size), r.choice(b, b.size)
                d = scores[name][ia].mean() - scores[name][ib].mean()
                if minus:
                    d -= scores[minus][ia].mean() - scores[minus][ib].mean()
                draws.append(d)
            point = gap(name) - (gap(minus) if minus else 0.0)
            return {"mean": round(float(point), 4), "ci95": [round(float(np.quantile(draws, 0.025)), 4), round(float(np.quantile(draws, 0.975)), 4)]}

        results["leak"] = {
            "leaked_prompts": int(mask.sum()), "of": len(prompts), "leak_rows_in_training": len(leak_rows),
            "decontamination_removed": len(removed), "removed_leaked_rows": len(removed & leaked_rows),
            "removed_other_rows": len(removed - leaked_rows),
            "runs": {k: {**runs[k], "gold_on_leaked": _ci(scores[k][mask]), "gold_on_other": _ci(scores[k][~mask])}
                     for k in ("pristine", "leak", "leak_decontaminated")},
            "leaked_minus_other": {k: gap_ci(k) for k in ("pristine", "leak", "leak_decontaminated")},
            "inflation_vs_no_leak": gap_ci("leak", "pristine"),
            "after_decontamination_vs_no_leak": gap_ci("leak_decontaminated", "pristine"),
            "leaked_prompts_paired": {"leak_minus_no_leak": _ci(scores["leak"][mask] - scores["pristine"][mask]),
                                      "decontaminated_minus_no_leak": _ci(scores["leak_decontaminated"][mask] - scores["pristine"][mask])},
        }
        print(json.dumps({k: results["leak"][k] for k in ("leaked_minus_other", "inflation_vs_no_leak", "after_decontamination_vs_no_leak")}), flush=True)

    print(json.dumps(results, indent=2))
    _write([results], work / "results.jsonl")
    if not args.no_append and not args.quick:
        from results import append_result

        print(f"appended to {append_result('data_quality', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
