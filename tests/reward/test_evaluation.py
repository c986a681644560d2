"""Evaluation math on known cases: bootstrap CI, length baseline, calibration, gold orientation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reward.evaluation import bootstrap_ci, calibration, correctness, evaluate_pairs, length_only_accuracy


def test_bootstrap_ci_matches_the_binomial_interval():
    # 400 independent pairs, 320 right: the normal approximation gives 0.8 ± 1.96 * sqrt(0.8 * 0.2 / 400)
    values = np.array([1.0] * 320 + [0.0] * 80)
    mean, low, high = bootstrap_ci(values, n_resamples=4000, seed=1)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400)
    assert mean == 0.8
    assert low == pytest.approx(0.8 - half, abs=0.01) and high == pytest.approx(0.8 + half, abs=0.01)


def test_bootstrap_resamples_whole_prompts():
    # every prompt is all right or all wrong: 20 clusters of 20, so the CI is that of n=20, not 400
    values = np.repeat([1.0] * 16 + [0.0] * 4, 20)
    groups = np.repeat(np.arange(20), 20)
    _, low, high = bootstrap_ci(values, groups, n_resamples=4000, seed=1)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 20)
    assert high - low == pytest.approx(2 * half, abs=0.06)
    assert bootstrap_ci([1.0, 1.0, 1.0])[1:] == (1.0, 1.0)


def test_correctness_counts_reward_ties_as_half():
    assert correctness(np.array([1.0, -2.0, 0.0])).tolist() == [1.0, 0.0, 0.5]


def test_length_only_accuracy_picks_the_better_rule():
    assert length_only_accuracy([3, 3, 1, 2], [1, 2, 3, 2]) == (0.625, "longer wins")
    assert length_only_accuracy([1, 1, 5], [4, 4, 2]) == (2 / 3, "shorter wins")


def test_calibration_of_a_zero_margin_model_is_perfect():
    cal = calibration(np.zeros(10))
    assert cal["ece"] == 0.0 and cal["bins"][0]["predicted"] == 0.5 and cal["bins"][0]["observed"] == 0.5


def test_calibration_of_an_overconfident_model():
    # σ(4) ≈ 0.982 for every pair, but only 3 of 4 pairs are right: observed 0.75 in the top bin
    cal = calibration(np.array([4.0, 4.0, 4.0, -4.0]))
    top = cal["bins"][-1]
    assert top["n"] == 4 and top["observed"] == 0.75 and top["predicted"] == pytest.approx(0.982, abs=1e-3)
    assert cal["ece"] == pytest.approx(0.982 - 0.75, abs=1e-3)


def test_gold_accuracy_orients_pairs_by_the_checker_and_skips_gold_ties():
    meta = {"family": "copy", "constraints": [], "answer": ["cat", "dog"]}
    rows = [
        {"prompt": "p1", "chosen": "cat dog", "rejected": "dog cat", "metadata": meta},   # label agrees with gold
        {"prompt": "p2", "chosen": "dog cat", "rejected": "cat dog", "metadata": meta},   # label flipped
        {"prompt": "p3", "chosen": "dog", "rejected": "pen", "metadata": meta},           # both 0: gold tie
    ]
    # the reward model prefers the gold-better response in rows 1 and 2, and row 3's chosen
    m = evaluate_pairs(rows, [1.0, 0.0, 1.0], [0.0, 1.0, 0.0], bootstrap_samples=200)
    assert m["accuracy"] == pytest.approx(2 / 3)  # against the labels
    assert m["gold"]["accuracy"] == 1.0 and m["gold"]["n_pairs"] == 2 and m["gold"]["gold_ties"] == 1
    assert m["gold"]["label_agreement_with_gold"] == 0.5
    assert m["by_category"]["family=copy"]["n"] == 3
    assert m["length_bias"]["n_same_length"] == 3
