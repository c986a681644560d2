"""Which items a campaign lead should review, and how each is shown to them.

An item is flagged when labelers disagree on it (two or more votes, different answers; for
rankings, some pair of responses ordered both ways), or when a labeler failed it as a gold
item (a score below 1). The lead sees the responses in the item's import order, numbered
1, 2, ...: the labelers each saw them in their own random order as A, B, ..., so every
vote is translated into the import order before it is shown.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

from alignment.errors import UserError
from ui import agreement


def flagged_items(judgments: list[dict], mode: str) -> dict[int, list[dict]]:
    """item id -> its votes, for the items with a disagreement or a failed gold answer."""
    by_item: dict[int, list[dict]] = defaultdict(list)
    for j in judgments:
        by_item[j["item_id"]].append(j)
    out = {}
    for item_id, votes in by_item.items():
        if votes[0]["is_gold"]:
            if any((agreement.gold_score(j) or 0) < 1 for j in votes):
                out[item_id] = votes
        elif len(votes) >= 2 and agreement.disagrees(votes, mode):
            out[item_id] = votes
    return out


def answer_text(mode: str, candidates: list[int], *, winner: int | None = None, label: str | None = None,
                ranking: list[int] | None = None) -> str:
    """An answer in import-order terms: "1 better", "tie", "both bad", "3 > 1 > 2 (2 unranked)"."""
    number = {c: i + 1 for i, c in enumerate(candidates)}
    if mode == "pairwise":
        if winner is not None:
            return f"{number[winner]} better"
        return (label or "?").replace("_", " ")
    ranked = " > ".join(str(number[c]) for c in ranking or [])
    rest = [str(number[c]) for c in candidates if c not in (ranking or [])]
    return f"{ranked} ({', '.join(rest)} unranked)" if rest else ranked


def _gold_text(mode: str, candidates: list[int], gold: dict | None) -> str | None:
    if not gold:
        return None
    return answer_text(mode, candidates, winner=gold.get("winner"), label=gold.get("label"), ranking=gold.get("ranking"))


def cases(mode: str, flagged: dict[int, list[dict]], items: dict, prompts: dict, cands: dict,
          adjudications: dict[int, dict]) -> list[dict]:
    """One dict per flagged item, in item order: what the review view shows."""
    out = []
    for item_id in sorted(flagged):
        item = items[item_id]
        ids = json.loads(item.candidate_ids_json)
        votes = flagged[item_id]
        adj = adjudications.get(item_id)
        out.append({
            "item_id": item_id,
            "is_gold": bool(item.is_gold),
            "reason": "failed gold" if item.is_gold else "disagreement",
            "prompt": json.loads(prompts[item.prompt_id].prompt_json),
            "responses": [cands[c].text for c in ids],
            "expected": _gold_text(mode, ids, json.loads(item.gold_json) if item.gold_json else None),
            "votes": [{"user": j["user"], "rationale": j["rationale"],
                       "answer": answer_text(mode, ids, winner=j["winner"], label=j["choice"], ranking=j["ranking"]),
                       "correct": agreement.gold_score(j) if item.is_gold else None} for j in votes],
            "adjudication": None if adj is None else {
                "user": adj["user"], "rationale": adj["rationale"],
                "answer": answer_text(mode, ids, winner=adj["winner"], label=adj["label"], ranking=adj["ranking"])},
            "extra_overlap": item.extra_overlap,
        })
    return out


def parse_final_label(text: str, mode: str) -> str | int | list[int]:
    """The lead's typed final label -> `LabelService.adjudicate`'s answer. Pairwise: "1" or
    "2" (the better response), "tie", "both bad"; ranking: response numbers best first,
    "3 > 1 > 2". Numbers are the review view's, 1-based."""
    words = " ".join((text or "").lower().replace("_", " ").split())
    if mode == "pairwise":
        if words in ("tie", "both bad"):
            return words.replace(" ", "_")
        if words in ("1", "2"):
            return int(words) - 1
        raise UserError(f"final label: type 1 or 2 (the better response), tie or both bad, got {text!r}")
    numbers = re.findall(r"\d+", words)
    if len(numbers) < 2 or re.sub(r"[\d\s>,]", "", words):
        raise UserError(f"final label: type the response numbers best first, e.g. 3 > 1 > 2, got {text!r}")
    return [int(n) - 1 for n in numbers]
