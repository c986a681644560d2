"""`rlhf sft <recipe> [key=value ...]`: fine-tune the policy on demonstrations."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Supervised fine-tuning (TRL SFTTrainer): full or LoRA, loss on assistant tokens only. "
        "Writes a save_pretrained checkpoint and metrics.json to <output_dir>/sft/; an interrupted "
        "run resumes from its last checkpoint; a completed one is skipped unless --force."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Retrain even if the stage is complete.")


def main(args: argparse.Namespace) -> int:
    from alignment.sft import train_sft

    recipe = load_from_args(args)
    train_sft(recipe, force=args.force)
    return 0
