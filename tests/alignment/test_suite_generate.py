"""The suite generator: deterministic for a seed, held-out splits really held out, demos imperfect."""

from __future__ import annotations

import json

import pytest

from alignment.errors import UserError
from alignment.recipe.suite import SuiteConfig
from alignment.suite import gold_score
from alignment.suite.families import FAMILIES
from alignment.suite.generate import EVAL_SPLITS, SPLITS, generate_suite


@pytest.fixture(scope="module")
def suite() -> dict[str, list[dict]]:
    return generate_suite(SuiteConfig(), seed=0)


def prompt_of(row: dict) -> str:
    return row["prompt"] if "prompt" in row else row["messages"][0]["content"]


def test_splits_and_sizes(suite):
    cfg = SuiteConfig()
    assert tuple(suite) == SPLITS
    assert len(suite["sft"]) == cfg.n_sft and len(suite["prompts"]) == cfg.n_prompts
    for split in EVAL_SPLITS:
        assert len(suite[split]) == cfg.n_eval, split


def test_same_seed_is_identical_and_other_seed_differs(suite):
    again = generate_suite(SuiteConfig(), seed=0)
    assert json.dumps(again) == json.dumps(suite)
    other = generate_suite(SuiteConfig(), seed=1)
    for split in SPLITS:
        assert json.dumps(other[split]) != json.dumps(suite[split]), split


def test_eval_sets_do_not_depend_on_training_sizes(suite):
    smaller = generate_suite(SuiteConfig(n_sft=500, n_prompts=100), seed=0)
    for split in EVAL_SPLITS:
        assert smaller[split] == suite[split]


def test_heldout_families_and_phrasings_never_in_training(suite):
    heldout = set(SuiteConfig().heldout_families)
    for split in ("sft", "prompts", "eval_seen", "eval_heldout_phrasing", "eval_heldout_constraints"):
        for row in suite[split]:
            meta = row["metadata"]
            assert meta["family"] not in heldout, split
            if meta["family"] in FAMILIES and split != "eval_heldout_phrasing":
                assert meta["phrasing"] < len(FAMILIES[meta["family"]].phrasings) - 1, split
    assert {r["metadata"]["family"] for r in suite["eval_heldout_family"]} == heldout
    for row in suite["eval_heldout_phrasing"]:
        assert row["metadata"]["phrasing"] == len(FAMILIES[row["metadata"]["family"]].phrasings) - 1
    # the held-out instruction texts never occur in any training prompt
    heldout_texts = [FAMILIES[f].phrasings[-1].split("{")[0] for f in FAMILIES if f not in heldout]
    heldout_texts += [p.split("{")[0] for f in heldout for p in FAMILIES[f].phrasings]
    for split in ("sft", "prompts"):
        for row in suite[split]:
            assert not any(prompt_of(row).startswith(t) for t in heldout_texts)


def test_heldout_constraint_pairs_only_in_their_split(suite):
    pair = set(SuiteConfig().heldout_constraint_pairs[0])
    for split in SPLITS:
        has_pair = [pair <= {c["type"] for c in r["metadata"]["constraints"]} for r in suite[split]]
        assert all(has_pair) if split == "eval_heldout_constraints" else not any(has_pair), split


def test_eval_prompts_disjoint_from_training_and_each_other(suite):
    seen: set[str] = set()
    for split in SPLITS:
        prompts = [prompt_of(r) for r in suite[split]]
        assert len(set(prompts)) == len(prompts), split
        assert not seen & set(prompts), split
        seen |= set(prompts)


def test_demo_corruption_rate_and_mean_gold(suite):
    tasks = [r for r in suite["sft"] if r["metadata"]["family"] in FAMILIES]
    corrupted = [r for r in tasks if r["metadata"]["corruption"]]
    assert abs(len(corrupted) / len(tasks) - SuiteConfig().demo_error_rate) < 0.01
    kinds = {r["metadata"]["corruption"].split("_")[0] for r in corrupted}
    assert kinds == {"break", "pad", "task"}
    scores = [gold_score(r["metadata"], r["messages"][-1]["content"]).score for r in suite["sft"]]
    for row, score in zip(suite["sft"], scores):
        assert (score == 1.0) == (row["metadata"]["corruption"] is None), row
    mean = sum(scores) / len(scores)
    assert 0.8 < mean < 0.95


def test_no_corruption_when_rate_is_zero():
    rows = generate_suite(SuiteConfig(n_sft=300, n_prompts=10, n_eval=10, demo_error_rate=0.0), seed=0)["sft"]
    assert all(gold_score(r["metadata"], r["messages"][-1]["content"]).score == 1.0 for r in rows)


def test_safety_rows_in_sft_prompts_and_safety_split(suite):
    for split, share in (("sft", 0.075), ("prompts", 0.075), ("safety", 1.0)):
        families = [r["metadata"]["family"] for r in suite[split]]
        refuse, comply = families.count("safety_refuse"), families.count("safety_comply")
        assert abs((refuse + comply) / len(families) - share) < 0.01, split
        assert refuse > 0.3 * (refuse + comply) and comply > 0.3 * (refuse + comply), split


def test_rows_have_the_documented_shape(suite):
    for split in SPLITS:
        for row in suite[split][:50]:
            meta = row["metadata"]
            assert {"id", "split", "family", "phrasing", "constraints", "inputs", "answer", "reference"} <= set(meta)
            assert meta["split"] == split and 1 <= len(meta["constraints"]) + (meta["family"] not in FAMILIES) <= 2
            if split == "sft":
                assert [m["role"] for m in row["messages"]] == ["user", "assistant"] and "corruption" in meta
            else:
                assert isinstance(row["prompt"], str)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"heldout_families": ["nope"]}, "suite.heldout_families"),
        ({"heldout_families": list(FAMILIES)}, "suite.heldout_families"),
        ({"heldout_phrasings": 4}, "suite.heldout_phrasings"),
        ({"heldout_constraint_pairs": [["case", "colour"]]}, "suite.heldout_constraint_pairs"),
        ({"demo_error_rate": 1.5}, "suite.demo_error_rate"),
    ],
)
def test_bad_settings_are_named(change, key):
    with pytest.raises(UserError, match=key):
        generate_suite(SuiteConfig(**change), seed=0)
