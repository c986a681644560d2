"""The reward stage end to end on the offline suite with noisy simulated labels.

Candidates are built from each prompt's reference layout with the suite's own corruptions
(broken constraints, padding, task errors), so the test needs no SFT run; labels come from
a persona at the quickstart's noise (temperature 0.1, 25% flips). The reward model starts
from the tiny base model (random weights), so what it knows it learned from these labels.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from alignment.data.files import read_rows, write_rows
from alignment.recipe import load_recipe

pytestmark = pytest.mark.slow


def corrupted_candidates(rows: list[dict], k: int, seed: int) -> list[dict]:
    from alignment.suite import FAMILIES
    from alignment.suite.demos import corrupt
    from alignment.suite.layout import layout_for

    rng = random.Random(seed)
    out = []
    for row in rows:
        meta = row["metadata"]
        if meta["family"] not in FAMILIES:  # safety prompts have no layout to corrupt
            continue
        reference = layout_for(meta["answer"], meta["constraints"])
        responses = [reference.render()]
        for _ in range(4 * k):
            layout = copy.deepcopy(reference)
            for _ in range(rng.choice((1, 1, 2))):
                corrupt(layout, FAMILIES[meta["family"]], meta["constraints"], rng)
            text = layout.render()
            if text not in responses:
                responses.append(text)
            if len(responses) == k:
                break
        if len(responses) >= 2:
            out.append({"prompt": row["prompt"], "responses": responses, "metadata": meta})
    return out


def simulated_preferences(candidates: list[dict], seed: int) -> list[dict]:
    from itertools import combinations

    from alignment.suite import gold_score
    from reward.simulated import SimulatedAnnotator, judgment_rng

    persona = SimulatedAnnotator("sim-typical", temperature=0.1, flip_prob=0.25)
    rows = []
    for i, row in enumerate(candidates):
        golds = [gold_score(row["metadata"], r).score for r in row["responses"]]
        for a, b in combinations(range(len(golds)), 2):
            if persona.is_tie(golds[a], golds[b]):
                continue  # a tie: not trained on (reward.ties=exclude)
            first = persona.prefer_first(golds[a], golds[b], judgment_rng(seed, persona.name, f"{i}:{a}:{b}"))
            c, r = (a, b) if first else (b, a)
            rows.append({"prompt": row["prompt"], "chosen": row["responses"][c], "rejected": row["responses"][r],
                         "label": "preference", "labeler": persona.name, "metadata": row["metadata"]})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from alignment.suite.world import build_world
    from reward.stage import train_reward

    tmp = tmp_path_factory.mktemp("reward")
    base = [f"output_dir={tmp / 'run'}", "suite.n_sft=200", "suite.n_prompts=700", "suite.n_eval=20",
            "suite.tiny_model.hidden_size=64", "suite.tiny_model.intermediate_size=128",
            "suite.tiny_model.num_hidden_layers=2", "suite.tiny_model.num_attention_heads=2"]
    world = build_world(load_recipe("configs/quickstart.yaml", base))
    candidates = corrupted_candidates(read_rows(world.suite_dir / "prompts.jsonl"), k=4, seed=0)
    prefs = tmp / "prefs.jsonl"
    write_rows(simulated_preferences(candidates, seed=0), prefs)
    recipe = load_recipe("configs/quickstart.yaml", base + [
        "reward.init_from=base", f"reward.comparisons=[{prefs}]", "reward.epochs=3", "reward.batch_size=32",
        "reward.learning_rate=3e-3", "reward.eval_steps=40", "reward.report_to=[none]", "reward.eval_fraction=0.15",
        "reward.bootstrap_samples=500",
    ])
    return recipe, train_reward(recipe)


def test_heldout_accuracy_is_far_above_chance_and_above_length_only(trained):
    _, metrics = trained
    gold = metrics["eval"]["gold"]
    assert gold["n_pairs"] > 300
    assert gold["accuracy_ci"][0] > 0.7, gold
    # the suite's corruptions mostly pad, so "shorter wins" is a strong baseline here (~0.73)
    assert gold["accuracy"] > gold["length_only_accuracy"] + 0.05, gold
    assert metrics["eval"]["accuracy"] > 0.6  # against labels that agree with gold ~72% of the time


def test_checkpoint_stats_metrics_and_plot_are_written(trained):
    from reward.scoring import RewardScorer

    recipe, metrics = trained
    out = recipe.output_dir + "/reward"
    scorer = RewardScorer.from_pretrained(out, device="cpu")
    assert scorer.stats is not None and scorer.stats.n == metrics["normalization"]["n"] > 0
    saved = json.load(open(out + "/metrics.json"))
    for key in ("accuracy_ci", "length_only_accuracy", "by_category", "length_bias", "calibration"):
        assert key in saved["eval"], key
    assert any(k.startswith("constraint=") for k in saved["eval"]["by_category"])
    assert open(out + "/calibration.png", "rb").read(4) == b"\x89PNG"
    assert saved["data"]["dropped"] == metrics["data"]["dropped"]
    # normalised scores of the reference responses are centred: mean 0, std 1 by construction
    assert abs(metrics["normalization"]["mean"]) < 1e3 and metrics["normalization"]["std"] > 0
    # where the time went: every phase booked, none negative, together no more than the stage took
    phases = saved["phase_seconds"]
    assert set(phases) == {"prepare", "train", "normalization", "save", "held_out_eval",
                           "gold_test_sampling", "gold_test_scoring"}, phases
    assert min(phases.values()) >= 0 and phases["train"] > 0
    assert sum(phases.values()) <= saved["wall_time_s"] + 0.1 * len(phases)


def test_completed_stage_is_skipped(trained, capsys):
    from reward.stage import train_reward

    recipe, metrics = trained
    assert train_reward(recipe)["train"]["steps"] == metrics["train"]["steps"]
    assert "already complete" in capsys.readouterr().out
