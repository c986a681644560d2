"""DPO through TRL on a tiny policy: learns the preferred response, reports PPO's held-out metrics."""

import json

import pytest
import torch

from alignment.dpo import preference_rows, rows_within_budget, train_dpo
from alignment.errors import DataError, UserError
from alignment.ppo.metrics_log import read_metrics
from alignment.recipe import load_recipe
from alignment.run_dir import RunDir
from tests.alignment.ppo_tiny import make_policy, write_prompts
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo-world")
    prompts = write_prompts(tmp / "prompts.jsonl", n=48)
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": "cat cat", "rejected": "dog sun"}) + "\n" for r in rows))
    ranking = tmp / "ranking.jsonl"  # one ranking of 3 = 3 more pairs
    ranking.write_text(json.dumps({"prompt": "say cat", "responses": ["dog", "cat", "sun"], "ranking": [1, 0, 2]}) + "\n")
    return make_policy(tmp / "policy"), prompts, pairs, ranking


def recipe_for(tmp_path, world, **dpo):
    policy, prompts, pairs, ranking = world
    settings = {"policy": policy, "preferences": pairs, "batch_size": 16, "epochs": 2, "learning_rate": 5e-3,
                "logging_steps": 1, "eval_prompts": prompts, "eval_max_prompts": 16, "max_new_tokens": 6,
                "report_to": "[none]", "warmup_ratio": 0.0}
    settings.update(dpo)
    return load_recipe(None, [f"output_dir={tmp_path / 'run'}", f"data.preference_sources=[{{path: {ranking}}}]"]
                       + [f"dpo.{k}={v}" for k, v in settings.items()])


def chosen_logprob_gap(path, tokenizer_prompt="say red"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    def logp(response):
        text = tok.apply_chat_template([{"role": "user", "content": tokenizer_prompt}, {"role": "assistant", "content": response}], tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return float(-model(ids, labels=ids).loss * (ids.shape[1] - 1))
    return logp("cat cat") - logp("dog sun")


def test_dpo_prefers_the_chosen_response_and_reports_held_out_kl(tmp_path, world):
    recipe = recipe_for(tmp_path, world)
    rows, sources, _ = preference_rows(recipe, RunDir(recipe))
    assert len(rows) == 48 + 3 and len(sources) == 2
    summary = train_dpo(recipe)
    out = tmp_path / "run" / "dpo"
    before, after = chosen_logprob_gap(world[0]), chosen_logprob_gap(out)
    assert after > before + 2.0, (before, after)
    assert summary["start/kl_k1"] == 0.0 and summary["eval/kl_k3"] > 0.0
    assert {"eval/kl_k1", "eval/kl_k3", "eval/length", "eval/eos_rate"} <= set(summary)
    logged = read_metrics(out / "metrics.jsonl")
    margins = [m["dpo/margin"] for m in logged if "dpo/margin" in m]
    assert len(margins) >= 4 and margins[-1] > margins[0]
    assert (out / "COMPLETE.json").is_file() and (out / "config.json").is_file()
    assert train_dpo(recipe)["steps"] == summary["steps"]  # a finished stage is skipped


def test_dpo_by_prompt_prefers_the_chosen_response(tmp_path, world):
    """`dpo.prompts_per_step`: the stage trains on every pair of a few prompts per step, and learns."""
    summary = train_dpo(recipe_for(tmp_path, world, prompts_per_step=4, max_steps=10))
    # 10 steps of 4 prompts read 40 of the 41 distinct prompts, with all their pairs
    assert summary["steps"] == 10 and 40 <= summary["pairs"] < summary["pairs_available"] == 51
    assert chosen_logprob_gap(tmp_path / "run" / "dpo") > chosen_logprob_gap(world[0]) + 2.0
    margins = [m["dpo/margin"] for m in read_metrics(tmp_path / "run" / "dpo" / "metrics.jsonl") if "dpo/margin" in m]
    assert len(margins) >= 4 and margins[-1] > margins[0]


def test_dpo_loss_variant_and_lora_run(tmp_path, world):
    summary = train_dpo(recipe_for(tmp_path, world, loss_type="[ipo]", max_steps=2, **{"lora.enabled": "true", "lora.r": 4}))
    assert summary["steps"] == 2 and summary["loss_type"] == ["ipo"] and summary["lora"] is True
    # 2 steps of 16 read 32 of the 51 pairs, so only those are given to TRL (and its reference precompute)
    assert (summary["pairs"], summary["pairs_available"]) == (32, 51)
    assert (tmp_path / "run" / "dpo" / "adapter" / "adapter_config.json").is_file()


def test_a_step_budget_reads_a_seeded_subset_of_the_pairs():
    rows = [{"i": i} for i in range(10)]
    assert rows_within_budget(rows, -1, 4, seed=0) == rows  # epochs decide
    assert rows_within_budget(rows, 3, 4, seed=0) == rows  # 12 >= 10: every pair is read
    subset = rows_within_budget(rows, 2, 3, seed=0)
    assert len(subset) == 6 and len({r["i"] for r in subset}) == 6
    assert subset == rows_within_budget(rows, 2, 3, seed=0) != rows_within_budget(rows, 2, 3, seed=1)


def test_a_step_budget_by_prompt_keeps_whole_prompts():
    rows = [{"prompt": f"p{i % 5}", "i": i} for i in range(20)]  # 5 prompts, 4 pairs each
    assert rows_within_budget(rows, 5, 1, seed=0, by_prompt=True) == rows
    subset = rows_within_budget(rows, 3, 1, seed=0, by_prompt=True)
    kept = {r["prompt"] for r in subset}
    assert len(kept) == 3 and len(subset) == 12 and subset == [r for r in rows if r["prompt"] in kept]


def test_missing_preferences_are_named(tmp_path, world):
    recipe = load_recipe(None, [f"output_dir={tmp_path / 'run'}", f"dpo.policy={world[0]}"])
    with pytest.raises(UserError, match=r"labels/comparisons.jsonl"):
        train_dpo(recipe)


def test_degenerate_pairs_are_dropped_and_reported_like_the_reward_stage(tmp_path, world, capsys):
    pairs = tmp_path / "pairs.jsonl"
    good = [{"prompt": "say cat", "chosen": "cat", "rejected": "dog"}] * 2
    bad = [{"prompt": "say cat", "chosen": "cat", "rejected": "cat"}, {"prompt": "say cat", "chosen": "", "rejected": "dog"}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in good + bad))
    recipe = recipe_for(tmp_path, world, preferences=pairs)
    rows, _, drops = preference_rows(recipe, RunDir(recipe))
    assert len(rows) == 2 + 3  # the ranking file's 3 pairs are all usable
    assert capsys.readouterr().out.splitlines() == [
        f"dpo: {pairs}: dropped 2 of 4 pairs: 1 identical chosen and rejected, 1 empty chosen"]
    assert drops.as_dict() == {str(pairs): {"identical chosen and rejected": 1, "empty chosen": 1}}

    pairs.write_text("".join(json.dumps(r) + "\n" for r in bad))
    only_bad = load_recipe(None, [f"output_dir={tmp_path / 'run2'}", f"dpo.policy={world[0]}", f"dpo.preferences={pairs}"])
    with pytest.raises(DataError, match=rf"{pairs}: no usable preference pairs for DPO .*dropped 2 of 2 pairs"):
        preference_rows(only_bad, RunDir(only_bad))
