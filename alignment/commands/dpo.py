"""`rlhf dpo <recipe> [key=value ...]`: DPO (and its loss variants) on preference pairs."""

from __future__ import annotations

import argparse

from alignment.commands.common import add_recipe_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Direct preference optimisation (TRL DPOTrainer) of the SFT policy on the exported comparisons, "
        "the SFT checkpoint as reference; dpo.loss_type picks sigmoid (DPO), ipo, hinge, robust, ... "
        "Writes the policy, metrics.jsonl and metrics.json (held-out gold, KL k1/k3, gain over SFT) to "
        "<output_dir>/dpo/."
    )
    add_recipe_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Retrain even if the stage is complete.")


def main(args: argparse.Namespace) -> int:
    from alignment.dpo import train_dpo
    from alignment.run_dir import RunDir, ensure_offline_world

    recipe = load_from_args(args)
    ensure_offline_world(recipe)
    RunDir(recipe).save_recipe()
    summary = train_dpo(recipe, force=args.force)
    print_outcome("dpo", summary)
    return 0


def print_outcome(stage: str, summary: dict) -> None:
    """One line: held-out gold, its gain over the start with the 95% CI, and KL."""
    gold = summary.get("eval/gold")
    if gold is None:
        return
    def gain(name: str) -> str:
        ci = summary.get(f"{name}_ci95")
        return f", gain {summary[name]:+.3f} (95% CI {ci[0]:+.3f}..{ci[1]:+.3f})" if ci else ""

    line = f"{stage}: held-out gold greedy {gold:.3f}{gain('gold_gain')}"
    if summary.get("eval/gold_sampled") is not None:
        line += f"; sampled {summary['eval/gold_sampled']:.3f}{gain('gold_sampled_gain')}"
    print(f"{line}; KL k1 {summary.get('eval/kl_k1', float('nan')):.2f}")
