"""`rlhf data`: inspect, clean and mix instruction data before any training.

    rlhf data generate configs/smollm2-135m-instruct.yaml self_instruct.rounds=2   # Self-Instruct
    rlhf data inspect train.jsonl [more files] [--recipe R] [key=value ...]
    rlhf data inspect configs/quickstart.yaml [key=value ...]
    rlhf data clean configs/quickstart.yaml [key=value ...]
    rlhf data mix configs/quickstart.yaml data.mixing.strategy=temperature data.mixing.temperature=2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alignment.errors import UserError

RECIPE_SUFFIXES = (".yaml", ".yml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>")
    sub.required = True
    p = sub.add_parser(
        "inspect",
        help="print a quality report and write report.json / report.html / findings.jsonl",
        description="Quality report of data files (JSONL, Parquet, datasets folder) or of a recipe's sources. "
        "Token lengths use the recipe's policy tokenizer; contamination is checked against its evaluation sets.",
    )
    p.add_argument("target", help="A data file or folder, suite:<split>, or a YAML recipe.")
    p.add_argument("rest", nargs="*", metavar="file|key.sub=value", help="More data files, and recipe overrides.")
    p.add_argument("--recipe", help="Recipe whose tokenizer, max_length, eval sets and filter settings apply to the files (default: the built-in defaults).")
    p.add_argument("--out", help="Folder for the report (default: <run dir>/data/inspect).")
    p.add_argument("--json", action="store_true", help="Print report.json instead of the summary.")
    for name, text in (
        ("generate", "grow an instruction set from a seed pool (Self-Instruct, the recipe's self_instruct section) "
                     "into <run dir>/self_instruct/train.jsonl, a source for data.sources (path: self_instruct:train)"),
        ("clean", "apply data.filters, mix the sources, write data/train.jsonl, manifest.jsonl and the report"),
        ("mix", "redo only the mixing of already cleaned sources (e.g. with new data.mixing overrides)"),
    ):
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("recipe", help="YAML recipe.")
        q.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Recipe overrides.")


def _inspect(args: argparse.Namespace) -> int:
    from alignment.data.report import text_summary, write_report
    from alignment.data.stage import inspect_recipe
    from alignment.recipe import load_recipe
    from alignment.run_dir import RunDir

    overrides = [a for a in args.rest if "=" in a]
    files = [a for a in args.rest if "=" not in a]
    is_recipe = Path(args.target).suffix in RECIPE_SUFFIXES
    if is_recipe and (files or args.recipe):
        raise UserError("give either a recipe or data files (with --recipe for their settings), not both")
    if is_recipe:
        recipe = load_recipe(args.target, overrides)
    else:
        files = [args.target] + files
        for f in files:
            if not f.startswith("suite:") and not Path(f).exists():
                raise UserError(f"{f}: file not found")
        recipe = load_recipe(args.recipe, overrides)
    out = Path(args.out) if args.out else RunDir(recipe).stage_dir("data", create=False) / "inspect"
    report, inspections = inspect_recipe(recipe, progress=sys.stderr.isatty(), files=None if is_recipe else files)
    write_report(report, inspections, out, plots=recipe.data.report_plots)
    print(json.dumps(report, indent=2) if args.json else text_summary(report, out))
    return 0


def _generate(recipe) -> int:
    from alignment.data.self_instruct import run_self_instruct

    path = run_self_instruct(recipe, force=True, progress=sys.stderr.isatty())
    report = json.loads((path.parent / "report.json").read_text(encoding="utf-8"))
    print(f"self-instruct: {report['kept']} of {report['proposals']} proposed instructions kept "
          f"({recipe.self_instruct.rounds} rounds from {report['seeds']} seeds) -> {path}")
    for name, r in report["removed"].items():
        print(f"  filter {name:<15} removed {r['count']:>5}  ({r['share']:.1%} of proposals)")
    print("add it to data.sources as {path: self_instruct:train}, then `rlhf data clean`")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        return _inspect(args)
    from alignment.data.report import text_summary
    from alignment.data.stage import remix, run_data_stage
    from alignment.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.action == "generate":
        return _generate(recipe)
    if args.action == "clean":
        path = run_data_stage(recipe, force=True, progress=sys.stderr.isatty())
    else:
        path = remix(recipe)
    report = json.loads((path.parent / "report.json").read_text(encoding="utf-8"))
    if args.action == "clean":
        print(text_summary(report))
        for group, counts in report["filters"].items():
            for name, c in counts.items():
                print(f"  filter {group}/{name:<14} dropped {c['dropped']:>7}  changed {c['changed']:>7}")
    for group, mix in report["mixture"].items():
        print(f"mixture {group}: {mix['total_rows']} rows ({mix['strategy']}) -> {mix['output']}")
        for name, s in mix["sources"].items():
            print(f"  {name:<24} requested {s['requested_share']:.2%}  achieved {s['achieved_share']:.2%}  rows {s['rows']}")
    print(f"manifest: {path.parent / 'manifest.jsonl'}; report: {path.parent / 'report.html'}")
    return 0
