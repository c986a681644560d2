"""Held-out sampled gold averages several samples of each prompt, each kept with its own prompt."""

from __future__ import annotations

import contextlib

import pytest

from tests.alignment.ppo_tiny import make_policy


def test_sampled_gold_is_the_per_prompt_mean_of_its_samples(tmp_path, monkeypatch):
    from alignment.models import load_policy, load_tokenizer
    from alignment.ppo import held_out

    path = make_policy(tmp_path / "policy")
    policy, tokenizer = load_policy(str(path)), load_tokenizer(str(path))
    rows = [{"prompt": p, "metadata": {"family": "copy"}} for p in ("say cat", "say dog", "say sun")]
    seen: list[tuple[list, list]] = []

    def fake_gold(rows_, responses):  # score i for the i-th response: the grouping is then visible
        seen.append((list(rows_), list(responses)))
        return [float(i) for i in range(len(responses))]

    monkeypatch.setattr(held_out, "gold_scores", fake_gold)
    metrics, details = held_out.evaluate_policy(policy, lambda: contextlib.nullcontext(policy), tokenizer, rows,
                                                max_new_tokens=4, samples_per_prompt=3)
    greedy_call, sampled_call = seen
    assert len(greedy_call[1]) == 3 and len(sampled_call[1]) == 9
    assert [r["prompt"] for r in sampled_call[0]] == ["say cat"] * 3 + ["say dog"] * 3 + ["say sun"] * 3
    assert details["gold_sampled"] == [1.0, 4.0, 7.0]  # means of (0,1,2), (3,4,5), (6,7,8)
    assert metrics["gold_sampled"] == pytest.approx(4.0)
    assert metrics["kl_k1"] == pytest.approx(0.0, abs=1e-6)  # the policy is its own reference
