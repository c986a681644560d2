"""What every recipe-driven command shares: the recipe argument and the run directory."""

from __future__ import annotations

import argparse

from alignment.recipe import Recipe, load_recipe


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="YAML recipe (see configs/quickstart.yaml).")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="Override any recipe field, e.g. sft.learning_rate=1e-4 seed=1 "
        "data.sources.0.path=my.jsonl. Values are parsed as YAML.",
    )


def load_from_args(args: argparse.Namespace) -> Recipe:
    return load_recipe(args.recipe, args.overrides)
