"""Simulated annotators: Bradley-Terry on gold, measured flip rate, determinism, and the store path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward.labeling import export_comparisons, simulate_campaign
from reward.simulated import SimulatedAnnotator, judgment_rng

META = {"family": "copy", "constraints": [{"type": "end_phrase", "word": "done"}],
        "answer": ["cat", "dog", "sun"], "inputs": {"words": ["cat", "dog", "sun"]}}
GOOD, BAD = "cat dog sun done", "cat sun"  # gold 1.0 and 1/6


def test_flip_rate_is_measured_at_its_setting():
    # a big gold gap at a low temperature: without flips the better one always wins
    ann = SimulatedAnnotator("t", temperature=0.01, flip_prob=0.25)
    wins = [ann.prefer_first(1.0, 0.0, judgment_rng(0, "t", str(i))) for i in range(4000)]
    flip_rate = 1 - np.mean(wins)
    assert abs(flip_rate - 0.25) < 0.025  # 4000 draws: sd 0.007


def test_bradley_terry_probability_without_flips():
    ann = SimulatedAnnotator("t", temperature=0.1, flip_prob=0.0)
    wins = np.mean([ann.prefer_first(0.6, 0.5, judgment_rng(1, "t", str(i))) for i in range(4000)])
    assert abs(wins - 1 / (1 + np.exp(-1.0))) < 0.025  # σ(0.1 / 0.1) = 0.731


def test_ranking_is_plackett_luce_and_reversed_on_flip():
    clean = SimulatedAnnotator("r", temperature=0.001, flip_prob=0.0)
    assert clean.rank([0.2, 0.9, 0.5], judgment_rng(0, "r", "x")) == [1, 2, 0]
    always = SimulatedAnnotator("r", temperature=0.001, flip_prob=1.0)
    assert always.rank([0.2, 0.9, 0.5], judgment_rng(0, "r", "x")) == [0, 2, 1]


def test_equal_gold_is_a_tie_and_is_never_flipped():
    ann = SimulatedAnnotator("t", temperature=0.1, flip_prob=1.0)
    assert ann.is_tie(0.5, 0.5) and not ann.is_tie(0.5, 0.75)
    lenient = SimulatedAnnotator("t", temperature=0.1, flip_prob=0.0, tie_margin=0.25)
    assert lenient.is_tie(0.5, 0.75) and not lenient.is_tie(0.5, 0.8)
    with pytest.raises(ValueError, match="tie_margin"):
        SimulatedAnnotator("t", tie_margin=-0.1)


def test_judgments_are_deterministic_for_a_seed():
    ann = SimulatedAnnotator("t", temperature=0.3, flip_prob=0.3)
    draw = lambda seed: [ann.prefer_first(0.5, 0.4, judgment_rng(seed, "t", str(i))) for i in range(200)]
    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def _candidates(n: int) -> list[dict]:
    return [{"prompt": f"Copy the following words: cat dog sun ({i})\nEnd your answer with the word 'done'.",
             "responses": [BAD, GOOD, "cat dog done"], "metadata": {**META, "id": f"p{i}"}} for i in range(n)]


def _run_campaign(tmp_path, name: str, seed: int, annotators, mode: str = "pairwise") -> tuple[list[dict], dict]:
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path / name}.db")
    try:
        rows = _candidates(20)  # the three responses' gold differs, so no pair is a tie
        cid = svc.create_campaign(name, mode=mode, overlap=len(annotators), items=rows, seed=0)
        stats = simulate_campaign(svc, cid, annotators, rows, seed=seed, progress=False)
        users = {u.name: u for u in svc.list_users()}
        path = tmp_path / f"{name}.jsonl"
        export_comparisons(svc, cid, path)
    finally:
        svc.close()
    assert all(users[a.name].simulated for a in annotators)
    return [json.loads(line) for line in path.read_text().splitlines()], stats


def test_simulated_annotators_label_through_the_store_deterministically(tmp_path):
    personas = [SimulatedAnnotator("sim-a", 0.05, 0.0), SimulatedAnnotator("sim-b", 0.05, 0.25)]
    rows, stats = _run_campaign(tmp_path, "one", 3, personas)
    # 20 prompts x 3 pairs, each judged by both personas (overlap 2)
    assert stats["judgments"] == {"sim-a": 60, "sim-b": 60}
    assert len(rows) == 120 and {r["labeler"] for r in rows} == {"sim-a", "sim-b"}
    clean = [r for r in rows if r["labeler"] == "sim-a" and {r["chosen"], r["rejected"]} == {GOOD, BAD}]
    assert clean and all(r["chosen"] == GOOD for r in clean)  # gold gap 0.83 at temperature 0.05
    again, _ = _run_campaign(tmp_path, "two", 3, personas)  # the store shows pairs in random order
    key = lambda r: (r["labeler"], r["prompt"], tuple(sorted((r["chosen"], r["rejected"]))), r["chosen"])
    assert sorted(map(key, rows)) == sorted(map(key, again))


def test_store_without_judgments_is_a_clear_error(tmp_path):
    from alignment.errors import UserError
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path / 'empty.db'}")
    cid = svc.create_campaign("empty", items=_candidates(2))
    with pytest.raises(UserError, match="no judgments"):
        export_comparisons(svc, cid, tmp_path / "out.jsonl")
    svc.close()
