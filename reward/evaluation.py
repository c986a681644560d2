"""How good a reward model is on held-out comparisons.

Reported (all into metrics.json, and printed as a table):

- pairwise accuracy against the labels, with a 95% bootstrap CI. The bootstrap resamples
  prompts, not pairs: the pairs of one prompt share its text and are not independent, so a
  per-pair bootstrap would give too narrow an interval;
- accuracy against the GOLD preference when the rows carry the offline suite's metadata:
  each pair is oriented by the gold checker instead of the (noisy) label; pairs whose two
  responses have equal gold have no gold preference and are left out (their count is
  reported as `gold_ties`);
- a length-only scorer on the same pairs: the better of "longer wins" and "shorter wins"
  (words), which is the strongest scorer that sees nothing but length;
- accuracy per category (suite family and constraint type, or any column);
- length bias: accuracy when the chosen response is the shorter one vs the longer one, and
  the Pearson correlation between reward and length;
- calibration: the model's P(a ≻ b) = σ(r_a − r_b) against how often a was preferred, in ten
  bins, with the expected calibration error. Each pair is counted in both orientations
  (p, 1) and (1 − p, 0), so the bins do not depend on which side was stored as "chosen".

A model's reward ties (r_c == r_r) count as half right, as does a length tie for the
length-only scorer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from alignment.suite import gold_score
from reward.comparisons import categories, prompt_key


def correctness(diff: np.ndarray) -> np.ndarray:
    """1 for r_c > r_r, ½ for a tie, 0 otherwise."""
    diff = np.asarray(diff, dtype=float)
    return (diff > 0) + 0.5 * (diff == 0)


def bootstrap_ci(values: Sequence[float], groups: Sequence | None = None, n_resamples: int = 2000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the mean, resampling whole groups (clusters).

    With `groups=None` every value is its own group (the ordinary bootstrap).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if groups is None:
        ids = np.arange(x.size)
    else:
        _, ids = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    n_groups = int(ids.max()) + 1
    sums = np.bincount(ids, weights=x, minlength=n_groups)
    counts = np.bincount(ids, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_resamples, n_groups))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def length_only_accuracy(len_chosen: np.ndarray, len_rejected: np.ndarray) -> tuple[float, str]:
    """Accuracy of the better of 'longer wins' and 'shorter wins', and which one it was."""
    d = np.asarray(len_chosen, float) - np.asarray(len_rejected, float)
    longer, shorter = correctness(d).mean(), correctness(-d).mean()
    return (float(longer), "longer wins") if longer >= shorter else (float(shorter), "shorter wins")


def calibration(diff: np.ndarray, n_bins: int = 10) -> dict:
    """Predicted P(a ≻ b) vs observed frequency, pairs counted in both orientations."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(diff, dtype=float)))
    probs = np.concatenate([p, 1 - p])
    outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        sel = which == b
        if not sel.any():
            continue
        pred, obs = float(probs[sel].mean()), float(outcome[sel].mean())
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "predicted": pred, "observed": obs,
                     "n": int(sel.sum())})
        ece += sel.sum() / probs.size * abs(pred - obs)
    return {"bins": bins, "ece": float(ece)}


def _gold_scores(rows: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Gold of chosen and rejected when every row has the offline suite's task spec."""
    if not rows or not all(_has_gold_spec(r) for r in rows):
        return None

    gc = np.array([gold_score(r["metadata"], r["chosen"]).score for r in rows])
    gr = np.array([gold_score(r["metadata"], r["rejected"]).score for r in rows])
    return gc, gr


def _has_gold_spec(row: dict) -> bool:
    meta = row.get("metadata")
    return isinstance(meta, dict) and "family" in meta and "answer" in meta


def _words(text: str) -> int:
    return len(text.split())


def evaluate_pairs(rows: list[dict], r_chosen: Sequence[float], r_rejected: Sequence[float],
                   category_column: str | None = None, bootstrap_samples: int = 2000, seed: int = 0) -> dict:
    """All the metrics above for strict-preference rows and their rewards."""
    rc, rr = np.asarray(r_chosen, float), np.asarray(r_rejected, float)
    diff = rc - rr
    ok = correctness(diff)
    groups = [prompt_key(r["prompt"]) for r in rows]
    acc, low, high = bootstrap_ci(ok, groups, bootstrap_samples, seed)
    lc = np.array([_words(r["chosen"]) for r in rows], float)
    lr = np.array([_words(r["rejected"]) for r in rows], float)
    length_acc, length_rule = length_only_accuracy(lc, lr)
    out: dict = {
        "n_pairs": len(rows),
        "n_prompts": len(set(groups)),
        "accuracy": acc,
        "accuracy_ci": [low, high],
        "length_only_accuracy": length_acc,
        "length_only_rule": length_rule,
    }

    gold = _gold_scores(rows)
    if gold is not None:
        gc, gr = gold
        has_pref = gc != gr
        sign = np.where(gc > gr, 1.0, -1.0)[has_pref]
        gold_ok = correctness(diff[has_pref] * sign)
        g_groups = [g for g, keep in zip(groups, has_pref) if keep]
        g_acc, g_low, g_high = bootstrap_ci(gold_ok, g_groups, bootstrap_samples, seed)
        g_len, g_rule = length_only_accuracy(np.where(sign > 0, lc[has_pref], lr[has_pref]),
                                             np.where(sign > 0, lr[has_pref], lc[has_pref]))
        out["gold"] = {
            "accuracy": g_acc,
            "accuracy_ci": [g_low, g_high],
            "n_pairs": int(has_pref.sum()),
            "gold_ties": int((~has_pref).sum()),
            "label_agreement_with_gold": float(correctness(gc[has_pref] - gr[has_pref]).mean()),
            "length_only_accuracy": g_len,
            "length_only_rule": g_rule,
            "gain_over_length_only": g_acc - g_len,
            "by_gold_gap": _by_gap(np.abs(gc - gr)[has_pref], gold_ok),
        }

    per_cat: dict[str, list[float]] = defaultdict(list)
    per_cat_gold: dict[str, list[float]] = defaultdict(list)
    gold_iter = iter(gold_ok) if gold is not None else None
    for i, row in enumerate(rows):
        cats = categories(row, category_column)
        g = next(gold_iter) if gold is not None and has_pref[i] else None
        for c in cats:
            per_cat[c].append(ok[i])
            if g is not None:
                per_cat_gold[c].append(g)
    out["by_category"] = {
        c: {"accuracy": float(np.mean(v)), "n": len(v),
            **({"gold_accuracy": float(np.mean(per_cat_gold[c])), "gold_n": len(per_cat_gold[c])} if per_cat_gold.get(c) else {})}
        for c, v in sorted(per_cat.items())
    }

    shorter, longer, same = lc < lr, lc > lr, lc == lr
    lengths = np.concatenate([lc, lr])
    rewards = np.concatenate([rc, rr])
    corr = float(np.corrcoef(rewards, lengths)[0, 1]) if lengths.std() > 0 and rewards.std() > 0 else math.nan
    out["length_bias"] = {
        "accuracy_chosen_shorter": float(ok[shorter].mean()) if shorter.any() else None,
        "n_chosen_shorter": int(shorter.sum()),
        "accuracy_chosen_longer": float(ok[longer].mean()) if longer.any() else None,
        "n_chosen_longer": int(longer.sum()),
        "accuracy_same_length": float(ok[same].mean()) if same.any() else None,
        "n_same_length": int(same.sum()),
        "reward_length_correlation": corr,
    }
    out["calibration"] = calibration(diff)
    out["mean_reward_chosen"] = float(rc.mean())
    out["mean_reward_rejected"] = float(rr.mean())
    return out


def _by_gap(gaps: np.ndarray, ok: np.ndarray) -> dict:
    """Gold accuracy by size of the gold difference: small gaps are the hard pairs."""
    out = {}
    for low, high in ((0.0, 0.2), (0.2, 0.4), (0.4, 1.01)):
        sel = (gaps > low) & (gaps <= high) if low > 0 else (gaps > 0) & (gaps <= high)
        if sel.any():
            out[f"({low:.1f}, {min(high, 1.0):.1f}]"] = {"accuracy": float(ok[sel].mean()), "n": int(sel.sum())}
    return out


def format_table(metrics: dict) -> str:
    """A plain-text summary for the terminal."""
    lines = [f"{'metric':<44} value"]

    def add(name: str, value) -> None:
        if isinstance(value, float):
            value = f"{value:.3f}"
        lines.append(f"{name:<44} {value}")

    add("held-out pairs (prompts)", f"{metrics['n_pairs']} ({metrics['n_prompts']})")
    add("accuracy vs labels [95% CI]", f"{metrics['accuracy']:.3f} [{metrics['accuracy_ci'][0]:.3f}, {metrics['accuracy_ci'][1]:.3f}]")
    add(f"length-only accuracy vs labels ({metrics['length_only_rule']})", metrics["length_only_accuracy"])
    gold = metrics.get("gold")
    if gold:
        add("accuracy vs GOLD [95% CI]", f"{gold['accuracy']:.3f} [{gold['accuracy_ci'][0]:.3f}, {gold['accuracy_ci'][1]:.3f}]")
        add(f"length-only accuracy vs gold ({gold['length_only_rule']})", gold["length_only_accuracy"])
        add("gain over length-only (gold)", gold["gain_over_length_only"])
        add("labels agreeing with gold", gold["label_agreement_with_gold"])
        add("pairs with gold preference / gold ties", f"{gold['n_pairs']} / {gold['gold_ties']}")
        for gap, v in gold["by_gold_gap"].items():
            add(f"  gold accuracy, |gold gap| in {gap}", f"{v['accuracy']:.3f} (n={v['n']})")
    lb = metrics["length_bias"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    add("accuracy, chosen shorter / longer / same", f"{fmt(lb['accuracy_chosen_shorter'])} / "
        f"{fmt(lb['accuracy_chosen_longer'])} / {fmt(lb['accuracy_same_length'])}")
    add("  pairs, chosen shorter / longer / same", f"{lb['n_chosen_shorter']} / {lb['n_chosen_longer']} / {lb['n_same_length']}")
    add("reward-length correlation", lb["reward_length_correlation"])
    add("calibration error (ECE)", metrics["calibration"]["ece"])
    for cat, v in metrics.get("by_category", {}).items():
        extra = f", gold {v['gold_accuracy']:.3f} (n={v['gold_n']})" if "gold_accuracy" in v else ""
        add(f"  {cat}", f"{v['accuracy']:.3f} (n={v['n']}){extra}")
    return "\n".join(lines)


def plot_calibration(metrics: dict, path) -> None:
    """Reliability diagram: predicted P(a ≻ b) against observed frequency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = metrics["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label="reward model")
    for b in bins:
        ax.annotate(str(b["n"]), (b["predicted"], b["observed"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("predicted P(a preferred)")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Calibration (ECE {metrics['calibration']['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
