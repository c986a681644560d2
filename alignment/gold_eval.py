"""Gold-score evaluation: generate on held-out suite prompts and score with the checkers.

Every stage that changes the policy reports this, because proxy metrics (loss, reward)
can rise while the thing we care about does not.
"""

from __future__ import annotations

from collections import defaultdict

from alignment.data.files import read_rows
from alignment.generation import generate
from alignment.run_dir import resolve_data_path
from alignment.stats import bootstrap_mean_ci
from alignment.suite import gold_score

GOLD_SPLITS = ("eval_seen", "eval_heldout_family", "eval_heldout_phrasing", "eval_heldout_constraints", "safety")


def has_gold(row: dict) -> bool:
    meta = row.get("metadata")
    return isinstance(meta, dict) and "family" in meta and "constraints" in meta


def score_responses(rows: list[dict], responses: list[str]) -> dict:
    """Mean gold score with a 95% CI, and the mean of each component of the breakdown."""
    results = [gold_score(r["metadata"], resp) for r, resp in zip(rows, responses)]
    scores = [g.score for g in results]
    mean, low, high = bootstrap_mean_ci(scores)
    parts: dict[str, list[float]] = defaultdict(list)
    for g in results:
        for name, value in g.breakdown.items():
            parts[name].append(value)
    return {
        "gold": mean,
        "gold_ci": [low, high],
        "n": len(scores),
        "breakdown": {k: sum(v) / len(v) for k, v in sorted(parts.items())},
        "mean_response_words": sum(len(r.split()) for r in responses) / max(len(responses), 1),
    }


def evaluate_gold(model, tokenizer, recipe, n_prompts: int, max_new_tokens: int, temperature: float = 0.0,
                  splits: tuple[str, ...] = GOLD_SPLITS, seed: int | None = None) -> dict:
    """Gold metrics per held-out split of the offline suite (splits without gold are skipped).

    Every split's prompts go through one `generate` call: decoding a real model on a CPU is
    bound by reading the weights once per step, so a step costs about the same for 8 rows as
    for 64, and one batch over all splits costs a fraction of one batch per split.
    """
    chosen: dict[str, list[dict]] = {}
    for split in splits:
        path = resolve_data_path(recipe, f"suite:{split}")
        try:
            rows = [r for r in read_rows(path) if has_gold(r)][:n_prompts]
        except Exception:
            continue
        if rows:
            chosen[split] = rows
    prompts = [r["prompt"] for rows in chosen.values() for r in rows]
    if not prompts:
        return {}
    responses = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                         seed=recipe.seed if seed is None else seed)
    out: dict[str, dict] = {}
    start = 0
    for split, rows in chosen.items():
        out[split] = score_responses(rows, responses[start : start + len(rows)])
        start += len(rows)
    return out


def demonstrations_gold(rows: list[dict]) -> dict | None:
    """The demonstrations' own gold score: the ceiling that pure imitation aims at."""
    gold_rows = [r for r in rows if has_gold(r) and "messages" in r]
    if not gold_rows:
        return None
    answers = [r["messages"][-1]["content"] for r in gold_rows]
    return score_responses(gold_rows, answers)
