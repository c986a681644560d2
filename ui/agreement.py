"""Label quality: inter-annotator agreement, gold accuracy, position bias, labeler speed.

Agreement is measured on *units* that several labelers answered, each answer a nominal label.
- Pairwise campaigns: a unit is an item; the label is "first" or "second" (the winning
  candidate in the item's import order, so the random shown order does not matter), "tie"
  or "both_bad".
- Ranking campaigns: a unit is a pair of candidates of one item; the label says which of the
  two the labeler ranked higher (a ranked response beats an unranked one; two unranked give
  no label).
Pairwise agreement is the fraction of agreeing pairs of labelers over all units (per labeler:
over the pairs that include them). Krippendorff's alpha (nominal) corrects it for chance:
alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k, with o the coincidence matrix
(Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"). It handles any number of
labelers per unit and missing answers; None when undefined (fewer than two labels, or one
category only).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from itertools import combinations
from typing import Hashable


def pairwise_agreement(units: dict[Hashable, dict[str, Hashable]]) -> tuple[float | None, dict[str, dict]]:
    """Fraction of agreeing labeler pairs; and per labeler {"agreement", "pairs"}."""
    agree = total = 0
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for answers in units.values():
        n = len(answers)
        if n < 2:
            continue
        counts = Counter(answers.values())
        agree += sum(c * (c - 1) // 2 for c in counts.values())
        total += n * (n - 1) // 2
        for rater, label in answers.items():
            per[rater][0] += counts[label] - 1
            per[rater][1] += n - 1
    return (agree / total if total else None), {
        r: {"agreement": a / t if t else None, "pairs": t} for r, (a, t) in per.items()
    }


def krippendorff_alpha_nominal(units: dict[Hashable, dict[str, Hashable]]) -> float | None:
    o: dict[tuple, float] = defaultdict(float)  # coincidence matrix
    for answers in units.values():
        m_u = len(answers)
        if m_u < 2:
            continue
        counts = Counter(answers.values())
        for c, nc in counts.items():
            for k, nk in counts.items():
                o[c, k] += (nc * (nk - (c == k))) / (m_u - 1)
    n_c: dict[Hashable, float] = defaultdict(float)
    for (c, _k), v in o.items():
        n_c[c] += v
    n = sum(n_c.values())
    disagree_observed = sum(v for (c, k), v in o.items() if c != k)
    disagree_expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n <= 1 or disagree_expected == 0:
        return None
    return 1.0 - (n - 1) * disagree_observed / disagree_expected


def _pair_label(j: dict) -> str:
    """"first" / "second" (in the item's import order, not the shown order), "tie", "both_bad"."""
    if j["winner"] is None:
        return j["choice"]
    return "first" if j["winner"] == j["candidates"][0] else "second"


def _ranking_units(j: dict) -> dict[tuple, Hashable]:
    """(a, b) candidate pairs with a < b -> the one ranked higher."""
    rank = {c: i for i, c in enumerate(j["ranking"])}
    out = {}
    for a, b in combinations(sorted(j["candidates"]), 2):
        ra, rb = rank.get(a, math.inf), rank.get(b, math.inf)
        if ra != rb:
            out[(a, b)] = a if ra < rb else b
    return out


def _gold_score(j: dict) -> float | None:
    g = j["gold"]
    if not g:
        return None
    if "winner" in g:
        return float(j["winner"] == g["winner"])
    if "label" in g:
        return float(j["choice"] == g["label"])
    expected = _ranking_units({"ranking": g["ranking"], "candidates": j["candidates"]})
    got = _ranking_units(j) if j["ranking"] else {}
    return sum(got.get(k) == v for k, v in expected.items()) / len(expected) if expected else None


def gold_accuracy(judgments: list[dict]) -> tuple[float | None, int]:
    """Mean score over the gold items among `judgments`, and how many were scored."""
    scores = [g for g in (_gold_score(j) for j in judgments if j["is_gold"]) if g is not None]
    return (sum(scores) / len(scores) if scores else None), len(scores)


def gold_score(j: dict) -> float | None:
    """1 for a gold item answered as expected, 0 if not (rankings: the share of gold pairs in
    the right order); None for an item without a gold answer."""
    return _gold_score(j)


def disagrees(votes: list[dict], mode: str) -> bool:
    """Whether labelers gave different answers to one item (rankings: ordered some pair of
    responses differently)."""
    if mode == "pairwise":
        return len({_pair_label(j) for j in votes}) > 1
    seen: dict[tuple, Hashable] = {}
    for j in votes:
        for pair, label in _ranking_units(j).items():
            if seen.setdefault(pair, label) != label:
                return True
    return False


def campaign_quality(judgments: list[dict], mode: str) -> dict:
    """Agreement, gold accuracy and position bias for a campaign's (non-retracted) judgments."""
    units: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for j in judgments:
        if mode == "pairwise":
            units[j["item_id"]][j["user"]] = _pair_label(j)
        else:
            for pair, label in _ranking_units(j).items():
                units[(j["item_id"], *pair)][j["user"]] = label
    overall, per = pairwise_agreement(units)
    labelers: dict[str, dict] = {}
    by_user: dict[str, list[dict]] = defaultdict(list)
    for j in judgments:
        by_user[j["user"]].append(j)
    for user, js in by_user.items():
        gold = [g for g in (_gold_score(j) for j in js if j["is_gold"]) if g is not None]
        labelers[user] = {
            "judgments": len(js),
            "agreement": per.get(user, {}).get("agreement"),
            "agreement_pairs": per.get(user, {}).get("pairs", 0),
            "gold_accuracy": sum(gold) / len(gold) if gold else None,
            "gold_judgments": len(gold),
            **position_bias(js, mode),
        }
    all_gold = [g for g in (_gold_score(j) for j in judgments if j["is_gold"]) if g is not None]
    return {
        "mode": mode,
        "judgments": len(judgments),
        "units_with_overlap": sum(1 for a in units.values() if len(a) >= 2),
        "pairwise_agreement": overall,
        "krippendorff_alpha": krippendorff_alpha_nominal(units),
        "gold_accuracy": sum(all_gold) / len(all_gold) if all_gold else None,
        "gold_judgments": len(all_gold),
        "position_bias": position_bias(judgments, mode),
        "labelers": labelers,
        "ai": ai_agreement(judgments, mode),
    }


def ai_agreement(judgments: list[dict], mode: str) -> dict[str, dict]:
    """Per AI annotator (users of kind "ai"): how often it gives the same answer as the human
    labelers, and as the simulated ones, on the items both judged, and its gold accuracy.

    An AI judge is only worth its votes where it agrees with the people it stands in for; this
    is the number to read before trusting it. Pairwise answers are compared as in
    `campaign_quality` (first / second / tie / both bad in import order); rankings pair by pair.
    Each (AI vote, other vote) pair on a shared unit counts once.
    """
    units: dict[Hashable, dict[str, tuple[str, Hashable]]] = defaultdict(dict)
    for j in judgments:
        kind = j.get("kind", "simulated" if j.get("simulated") else "human")
        if mode == "pairwise":
            units[j["item_id"]][j["user"]] = (kind, _pair_label(j))
        else:
            for pair, label in _ranking_units(j).items():
                units[(j["item_id"], *pair)][j["user"]] = (kind, label)
    out: dict[str, dict] = {}
    ai_users = sorted({j["user"] for j in judgments if j.get("kind") == "ai"})
    for user in ai_users:
        same: Counter = Counter()
        total: Counter = Counter()
        for votes in units.values():
            if user not in votes:
                continue
            _, mine = votes[user]
            for other, (kind, label) in votes.items():
                if other != user and kind != "ai":
                    total[kind] += 1
                    same[kind] += label == mine
        js = [j for j in judgments if j["user"] == user]
        gold = [g for g in (_gold_score(j) for j in js if j["is_gold"]) if g is not None]
        conf = [j["confidence"] for j in js if j.get("confidence") is not None]
        out[user] = {
            "judgments": len(js),
            "agreement_human": same["human"] / total["human"] if total["human"] else None,
            "pairs_human": total["human"],
            "agreement_simulated": same["simulated"] / total["simulated"] if total["simulated"] else None,
            "pairs_simulated": total["simulated"],
            "gold_accuracy": sum(gold) / len(gold) if gold else None,
            "gold_judgments": len(gold),
            "ties": sum(1 for j in js if j.get("choice") == "tie"),
            "mean_confidence": sum(conf) / len(conf) if conf else None,
        }
    return out


def position_bias(judgments: list[dict], mode: str) -> dict:
    """Pairwise: how often A wins among decisive votes, with a z-score against 0.5 (random
    shown order makes 0.5 the unbiased value). Ranking: how often each shown position is
    ranked first (unbiased: 1/K each)."""
    if mode == "pairwise":
        c = Counter(j["choice"] for j in judgments)
        decisive = c["A"] + c["B"]
        return {
            "A": c["A"], "B": c["B"], "tie": c["tie"], "both_bad": c["both_bad"],
            "a_rate": c["A"] / decisive if decisive else None,
            "a_rate_z": (c["A"] - decisive / 2) / math.sqrt(decisive / 4) if decisive else None,
        }
    top = Counter()
    for j in judgments:
        if j["ranking"]:
            top[chr(ord("A") + j["shown"].index(j["ranking"][0]))] += 1
    n = sum(top.values())
    k = max((len(j["shown"]) for j in judgments), default=0)
    return {"top_position": dict(sorted(top.items())), "top_a_rate": top["A"] / n if n else None,
            "expected_rate": 1 / k if k else None}


def labeler_speed(judgments: list[dict], skips: dict[str, int]) -> dict[str, dict]:
    """Per labeler: judgments, skips, median and total seconds, judgments per hour of work."""
    times: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        times[j["user"]].append(j["time_spent_s"] or 0.0)
    out = {}
    for user in sorted(set(times) | set(skips)):
        t = times.get(user, [])
        total = sum(t)
        out[user] = {
            "judgments": len(t), "skips": skips.get(user, 0),
            "median_s": round(statistics.median(t), 2) if t else None,
            "total_s": round(total, 1),
            "per_hour": round(len(t) / total * 3600, 1) if total > 0 else None,
        }
    return out
