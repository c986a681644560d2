"""`rlhf ppo <recipe> [key=value ...]`: PPO against the reward model with KL control."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args
from alignment.commands.dpo import print_outcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "PPO (actor-critic) from the SFT checkpoint against the reward model, with a KL penalty to the "
        "frozen SFT reference (fixed or adaptive beta). Writes the policy (save_pretrained), critic/, "
        "metrics.jsonl, TensorBoard logs and metrics.json to <output_dir>/ppo/. A killed run resumes from "
        "its last checkpoint. Several processes: accelerate launch --config_file configs/accelerate/ddp.yaml "
        "-m alignment.cli ppo <recipe>."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Retrain even if the stage is complete.")


def main(args: argparse.Namespace) -> int:
    from alignment.ppo.trainer import train_ppo
    from alignment.run_dir import RunDir, ensure_offline_world

    recipe = load_from_args(args)
    ensure_offline_world(recipe)
    RunDir(recipe).save_recipe()
    summary = train_ppo(recipe, force=args.force)
    print_outcome("ppo", summary)
    return 0
