"""The AI annotator in the label store: it judges a campaign's pairs as a labeler would.

    judge = ai_judge(recipe)                       # reward/ai_judge.py, from labels.ai
    ai_label_campaign(service, campaign_id, judge, recipe.labels.ai)

It is a user of kind "ai" (no password; its profile records the judge model, the prompt
template and the principles), takes items with `next_assignments` (a batch at a time, one
forward pass per batch), and submits each verdict with `submit_judgment` exactly as a
person's vote goes: the shown position it prefers ("A"/"B"), or "tie" for an
order-inconsistent verdict, with its confidence and P(A better) in the rationale. So the
export, agreement, gold accuracy and position bias treat it like any labeler, and the
export can keep or leave out its judgments (`include_ai`, `--no-ai`).
"""

from __future__ import annotations

import time
from collections import Counter

from tqdm.auto import tqdm

from alignment.errors import UserError
from alignment.run_dir import resolve_named_model
from reward.ai_judge import PairJudge, judge_pairs, load_judge
from reward.principles import load_principles


def ai_judge(recipe) -> PairJudge:
    """The judge `labels.ai` describes (model None: the recipe's base model)."""
    cfg = recipe.labels.ai
    principles = load_principles(cfg.principles) if cfg.principles else []
    return load_judge(resolve_named_model(recipe, cfg.model), cfg.dtype, cfg.template, principles, cfg.max_length)


def ai_label_campaign(service, campaign_id: int, judge: PairJudge, cfg, progress: bool = True) -> dict:
    """Let the AI annotator judge every item open to it; returns its counts.

    Resumable like the simulated annotators: items it holds unanswered are served to it again.
    """
    if service.get_campaign(campaign_id)["mode"] != "pairwise":
        raise UserError("the AI annotator judges pairwise campaigns only")
    profile = {**judge.profile(), "swap": cfg.swap}
    uid = service.ensure_user(cfg.name, role="labeler", kind="ai", profile=profile)
    counts: Counter = Counter()
    bar = tqdm(desc=f"AI labels ({cfg.name})", unit="judgment", disable=not progress)
    started = time.time()
    while batch := service.next_assignments(uid, campaign_id, cfg.batch_size):
        verdicts = judge_pairs(judge, [a.prompt for a in batch], [a.responses[0] for a in batch],
                               [a.responses[1] for a in batch], swap=cfg.swap, batch_size=len(batch))
        for a, v in zip(batch, verdicts):
            choice = {"first": "A", "second": "B", "tie": "tie"}[v.choice]
            orders = ", ".join(f"{p:.3f}" for p in v.p_orders)
            note = "order-inconsistent: a tie" if choice == "tie" else f"prefers {choice}"
            service.submit_judgment(a.id, uid, choice=choice, client_token=a.token, time_spent_s=0.0,
                                    confidence=v.confidence,
                                    rationale=f"AI judge {cfg.name}: P(A better) = {v.p_first:.3f} "
                                    f"(per order: {orders}); {note}")
            counts[choice] += 1
        bar.update(len(batch))
    bar.close()
    return {"judgments": sum(counts.values()), "choices": dict(counts), "wall_time_s": round(time.time() - started, 1)}
