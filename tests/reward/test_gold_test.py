"""The reward stage's gold test: every gold-separated pair of SFT samples on unseen prompts."""

from __future__ import annotations

from alignment.data.files import read_rows
from alignment.recipe import load_recipe


def test_pairs_are_oriented_by_gold_and_equal_gold_pairs_are_left_out(tmp_path, monkeypatch):
    import reward.stage
    from alignment.run_dir import RunDir
    from alignment.suite import gold_score
    from alignment.suite.world import build_world
    from reward.stage import gold_test_rows

    recipe = load_recipe("configs/quickstart.yaml", [
        f"output_dir={tmp_path / 'run'}", "suite.n_sft=100", "suite.n_prompts=50", "suite.n_eval=12",
        "suite.tiny_model.hidden_size=32", "suite.tiny_model.intermediate_size=64",
        "suite.tiny_model.num_hidden_layers=1", "suite.tiny_model.num_attention_heads=2",
        "reward.gold_test_samples=4",
    ])
    build_world(recipe)
    run = RunDir(recipe)
    (run.stage_dir("sft") / "config.json").write_text("{}")  # stands in for an SFT checkpoint
    rows = [r for r in read_rows(tmp_path / "run" / "suite" / "eval_seen.jsonl") if "family" in r["metadata"]]
    by_prompt = {r["prompt"]: r["metadata"] for r in rows}

    def fake_generate(model, tokenizer, prompts, num_return_sequences=1, **kwargs):
        # the reference, the reference again (a duplicate), a wrong answer and an empty one
        return [[by_prompt[p]["reference"]] * 2 + ["no", ""] for p in prompts]

    monkeypatch.setattr(reward.stage, "generate", fake_generate)
    monkeypatch.setattr(reward.stage, "load_policy", lambda *a, **k: None)
    monkeypatch.setattr(reward.stage, "load_tokenizer", lambda *a, **k: None)
    pairs = gold_test_rows(recipe, run)

    assert pairs, "the reference beats 'no' on every prompt whose reference scores above 0"
    for pair in pairs:
        assert gold_score(pair["metadata"], pair["chosen"]).score > gold_score(pair["metadata"], pair["rejected"]).score
        assert pair["chosen"] != pair["rejected"] and pair["rejected"] == "no"  # duplicates and empties dropped
    assert len({p["prompt"] for p in pairs}) == len(pairs) <= len(rows)


def test_off_without_an_sft_checkpoint(tmp_path):
    from alignment.run_dir import RunDir
    from reward.stage import gold_test_rows

    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path / 'run'}"])
    assert gold_test_rows(recipe, RunDir(recipe)) == []
