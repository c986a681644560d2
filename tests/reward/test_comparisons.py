"""Comparison loading: ranking weights, ties, and every dropped row counted by reason."""

from __future__ import annotations

import json

import pytest
import torch

from alignment.data.rows import expand_ranking
from alignment.errors import DataError
from reward.comparisons import prepare, read_comparison_file, split_by_prompt, tokenize
from tests.reward.tiny import make_tokenizer


def test_ranking_expands_to_all_pairs_weighted_one_over_k_choose_2(tmp_path):
    path = tmp_path / "ranks.jsonl"
    path.write_text(json.dumps({"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, 0, 3, 1]}) + "\n")
    rows = read_comparison_file(str(path))
    assert len(rows) == 6 and all(r["weight"] == pytest.approx(1 / 6) for r in rows)
    assert {(r["chosen"], r["rejected"]) for r in rows} == {
        ("c", "a"), ("c", "d"), ("c", "b"), ("a", "d"), ("a", "b"), ("d", "b")}
    # a partial ranking of 3 of 4 responses: C(3,2) = 3 pairs, each 1/3
    partial = expand_ranking({"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [1, 3, 0]})
    assert len(partial) == 3 and all(r["weight"] == pytest.approx(1 / 3) for r in partial)
    assert sum(r["weight"] for r in prepare(rows).rows) == pytest.approx(1.0)  # one ranking = one example


def test_bad_rows_are_dropped_and_counted_by_reason():
    rows = [
        {"prompt": "p", "chosen": "good", "rejected": "bad", "margin": 0.5},
        {"prompt": "p", "chosen": "  ", "rejected": "bad"},
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "x", "rejected": "y", "label": "tie"},
        {"prompt": "p", "chosen": "x", "rejected": "y", "label": "both_bad"},
    ]
    c = prepare(rows, ties="exclude")
    assert len(c.rows) == 1 and c.rows[0]["margin"] == 0.5 and c.rows[0]["target"] == 1.0
    assert c.dropped == {"empty chosen": 1, "identical chosen and rejected": 1,
                         "tie (reward.ties=exclude)": 1, "both_bad (reward.ties=exclude)": 1}
    assert "dropped 4" in c.report()
    half = prepare(rows, ties="half", use_margin=False)
    assert [r["target"] for r in half.rows] == [1.0, 0.5, 0.5] and half.rows[0]["margin"] == 0.0


def test_over_long_conversations_are_dropped_and_counted():
    tok = make_tokenizer()
    c = prepare([{"prompt": "the cat " * 40, "chosen": "a", "rejected": "b"},
                 {"prompt": "the cat", "chosen": "a", "rejected": "b"}])
    tokenized = tokenize(c, tok, max_length=30)
    assert len(tokenized) == 1 and len(c.rows) == 1
    assert c.dropped == {"longer than max_length=30 tokens": 1}


def test_split_keeps_each_prompt_on_one_side():
    rows = [{"prompt": f"p{i % 50}", "chosen": "a", "rejected": str(i)} for i in range(500)]
    train, held = split_by_prompt(rows, 0.2, seed=0)
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in held})
    assert 0.05 < len(held) / len(rows) < 0.4
    with pytest.raises(DataError, match="hold out"):
        split_by_prompt(rows[:1], 0.2, seed=0)


def test_a_file_of_sft_rows_is_refused(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    with pytest.raises(DataError, match="expected preference rows"):
        read_comparison_file(str(path))


def test_comparisons_of_a_prompt_share_one_example_and_each_response_is_encoded_once():
    from reward.training import PairCollator

    tok = make_tokenizer()
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "labeler": "x"},
        {"prompt": "p", "chosen": "b", "rejected": "a", "labeler": "y"},  # the same pair, another labeler
        {"prompt": "p", "chosen": "a", "rejected": "c", "weight": 0.5},
        {"prompt": "q", "chosen": "d", "rejected": "e", "margin": 1.0},
    ]
    examples = tokenize(prepare(rows), tok, max_length=None)
    assert [len(e["input_ids"]) for e in examples] == [3, 2]
    assert examples[0]["pairs"] == [[0, 1], [1, 0], [0, 2]] and examples[0]["weight"] == [1.0, 1.0, 0.5]
    batch = PairCollator(tok.pad_token_id, share_prefix=False)(examples)
    assert batch["input_ids"].shape[0] == 5
    assert batch["pairs"].tolist() == [[0, 1], [1, 0], [0, 2], [3, 4]]  # offsets into the flat batch
    assert batch["margin"].tolist() == [0.0, 0.0, 0.0, 1.0]
    shared = PairCollator(tok.pad_token_id)(examples)  # the default: one prompt prefix per example
    assert shared["prefix_ids"].shape[0] == 2 and shared["suffix_ids"].shape[0] == 5
    assert shared["group"].tolist() == [0, 0, 0, 1, 1] and torch.equal(shared["pairs"], batch["pairs"])
    # a prompt with more distinct responses than max_group is split (w3 is then encoded in both)
    many = [{"prompt": "p", "chosen": f"w{i}", "rejected": f"w{i + 1}"} for i in range(6)]
    split = tokenize(prepare(many), tok, max_length=None, max_group=4)
    assert [len(e["input_ids"]) for e in split] == [4, 4] and sum(len(e["pairs"]) for e in split) == 6


def degenerate_file(path, n_good: int = 1):
    """`n_good` usable pairs of one prompt, then one of each degenerate kind."""
    rows = [{"prompt": "p", "chosen": "good", "rejected": f"bad {i}"} for i in range(n_good)]
    rows += [{"prompt": "q", "chosen": "same", "rejected": " same "}, {"prompt": "r", "chosen": "", "rejected": "x"},
             {"prompt": "s", "chosen": "x", "rejected": "  "}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_degenerate_pairs_are_dropped_and_reported_per_file(tmp_path, capsys):
    from reward.stage import load_comparisons

    bad, clean = degenerate_file(tmp_path / "bad.jsonl", n_good=2), tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"prompt": "t", "chosen": "a", "rejected": "b"}) + "\n")
    c = load_comparisons([str(bad), str(clean)], ties="exclude", use_margin=True)
    assert len(c.rows) == 3
    assert capsys.readouterr().out.splitlines() == [
        f"reward: {bad}: dropped 3 of 5 pairs: 1 identical chosen and rejected, 1 empty chosen, 1 empty rejected"]
    assert c.pair_drops.as_dict() == {str(bad): {"identical chosen and rejected": 1, "empty chosen": 1, "empty rejected": 1}}


def test_a_file_too_small_to_split_is_named_with_its_drops(tmp_path):
    from reward.stage import load_comparisons, split_comparisons

    tiny = degenerate_file(tmp_path / "tiny.jsonl", n_good=1)
    c = load_comparisons([str(tiny)], ties="exclude", use_margin=True)
    with pytest.raises(DataError) as err:
        split_comparisons(c, 0.1, seed=0)
    assert str(err.value) == (
        f"{tiny}: cannot hold out 10% of 1 prompts (1 comparisons; dropped 3: 1 identical chosen and rejected, "
        "1 empty chosen, 1 empty rejected) and keep both splits non-empty; add comparisons or lower "
        "reward.eval_fraction (0: hold out none)")
