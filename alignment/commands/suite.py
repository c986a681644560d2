"""`rlhf suite <recipe>`: build the offline world and say what is in it.

Every stage that uses the offline default builds the world itself when it is missing; this
command exists to build it explicitly and to look at it: rows per split, and the
demonstrations' own mean gold score, the ceiling that plain imitation aims at.
"""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from alignment.suite.world import build_world

    recipe = load_from_args(args)
    world = build_world(recipe)
    info = world.summary
    print(f"suite: {world.suite_dir}")
    print(f"base model: {world.model_dir}")
    for split, n in info["rows"].items():
        print(f"  {split:<26} {n:>6} rows")
    print(
        f"demonstrations' mean gold: {info['demo_mean_gold']:.3f} "
        f"(task rows only: {info['task_demo_mean_gold']:.3f})"
    )
    corrupt = {k: v for k, v in info["corruptions"].items() if k != "none"}
    print(f"corrupted demonstrations: {sum(corrupt.values())} ({', '.join(f'{k} {v}' for k, v in corrupt.items())})")
    return 0
