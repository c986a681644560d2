"""The statistics of a comparison: per-model metrics, paired differences, breakdowns.

Inputs are the aligned per-prompt score arrays of scoring.py (and KL arrays on the prompts
that were sampled for KL); outputs are `Estimate`s with paired bootstrap 95% CIs. The
metric catalogue below is also what gates may refer to: `<metric>` is the candidate's value,
`<metric>.baseline` the baseline's, `<metric>.diff` candidate minus baseline, and the win
rates compare the two directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from alignment.evaluation.bootstrap import Estimate, bootstrap, mean_ci, paired_difference
from alignment.evaluation.prompts import EvalPrompt
from alignment.evaluation.safety import COMPLY, REFUSE
from alignment.evaluation.win_rate import DISAGREEMENT, gold_win_stat, lc_win_rate_stat, win_rate_stat


@dataclass(frozen=True)
class MetricSpec:
    name: str
    score: str
    """Key of the per-prompt score array it averages."""
    description: str
    better: int
    """+1: higher is better, -1: lower is better, 0: neither (a regression cannot be flagged)."""
    rows: Optional[Callable[[EvalPrompt], bool]] = None
    """Which prompts count (default: every prompt with a finite score)."""


def metric_specs(retention_set: str = "eval_seen") -> dict[str, MetricSpec]:
    specs = [
        MetricSpec("gold", "gold", "gold score: task correctness and constraints (suite checkers, user rules)", +1),
        MetricSpec("task", "task", "task correctness alone (suite prompts)", +1),
        MetricSpec(
            "retention", "gold", f"gold score on the seen-family SFT tasks ({retention_set}): capability retention", +1,
            lambda p: p.set == retention_set,
        ),
        MetricSpec(
            "heldout", "gold", "gold score on every other set: generalisation", +1, lambda p: p.set != retention_set
        ),
        MetricSpec("prompt_pass", "prompt_pass", "IFEval prompt-level pass rate (every constraint met)", +1),
        MetricSpec("constraint_pass", "constraint_pass", "IFEval constraint-level pass rate", +1),
        MetricSpec("reward", "reward", "reward-model score, normalised by the RM's reference statistics", +1),
        MetricSpec("length", "length", "response length in words", 0),
        MetricSpec("refusal_rate", "refusal", "refusals on harmful requests", +1, lambda p: p.safety == REFUSE),
        MetricSpec("over_refusal_rate", "refusal", "refusals on benign look-alikes", -1, lambda p: p.safety == COMPLY),
    ]
    for key, what in (
        ("k1_seq", "k1 per sequence"),
        ("k3_seq", "k3 per sequence"),
        ("k1_token", "k1 per token"),
        ("k3_token", "k3 per token"),
    ):
        specs.append(MetricSpec(f"kl.{key}", f"kl.{key}", f"KL from the reference, {what}, on the model's own samples", 0))
    return {s.name: s for s in specs}


#: The pipeline's per-arm summary (`arms` in metrics.json).
ARM_METRICS = ("gold", "heldout", "retention", "reward", "kl.k1_seq", "kl.k3_seq")

PAIR_METRICS: dict[str, str] = {
    "win_rate": "reward-model win rate P(candidate > baseline) = mean sigma(r_c - r_b)",
    "lc_win_rate": "length-controlled win rate (AlpacaEval 2 LC style regression, at zero length difference)",
    "gold_win_rate": "gold win rate P(gold_c > gold_b) + ties / 2",
}


def known_metrics(specs: dict[str, MetricSpec]) -> dict[str, str]:
    """Every name a gate may use, with its meaning."""
    out: dict[str, str] = {}
    for s in specs.values():
        out[s.name] = f"candidate's {s.description}"
        out[f"{s.name}.baseline"] = f"baseline's {s.description}"
        out[f"{s.name}.diff"] = f"candidate minus baseline: {s.description}"
    out.update(PAIR_METRICS)
    return out


def _mask(spec: MetricSpec, prompts: list[EvalPrompt]) -> np.ndarray:
    if spec.rows is None:
        return np.ones(len(prompts), dtype=bool)
    return np.array([spec.rows(p) for p in prompts], dtype=bool)


def model_metrics(
    scores: dict[str, np.ndarray], prompts: list[EvalPrompt], specs: dict[str, MetricSpec], boot: dict
) -> dict[str, Estimate]:
    """Each metric of one model with its bootstrap CI (metrics with no applicable prompt are left out)."""
    out = {}
    for spec in specs.values():
        if spec.score not in scores:
            continue
        values = scores[spec.score][_mask(spec, prompts)]
        values = values[np.isfinite(values)]
        if values.size:
            out[spec.name] = mean_ci(values, **boot)
    return out


def paired_metrics(
    candidate: dict[str, np.ndarray],
    baseline: dict[str, np.ndarray],
    prompts: list[EvalPrompt],
    specs: dict[str, MetricSpec],
    boot: dict,
) -> dict[str, Estimate]:
    """`<metric>.diff` for every metric both models have, and the win rates."""
    out: dict[str, Estimate] = {}
    for spec in specs.values():
        if spec.score not in candidate or spec.score not in baseline:
            continue
        c, b = candidate[spec.score], baseline[spec.score]
        keep = _mask(spec, prompts) & np.isfinite(c) & np.isfinite(b)
        if keep.any():
            out[f"{spec.name}.diff"] = paired_difference(c[keep], b[keep], **boot)
    if "reward" in candidate and "reward" in baseline:
        rc, rb = candidate["reward"], baseline["reward"]
        out["win_rate"] = bootstrap([rc, rb], win_rate_stat, **boot)
        lc, lb = candidate["length"], baseline["length"]
        scale = float((lc - lb).std())
        out["lc_win_rate"] = bootstrap(
            [rc, rb, lc, lb], lambda a, b, x, y: lc_win_rate_stat(a, b, x, y, scale), **boot
        )
    if "gold" in candidate and "gold" in baseline:
        keep = np.isfinite(candidate["gold"]) & np.isfinite(baseline["gold"])
        if keep.any():
            out["gold_win_rate"] = bootstrap([candidate["gold"][keep], baseline["gold"][keep]], gold_win_stat, **boot)
    return out


def significance(
    paired: dict[str, Estimate], specs: dict[str, MetricSpec]
) -> tuple[list[str], list[str]]:
    """(improvements, regressions): metrics whose 95% CI excludes no change, by direction."""
    better, worse = [], []
    for name, est in paired.items():
        if name.endswith(".diff"):
            direction, null = specs[name[: -len(".diff")]].better, 0.0
        else:
            direction, null = 1, 0.5
        if direction == 0 or est.covers(null) or not np.isfinite(est.value):
            continue
        (better if (est.value - null) * direction > 0 else worse).append(name)
    return better, worse


def lc_disagreement(paired: dict[str, Estimate]) -> Optional[str]:
    if "win_rate" not in paired or "lc_win_rate" not in paired:
        return None
    raw, lc = paired["win_rate"].value, paired["lc_win_rate"].value
    if abs(raw - lc) <= DISAGREEMENT:
        return None
    return (
        f"raw win rate {raw:.3f} and length-controlled win rate {lc:.3f} differ by more than {DISAGREEMENT}: "
        "the reward model's preference is confounded with response length"
    )


GROUPINGS: dict[str, Callable[[EvalPrompt], str]] = {"set": lambda p: p.set, "category": lambda p: p.category}
BREAKDOWN_METRICS = ("gold", "prompt_pass", "reward", "length", "refusal_rate", "over_refusal_rate")


def breakdown(
    all_scores: dict[str, dict[str, np.ndarray]],
    baseline: str,
    prompts: list[EvalPrompt],
    specs: dict[str, MetricSpec],
    boot: dict,
) -> dict[str, dict[str, dict]]:
    """metric -> group -> {"models": {name: Estimate}, "diff": {candidate: Estimate}}.

    Groups are `set=<name>`, `category=<name>` and, for the constraint pass rate,
    `constraint=<type>`: the per-category view with CIs that the report plots.
    """
    out: dict[str, dict[str, dict]] = {}
    groups: list[tuple[str, np.ndarray]] = []
    for gname, key in GROUPINGS.items():
        labels = np.array([key(p) for p in prompts])
        for value in dict.fromkeys(labels.tolist()):
            groups.append((f"{gname}={value}", labels == value))

    def add(metric: str, group: str, score_key: str, rows: np.ndarray) -> None:
        models = {}
        for name, scores in all_scores.items():
            if score_key in scores:
                v = scores[score_key][rows]
                v = v[np.isfinite(v)]
                if v.size:
                    models[name] = mean_ci(v, **boot)
        if not models:
            return
        diffs = {}
        base = all_scores[baseline].get(score_key)
        for name, scores in all_scores.items():
            if name == baseline or score_key not in scores or base is None:
                continue
            keep = rows & np.isfinite(scores[score_key]) & np.isfinite(base)
            if keep.any():
                diffs[name] = paired_difference(scores[score_key][keep], base[keep], **boot)
        out.setdefault(metric, {})[group] = {"models": models, "diff": diffs}

    for metric in BREAKDOWN_METRICS:
        spec = specs[metric]
        base_mask = _mask(spec, prompts)
        for group, rows in groups:
            if (rows & base_mask).any():
                add(metric, group, spec.score, rows & base_mask)
    constraint_keys = sorted({k for s in all_scores.values() for k in s if k.startswith("constraint:")})
    for key in constraint_keys:
        add("constraint_pass", f"constraint={key.split(':', 1)[1]}", key, np.ones(len(prompts), dtype=bool))
    # drop groupings that only repeat the whole (a single set, a single category)
    for metric, table in out.items():
        for gname in GROUPINGS:
            keys = [k for k in table if k.startswith(gname + "=")]
            if len(keys) == 1:
                del table[keys[0]]
    return {metric: table for metric, table in out.items() if table}


def length_buckets(
    candidate: dict[str, np.ndarray], baseline: dict[str, np.ndarray], score: str, n_buckets: int = 4
) -> Optional[dict]:
    """Score within length buckets (Singhal et al. 2023, "A Long Way to Go").

    Buckets are quantiles of the pooled lengths. If the overall gain is large but the gain
    *within* buckets is small, the candidate mostly moved to longer (or shorter) answers.
    """
    if score not in candidate or score not in baseline:
        return None
    lc, lb, sc, sb = candidate["length"], baseline["length"], candidate[score], baseline[score]
    ok_c, ok_b = np.isfinite(sc), np.isfinite(sb)
    pooled = np.concatenate([lc[ok_c], lb[ok_b]])
    if pooled.size == 0:
        return None
    edges = np.unique(np.quantile(pooled, np.linspace(0, 1, n_buckets + 1)))
    if edges.size < 2:
        edges = np.array([pooled.min(), pooled.min() + 1])
    bucket = lambda lengths: np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, edges.size - 2)
    bc, bb = bucket(lc), bucket(lb)
    rows, within, weight = [], 0.0, 0
    for k in range(edges.size - 1):
        in_c, in_b = ok_c & (bc == k), ok_b & (bb == k)
        mc = float(sc[in_c].mean()) if in_c.any() else None
        mb = float(sb[in_b].mean()) if in_b.any() else None
        gain = mc - mb if mc is not None and mb is not None else None
        if gain is not None:
            within += gain * (in_c.sum() + in_b.sum())
            weight += in_c.sum() + in_b.sum()
        rows.append({
            "low": float(edges[k]), "high": float(edges[k + 1]),
            "n_candidate": int(in_c.sum()), "n_baseline": int(in_b.sum()),
            "candidate": mc, "baseline": mb, "gain": gain,
        })
    overall = float(sc[ok_c].mean() - sb[ok_b].mean()) if ok_c.any() and ok_b.any() else None
    return {"score": score, "buckets": rows, "overall_gain": overall, "within_bucket_gain": within / weight if weight else None}


def example_score(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Per prompt, the score examples are ranked by: gold, else safe behaviour, else reward."""
    n = len(scores["length"])
    out = np.full(n, np.nan)
    for key in ("reward", "safe", "gold"):  # later keys win
        if key in scores:
            out = np.where(np.isfinite(scores[key]), scores[key], out)
    return out


def biggest_changes(
    candidate: dict[str, np.ndarray],
    baseline: dict[str, np.ndarray],
    prompts: list[EvalPrompt],
    responses_c: list[list[str]],
    responses_b: list[list[str]],
    k: int = 5,
) -> dict[str, list[dict]]:
    """The k prompts where the candidate lost most, and the k where it gained most."""
    sc, sb = example_score(candidate), example_score(baseline)
    diff = sc - sb
    order = [i for i in np.argsort(diff) if np.isfinite(diff[i]) and diff[i] != 0]

    def row(i: int) -> dict:
        return {
            "id": prompts[i].id, "set": prompts[i].set, "category": prompts[i].category,
            "prompt": prompts[i].text(), "baseline": responses_b[i][0], "candidate": responses_c[i][0],
            "baseline_score": float(sb[i]), "candidate_score": float(sc[i]), "diff": float(diff[i]),
        }

    return {
        "regressions": [row(i) for i in order[:k] if diff[i] < 0],
        "improvements": [row(i) for i in reversed(order[-k:]) if diff[i] > 0],
    }
