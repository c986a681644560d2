"""Reward-model win rates, raw and length-controlled.

Raw win rate: P(candidate > baseline) = mean over prompts of sigma(r_c - r_b), the
Bradley-Terry probability the reward model assigns to the candidate winning each pair.

Length-controlled (LC) win rate, in the manner of AlpacaEval 2 LC (Dubois et al. 2024): fit
a logistic regression of those per-prompt win probabilities on the length difference,

    logit P(c > b | prompt i) = theta + phi * tanh((len_c,i - len_b,i) / s),

with s the standard deviation of the length differences, and report sigma(theta): the win
rate the model would have if both responses had the same length. The fit is on our own
data (no judge, no leaderboard), with soft labels, so that with phi fixed at 0 it returns
the raw win rate exactly. AlpacaEval's per-instruction difficulty term is left out: our
comparison is already paired per prompt.

Two properties the tests pin down: identical models give 0.5, and the fit is antisymmetric
(swapping the models maps p -> 1 - p and x -> -x, hence (theta, phi) -> (-theta, -phi)), so
win(a, b) = 1 - win(b, a). The small L2 penalty on phi (never on theta) keeps the fit defined
when every length difference is zero.
"""

from __future__ import annotations

import numpy as np

#: Raw and LC win rates further apart than this are flagged in the report.
DISAGREEMENT = 0.1


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic; written with tanh so that sigma(-x) = 1 - sigma(x) closely."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def win_probabilities(r_candidate: np.ndarray, r_baseline: np.ndarray) -> np.ndarray:
    """Per-prompt Bradley-Terry probability that the candidate's response wins."""
    return sigmoid(np.asarray(r_candidate, dtype=float) - np.asarray(r_baseline, dtype=float))


def win_rate_stat(r_candidate: np.ndarray, r_baseline: np.ndarray) -> np.ndarray:
    """mean sigma(r_c - r_b) along the last axis (a bootstrap statistic)."""
    return win_probabilities(r_candidate, r_baseline).mean(axis=-1)


def length_feature(len_candidate: np.ndarray, len_baseline: np.ndarray, scale: float | None = None) -> np.ndarray:
    """tanh(length difference / its std): bounded, so a few very long answers cannot dominate."""
    diff = np.asarray(len_candidate, dtype=float) - np.asarray(len_baseline, dtype=float)
    if scale is None:
        scale = float(diff.std()) if diff.size else 0.0
    return np.tanh(diff / (scale if scale > 0 else 1.0))


def fit_length_logistic(
    p: np.ndarray, x: np.ndarray, l2: float = 1e-6, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(theta, phi) minimising mean cross-entropy(p, sigma(theta + phi x)) + l2/2 phi^2.

    Newton's method on the two parameters, vectorised over any leading axes (the bootstrap
    resamples): the loss is convex, so damped Newton steps from zero converge in a few
    iterations.
    """
    p = np.asarray(p, dtype=float)
    x = np.asarray(x, dtype=float)
    theta = np.zeros(p.shape[:-1])
    phi = np.zeros(p.shape[:-1])
    for _ in range(iterations):
        s = sigmoid(theta[..., None] + phi[..., None] * x)
        r = s - p
        g0 = r.mean(-1)
        g1 = (r * x).mean(-1) + l2 * phi
        w = s * (1.0 - s)
        h00 = w.mean(-1) + 1e-12
        h01 = (w * x).mean(-1)
        h11 = (w * x * x).mean(-1) + l2
        det = h00 * h11 - h01 * h01
        step0 = np.clip((h11 * g0 - h01 * g1) / det, -4.0, 4.0)
        step1 = np.clip((h00 * g1 - h01 * g0) / det, -4.0, 4.0)
        theta = np.clip(theta - step0, -30.0, 30.0)
        phi = np.clip(phi - step1, -30.0, 30.0)
        if max(np.abs(step0).max(initial=0.0), np.abs(step1).max(initial=0.0)) < 1e-10:
            break
    return theta, phi


def lc_win_rate_stat(
    r_candidate: np.ndarray, r_baseline: np.ndarray, len_candidate: np.ndarray, len_baseline: np.ndarray, scale: float
) -> np.ndarray:
    """sigma(theta) of the length regression along the last axis (a bootstrap statistic)."""
    p = win_probabilities(r_candidate, r_baseline)
    x = length_feature(len_candidate, len_baseline, scale)
    theta, _ = fit_length_logistic(p, x)
    return sigmoid(theta)


def lc_win_rate(
    r_candidate: np.ndarray, r_baseline: np.ndarray, len_candidate: np.ndarray, len_baseline: np.ndarray
) -> float:
    """The length-controlled win rate of the candidate over the baseline on one set of prompts."""
    scale = float((np.asarray(len_candidate, float) - np.asarray(len_baseline, float)).std())
    return float(lc_win_rate_stat(r_candidate, r_baseline, len_candidate, len_baseline, scale))


def gold_win_stat(g_candidate: np.ndarray, g_baseline: np.ndarray) -> np.ndarray:
    """P(gold_c > gold_b) + P(tie) / 2 along the last axis: a win rate with no reward model."""
    return (np.sign(np.asarray(g_candidate, float) - np.asarray(g_baseline, float)) * 0.5 + 0.5).mean(-1)
