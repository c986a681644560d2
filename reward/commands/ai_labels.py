"""`rlhf label critique <recipe>` and `rlhf label judge <recipe>`: AI feedback into the label store.

    rlhf label critique configs/smollm2-135m-instruct.yaml labels.critique.rounds=2
    rlhf label judge configs/smollm2-135m-instruct.yaml --campaign round1   # the AI judges a campaign

They live here, not in ui/commands.py, because they load models: the label app and its store
import no model code. The CLI adds them under `rlhf label` (alignment/cli.py, LABEL_EXTRAS).
"""

from __future__ import annotations

import argparse
import json

from alignment.commands.common import add_recipe_arguments, load_from_args

HELP = {
    "critique": "critique-and-revise answers against a principles file; store each (revision > original) pair "
                "as an AI judgment with the critique as its rationale, and export them",
    "judge": "let the AI annotator (labels.ai) judge a campaign's pairs in the label store, beside humans "
             "and simulated annotators",
}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.description = HELP[name]
    add_recipe_arguments(parser)
    if name == "judge":
        parser.add_argument("--campaign", default=None,
                            help="campaign name (default: labels.campaign for round 1)")
        parser.add_argument("--db", default=None, help="label store URL (default: labels.db)")


def main(args: argparse.Namespace) -> int:
    recipe = load_from_args(args)
    if args.label_command == "critique":
        from reward.critique import run_critique

        metrics = run_critique(recipe)
        print(f"label critique: {metrics['pairs']} (revision > original) pairs of {metrics['prompts']} prompts "
              f"in campaign {metrics['campaign']!r} -> {metrics['export']}")
        print(f"  {json.dumps(metrics['counts'])}")
        return 0
    from reward.ai_labeling import ai_judge, ai_label_campaign
    from ui.service import LabelService

    service = LabelService.open(args.db or recipe.labels.db, durable=False)
    try:
        name = args.campaign or recipe.labels.campaign.replace("{round}", "1")
        cid = service.campaign_id(name)
        stats = ai_label_campaign(service, cid, ai_judge(recipe), recipe.labels.ai)
        ai = service.agreement(cid)["ai"].get(recipe.labels.ai.name, {})
    finally:
        service.close()
    print(f"label judge: {stats['judgments']} AI judgments in {name!r} {stats['choices']}; agreement with humans "
          f"{ai.get('agreement_human')}, simulated {ai.get('agreement_simulated')}, gold {ai.get('gold_accuracy')}")
    return 0
