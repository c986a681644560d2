"""Paired bootstrap and win rates, checked against cases worked out by hand."""

import itertools

import numpy as np
import pytest

from alignment.evaluation.bootstrap import bootstrap, diff_stat, mean_ci, paired_difference
from alignment.evaluation.win_rate import (
    fit_length_logistic,
    gold_win_stat,
    lc_win_rate,
    sigmoid,
    win_rate_stat,
)


def all_resamples(n):
    return np.array(list(itertools.product(range(n), repeat=n)))


def test_paired_bootstrap_exact_distribution_of_two_prompts():
    # candidate wins prompt 0 by 1 and ties prompt 1: the four equally likely resamples
    # (0,0) (0,1) (1,0) (1,1) have mean differences 1, .5, .5, 0.
    est = paired_difference(np.array([1.0, 0.0]), np.array([0.0, 0.0]), indices=all_resamples(2))
    assert est.value == 0.5
    # numpy's linear percentile on sorted [0, .5, .5, 1]: 2.5% at position 0.075 -> 0.0375,
    # 97.5% at position 2.925 -> 0.5 + 0.925 * 0.5 = 0.9625
    assert est.low == pytest.approx(0.0375)
    assert est.high == pytest.approx(0.9625)
    assert est.n == 2


def test_paired_bootstrap_uses_the_same_prompts_for_both_models():
    a, b = np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])
    idx = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [0, 1, 2]])
    # differences per prompt (2, 0, 1); resample means 2, 0, 1, 1 -> sorted [0, 1, 1, 2];
    # 50% interval: 25% at position 0.75 -> 0.75, 75% at position 2.25 -> 1.25
    est = bootstrap([a, b], diff_stat, indices=idx, confidence=0.5)
    assert est.value == pytest.approx(1.0)
    assert (est.low, est.high) == (pytest.approx(0.75), pytest.approx(1.25))


def test_pairing_removes_shared_prompt_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1.0, 200)
    baseline = difficulty + rng.normal(0, 0.05, 200)
    candidate = difficulty + 0.1 + rng.normal(0, 0.05, 200)
    paired = paired_difference(candidate, baseline, n_resamples=1000)
    separate = [mean_ci(x, n_resamples=1000) for x in (candidate, baseline)]
    assert paired.low > 0.07 and paired.high < 0.13  # the 0.1 gain is resolved...
    assert separate[0].low < separate[1].high  # ...though the two separate CIs overlap


def test_identical_models_give_a_zero_width_interval_at_zero():
    x = np.random.default_rng(1).random(50)
    est = paired_difference(x, x.copy())
    assert (est.value, est.low, est.high) == (0.0, 0.0, 0.0)
    assert est.covers(0.0)


def test_percentile_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    hits = sum(mean_ci(rng.normal(1.0, 1.0, 60), n_resamples=400, seed=k).covers(1.0) for k in range(200))
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_is_deterministic_given_the_seed():
    x = np.random.default_rng(3).random(30)
    assert mean_ci(x, seed=5) == mean_ci(x, seed=5)


def test_raw_win_rate_is_mean_bradley_terry_probability():
    rc, rb = np.array([1.0, 0.0, 2.0]), np.array([0.0, 0.0, 2.0])
    expected = (1 / (1 + np.exp(-1.0)) + 0.5 + 0.5) / 3
    assert float(win_rate_stat(rc, rb)) == pytest.approx(expected)


def test_lc_win_rate_is_one_half_for_identical_models():
    r = np.random.default_rng(4).normal(size=40)
    lengths = np.random.default_rng(5).integers(1, 30, 40).astype(float)
    assert lc_win_rate(r, r, lengths, lengths) == pytest.approx(0.5, abs=1e-12)


def test_lc_win_rate_is_antisymmetric():
    rng = np.random.default_rng(6)
    ra, rb = rng.normal(size=80), rng.normal(size=80) + 0.3
    la, lb = rng.integers(1, 40, 80).astype(float), rng.integers(1, 40, 80).astype(float)
    ab, ba = lc_win_rate(ra, rb, la, lb), lc_win_rate(rb, ra, lb, la)
    assert ab + ba == pytest.approx(1.0, abs=1e-9)
    assert ab != pytest.approx(0.5, abs=1e-3)


def test_lc_equals_raw_when_lengths_never_differ():
    rng = np.random.default_rng(7)
    ra, rb = rng.normal(size=50) + 0.5, rng.normal(size=50)
    lengths = np.full(50, 12.0)
    assert lc_win_rate(ra, rb, lengths, lengths) == pytest.approx(float(win_rate_stat(ra, rb)), abs=1e-8)


def test_lc_removes_a_gain_that_is_all_length():
    # the reward model prefers whichever answer is longer, and nothing else; the candidate is
    # usually longer, so it "wins" raw, but at equal length it would tie.
    rng = np.random.default_rng(8)
    d = rng.normal(4.0, 6.0, 300)
    lb = np.full(300, 20.0)
    lc = lb + d
    rb = np.zeros(300)
    rc = 2.0 * np.tanh(d / d.std())
    assert float(win_rate_stat(rc, rb)) > 0.6
    assert lc_win_rate(rc, rb, lc, lb) == pytest.approx(0.5, abs=1e-3)


def test_length_logistic_recovers_known_parameters():
    x = np.array([-1.0, 1.0] * 10)
    p = sigmoid(0.4 + 0.8 * x)
    theta, phi = fit_length_logistic(p, x, l2=0.0)
    assert float(theta) == pytest.approx(0.4, abs=1e-8)
    assert float(phi) == pytest.approx(0.8, abs=1e-8)


def test_length_logistic_is_vectorised_over_resamples():
    rng = np.random.default_rng(9)
    p, x = rng.random((3, 25)), rng.uniform(-1, 1, (3, 25))
    theta, phi = fit_length_logistic(p, x)
    for k in range(3):
        t, f = fit_length_logistic(p[k], x[k])
        assert (float(theta[k]), float(phi[k])) == (pytest.approx(float(t)), pytest.approx(float(f)))


def test_gold_win_rate_counts_ties_as_half():
    assert float(gold_win_stat(np.array([1.0, 0.5, 0.0, 0.2]), np.array([0.0, 0.5, 1.0, 0.1]))) == pytest.approx(
        (1 + 0.5 + 0 + 1) / 4
    )
