"""`rlhf reward <recipe> [key=value ...]`: train a Bradley–Terry reward model on comparisons."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a reward model (Bradley-Terry, on TRL's RewardTrainer) on comparisons: the label store's "
        "export in <output_dir>/labels/, labels.file, or reward.comparisons files (preference or ranking "
        "rows). Writes the checkpoint, reward_stats.json, metrics.json and calibration.png to "
        "<output_dir>/reward/; an interrupted run resumes; a completed one is skipped unless --force."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Retrain even if the stage is complete.")


def main(args: argparse.Namespace) -> int:
    from reward.stage import train_reward

    train_reward(load_from_args(args), force=args.force)
    return 0
