"""`rlhf run <recipe>`: the whole loop, stage after stage, resumable."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a recipe's stages in order (pipeline.stages): data -> sft -> samples -> labels -> "
        "reward -> ppo/dpo -> eval. Completed stages are skipped and an interrupted one resumes, "
        "so re-running after a failure or a kill continues where it stopped. Logs go to "
        "<output_dir>/logs/, a summary to summary.json and the report to report.html."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--from", dest="from_stage", metavar="STAGE", help="Rerun from this stage on (clears it and later ones).")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan and which steps are done; run nothing.")


def main(args: argparse.Namespace) -> int:
    from alignment.pipeline import SMOKE_OVERRIDES, run_pipeline
    from alignment.recipe import load_recipe

    recipe = load_from_args(args)
    if recipe.pipeline.smoke:  # shrink every stage, then let the user's own overrides win
        recipe = load_recipe(args.recipe, SMOKE_OVERRIDES + list(args.overrides))
    return run_pipeline(recipe, from_stage=args.from_stage, dry_run=args.dry_run)
