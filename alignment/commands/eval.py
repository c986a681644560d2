"""`rlhf eval`: compare candidates with a baseline and exit non-zero when a gate fails.

    rlhf eval --baseline runs/q/sft --candidate runs/q/ppo --prompts suite:eval_seen \
        --reward runs/q/reward --gates configs/gates/default.yaml --recipe configs/quickstart.yaml

Exit status: 0 when every candidate passes its gates, 1 when a gate fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.errors import UserError

DEFAULT_GATES = Path(__file__).resolve().parents[2] / "configs" / "gates" / "default.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", required=True, metavar="CKPT", help="The checkpoint to compare against.")
    parser.add_argument("--candidate", required=True, action="append", metavar="CKPT",
                        help="A checkpoint to judge; repeat for several (e.g. checkpoints of one run).")
    parser.add_argument("--prompts", action="append", metavar="FILE|suite:SPLIT",
                        help="Prompt set; repeat for several (default: the recipe's eval.prompts).")
    parser.add_argument("--reward", metavar="RM", help="Reward model checkpoint for win rates and reward.")
    parser.add_argument("--reference", metavar="CKPT",
                        help="Reference policy for KL (default: recipe eval.reference, else the baseline).")
    parser.add_argument("--gates", metavar="YAML", help=f"Regression gates (default: recipe eval.gates, else {DEFAULT_GATES.name}).")
    parser.add_argument("--no-gates", action="store_true", help="Report only; never fail on a gate.")
    parser.add_argument("--out", metavar="DIR", help="Output folder (default: <recipe output_dir>/eval).")
    parser.add_argument("--recipe", metavar="YAML",
                        help="Recipe for eval settings and for resolving suite: prompt sets (default: built-in defaults).")
    parser.add_argument("--max-prompts", type=int, metavar="N", help="Use only the first N prompts of each set.")
    parser.add_argument("--cache", metavar="DIR", help="Generation cache folder (default: recipe eval.cache_dir, else $RLHF_CACHE or ~/.cache/rlhf/generations).")
    parser.add_argument("--no-cache", action="store_true", help="Always regenerate.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Recipe overrides, e.g. eval.temperature=0.7.")


def model_names(baseline: str, candidates: list[str]) -> tuple[dict[str, str], str]:
    """Readable, unique names from checkpoint paths: the folder name, or more of the path.

    A candidate that is the baseline's own checkpoint (a self-check) is "<name> (candidate)".
    """
    paths = [baseline, *candidates]
    names: list[str] = []
    for i, p in enumerate(paths):
        parts = Path(p.rstrip("/")).parts or (p,)
        name = parts[-1]
        if p in paths[:i]:
            name = f"{name} (candidate)"
        elif name in names and len(parts) > 1:
            name = "/".join(parts[-2:])
        while name in names:
            name = f"{name} #{i}"
        names.append(name)
    return dict(zip(names, paths)), names[0]


def main(args: argparse.Namespace) -> int:
    from alignment.evaluation import compare
    from alignment.evaluation.arms import stage_or_path
    from alignment.evaluation.gates import load_gates
    from alignment.evaluation.generation_cache import GenerationCache, default_root
    from alignment.evaluation.prompts import load_prompt_sets
    from alignment.evaluation.runner import EvalSettings, evaluate_models
    from alignment.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.max_prompts is not None:
        if args.max_prompts < 1:
            raise UserError(f"--max-prompts must be at least 1, got {args.max_prompts}")
        recipe.eval.max_prompts_per_set = args.max_prompts
    settings = EvalSettings.from_recipe(recipe)
    known = compare.known_metrics(compare.metric_specs(settings.retention_set))
    gates_path = None if args.no_gates else (args.gates or recipe.eval.gates or str(DEFAULT_GATES))
    if gates_path == str(DEFAULT_GATES) and not DEFAULT_GATES.is_file():
        raise UserError(f"default gates file {DEFAULT_GATES} not found; pass --gates FILE or --no-gates")
    gates = load_gates(gates_path, known) if gates_path else []  # before any generation: fail fast

    models, baseline = model_names(args.baseline, args.candidate)
    reference = args.reference or (stage_or_path(recipe, recipe.eval.reference) if recipe.eval.reference else args.baseline)
    prompts = load_prompt_sets(args.prompts or recipe.eval.prompts, recipe, recipe.eval.max_prompts_per_set)
    cache = GenerationCache(None if args.no_cache else (args.cache or recipe.eval.cache_dir or default_root()))
    out = Path(args.out or Path(recipe.output_dir) / "eval")
    metrics = evaluate_models(
        models, baseline, prompts, settings, out, reward=args.reward, reference=reference, gates=gates,
        cache=cache, model_cfg=recipe.model, title=f"Regression evaluation against {baseline}",
    )
    print_summary(metrics, out)
    return 0 if metrics["passed"] else 1


def print_summary(metrics: dict, out: Path) -> None:
    cache = metrics["cache"]
    print(f"eval: {metrics['prompts']['n']} prompts; generation cache {cache['hits']} hits, {cache['misses']} misses")
    for name, comp in metrics["comparisons"].items():
        verdict = "PASS" if comp["passed"] else "FAIL"
        print(f"eval: {name} vs {metrics['baseline']}: {verdict}")
        for g in comp["gates"]:
            if g["status"] == "fail":
                print(f"  gate FAIL: {g['gate']}: {g['evidence']}")
        skipped = [g["metric"] for g in comp["gates"] if g["status"] == "skipped"]
        if skipped:
            print(f"  {len(skipped)} optional gate(s) skipped, metric not measured: {', '.join(skipped)}")
        if comp["significant_regressions"]:
            print(f"  significant regressions: {', '.join(comp['significant_regressions'])}")
        if comp["significant_improvements"]:
            print(f"  significant improvements: {', '.join(comp['significant_improvements'])}")
        for w in comp["warnings"]:
            print(f"  warning: {w}")
    print(f"eval: report in {out / 'report.html'} (and report.md, metrics.json)")
