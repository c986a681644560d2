"""`rlhf grpo <recipe> [key=value ...]`: GRPO (TRL) with the reward model as reward function."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "GRPO through TRL's GRPOTrainer from the SFT checkpoint, scored by the reward model (normalised, clipped, "
        "missing-EOS penalty, as in PPO), KL to the SFT reference. Writes the policy, metrics.jsonl and "
        "metrics.json (held-out gold, KL k1/k3, gain over SFT) to <output_dir>/grpo/."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Retrain even if the stage is complete.")


def main(args: argparse.Namespace) -> int:
    from alignment.commands.dpo import print_outcome
    from alignment.online_rl import train_online
    from alignment.run_dir import RunDir, ensure_offline_world

    recipe = load_from_args(args)
    ensure_offline_world(recipe)
    RunDir(recipe).save_recipe()
    print_outcome("grpo", train_online(recipe, "grpo", force=args.force))
    return 0
