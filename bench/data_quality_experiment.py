"""Does cleaning pay, and does decontamination remove a leak's inflation? Two SFT experiments.

    python bench/data_quality_experiment.py [--work /tmp/dq_experiment] [--seed 0] [--quick]

1. **Clean vs dirty.** The suite's demonstrations get each kind of defect at 10% (exact and
   near duplicates, empty responses, echoes, mojibake, control characters, and PII, whose
   10% is split over e-mails, phones, cards and keys). SFT on the dirty rows is compared with
   SFT on what `rlhf data clean` keeps (default filters, plus near-dedup and PII dropped). Figure: held-out gold (eval_seen,
   eval_heldout_phrasing, eval_heldout_family pooled) with 95% bootstrap CIs, and the paired
   difference.
2. **Leak.** 5% of the held-out-family prompts are copied, with their reference answers,
   into the clean demonstrations. Three SFT runs: no leak, leak, leak + decontamination
   (the data stage with only the decontaminate filter). Figure: gold on the leaked prompts
   in each run (the inflation is leak - no leak; decontamination should bring it back), and
   on the held-out-family prompts that were not leaked.

Every run uses the quickstart recipe with its own output folder and the same seed. Each SFT
takes minutes on 2 CPU cores; --quick shortens training (for a dry run of the script, not
for the figures).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
GOLD_SPLITS = ("eval_seen", "eval_heldout_phrasing", "eval_heldout_family")
ONLY_DECONTAMINATE = [f"data.filters.{f}=null" for f in ("encoding", "empty", "echo", "exact_dedup")]


def _recipe(work: Path, name: str, seed: int, quick: bool, *overrides: str, epochs: float | None = None):
    from alignment.recipe import load_recipe

    extra = ["sft.epochs=1", "sft.max_steps=20"] if quick else ([f"sft.epochs={epochs}"] if epochs else [])
    return load_recipe(
        QUICKSTART,
        [f"name={name}", f"output_dir={work / name}", f"seed={seed}", "sft.gold_eval_prompts=0",
         "sft.report_to=[none]", "suite.n_eval=400", *extra, *overrides],
    )


def _write(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _gold_scores(recipe, prompts: list[dict]) -> np.ndarray:
    """Per-prompt gold score of the run's SFT model (greedy)."""
    from alignment.generation import generate
    from alignment.models import load_policy, load_tokenizer
    from alignment.suite import gold_score

    folder = str(Path(recipe.output_dir) / "sft")
    tokenizer = load_tokenizer(folder, recipe.model)
    model = load_policy(folder, recipe.model)
    responses = generate(model, tokenizer, [p["prompt"] for p in prompts], max_new_tokens=recipe.sft.max_new_tokens)
    return np.array([gold_score(p["metadata"], r).score for p, r in zip(prompts, responses)])


def _ci(values: np.ndarray) -> str:
    from alignment.stats import bootstrap_mean_ci

    mean, low, high = bootstrap_mean_ci(values)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _train(recipe, clean: bool) -> float:
    from alignment.data.stage import run_data_stage
    from alignment.sft import train_sft

    start = time.time()
    if clean:
        run_data_stage(recipe, progress=False)
    train_sft(recipe)
    return time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/dq_experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 training steps per run: checks the script, not the figures")
    parser.add_argument("--only", choices=["clean", "leak"], help="Run one experiment.")
    parser.add_argument("--epochs", type=float, help="SFT epochs (default: the quickstart's).")
    parser.add_argument("--eval-per-split", type=int, default=200, help="Held-out prompts per split for experiment 1.")
    args = parser.parse_args()
    work = Path(args.work)
    if args.quick:
        args.eval_per_split = min(args.eval_per_split, 30)

    from alignment.data.files import read_rows
    from alignment.data.synthetic import inject_defects
    from alignment.run_dir import ensure_offline_world, resolve_data_path

    world = _recipe(work, "world", args.seed, args.quick)
    ensure_offline_world(world)
    suite = {s: read_rows(resolve_data_path(world, f"suite:{s}")) for s in ("sft", *GOLD_SPLITS)}
    # every run reads the world's files, so all of them train and evaluate on the same suite
    sft_path = resolve_data_path(world, "suite:sft")
    evals = [resolve_data_path(world, f"suite:{s}") for s in GOLD_SPLITS]
    common = [f"model.name_or_path={Path(world.output_dir) / 'base'}", f"data.eval_sets={json.dumps(evals)}", "eval.prompts=[]"]
    heldout = [p for s in GOLD_SPLITS for p in suite[s][: args.eval_per_split]]
    results: dict = {"seed": args.seed, "quick": args.quick}

    if args.only in (None, "clean"):
        rates = {k: 0.10 for k in ("exact_duplicate", "near_duplicate", "empty", "echo", "mojibake", "control_chars")}
        rates |= {k: 0.025 for k in ("pii_email", "pii_phone", "pii_card", "pii_api_key")}
        dirty, _ = inject_defects(suite["sft"], rates, seed=args.seed)
        dirty_path = _write(dirty, work / "dirty.jsonl")
        src = [f"data.sources={json.dumps([{'path': str(dirty_path), 'name': 'dirty'}])}"]
        runs = {
            "dirty": _recipe(work, "dirty", args.seed, args.quick, *common, *src, epochs=args.epochs),
            "clean": _recipe(work, "clean", args.seed, args.quick, *common, *src, "data.filters.pii.action=drop",
                             "data.filters.near_dedup={}", epochs=args.epochs),
        }
        scores = {}
        for name, recipe in runs.items():
            seconds = _train(recipe, clean=name == "clean")
            scores[name] = _gold_scores(recipe, heldout)
            print(f"[clean vs dirty] {name}: trained in {seconds:.0f}s; held-out gold {_ci(scores[name])}", flush=True)
        report = json.loads((Path(runs["clean"].output_dir) / "data" / "report.json").read_text())
        results["clean_vs_dirty"] = {
            "rows": {"dirty": len(dirty), "clean": report["mixture"]["sft"]["total_rows"]},
            "filters": {k: v["dropped"] + v["changed"] for k, v in report["filters"]["sft"].items()},
            "gold": {k: _ci(v) for k, v in scores.items()},
            "clean_minus_dirty_paired": _ci(scores["clean"] - scores["dirty"]),
            "n_prompts": len(heldout),
        }

    if args.only in (None, "leak"):
        family = suite["eval_heldout_family"]
        rng = random.Random(args.seed)
        leaked_idx = sorted(rng.sample(range(len(family)), max(1, round(0.05 * len(family)))))
        leaked = [family[i] for i in leaked_idx]
        rest = [p for i, p in enumerate(family) if i not in set(leaked_idx)]
        leak_rows = [
            {"messages": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["metadata"]["reference"]}],
             "metadata": {**p["metadata"], "leaked": True}}
            for p in leaked
        ]
        leak_path = _write(suite["sft"] + leak_rows, work / "leaked.jsonl")
        runs = {
            "no_leak": _recipe(work, "no_leak", args.seed, args.quick, *common, f"data.sources={json.dumps([{'path': sft_path}])}",
                               epochs=args.epochs),
            "leak": _recipe(work, "leak", args.seed, args.quick, *common, f"data.sources={json.dumps([{'path': str(leak_path)}])}",
                            epochs=args.epochs),
            "leak_decontaminated": _recipe(
                work, "leak_decon", args.seed, args.quick, *common, f"data.sources={json.dumps([{'path': str(leak_path)}])}",
                *ONLY_DECONTAMINATE, epochs=args.epochs,
            ),
        }
        scores = {}
        for name, recipe in runs.items():
            seconds = _train(recipe, clean=name == "leak_decontaminated")
            scores[name] = (_gold_scores(recipe, leaked), _gold_scores(recipe, rest))
            print(f"[leak] {name}: trained in {seconds:.0f}s; leaked prompts {_ci(scores[name][0])}; "
                  f"other held-out-family prompts {_ci(scores[name][1])}", flush=True)
        manifest = Path(runs["leak_decontaminated"].output_dir) / "data" / "manifest.jsonl"
        removed = [json.loads(line) for line in manifest.read_text().splitlines()]
        results["leak"] = {
            "leaked_prompts": len(leaked), "of": len(family),
            "removed_by_decontamination": sum(e["filter"] == "decontaminate" for e in removed),
            "removed_leaked_rows": sum(e["filter"] == "decontaminate" and e["row"] > len(suite["sft"]) for e in removed),
            "gold_on_leaked": {k: _ci(v[0]) for k, v in scores.items()},
            "gold_on_other_heldout_family": {k: _ci(v[1]) for k, v in scores.items()},
            "inflation_paired": _ci(scores["leak"][0] - scores["no_leak"][0]),
            "after_decontamination_paired": _ci(scores["leak_decontaminated"][0] - scores["no_leak"][0]),
        }
    print(json.dumps(results, indent=2))
    _write([results], work / "results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
