"""GRPO and RLOO through TRL with a reward function, writing PPO's layout and metric names."""

import pytest
import torch

from alignment.online_rl import train_online, trl_reward_function
from alignment.ppo.metrics_log import read_metrics
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import cat_reward, make_policy, write_prompts
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)


def test_reward_function_is_ppos_score():
    """Normalised score, clipped, and the missing-EOS penalty read from the completion ids."""
    score = lambda prompts, texts: torch.tensor([float(len(t)) for t in texts])
    fn = trl_reward_function(score, eos_token_ids=[1], clip=3.0, missing_eos_penalty=-1.0)
    completions = [[{"role": "assistant", "content": "ab"}], [{"role": "assistant", "content": "abcdef"}],
                   [{"role": "assistant", "content": "abc"}]]
    prompts = [[{"role": "user", "content": "x"}]] * 3
    assert fn(prompts, completions, completion_ids=[[5, 1], [5, 6, 1], [5, 6, 7]]) == [2.0, 3.0, -1.0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online-world")
    return make_policy(tmp / "policy"), write_prompts(tmp / "prompts.jsonl", n=32)


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_online_method_runs_and_reports_the_core_metrics(tmp_path, world, method):
    policy, prompts = world
    settings = {"policy": policy, "prompts": prompts, "total_episodes": 32, "batch_size": 8, "num_generations": 4,
                "max_new_tokens": 6, "logging_steps": 1, "eval_prompts": prompts, "eval_max_prompts": 8,
                "report_to": "[none]", "learning_rate": 1e-2}
    recipe = load_recipe(None, [f"output_dir={tmp_path / 'run'}"] + [f"{method}.{k}={v}" for k, v in settings.items()])
    summary = train_online(recipe, method, reward_fn=cat_reward)
    assert summary["steps"] == 4 and summary["episodes"] == 32
    assert summary["start/kl_k1"] == 0.0 and summary["eval/kl_k3"] > 0.0
    logged = read_metrics(tmp_path / "run" / method / "metrics.jsonl")
    training = [m for m in logged if "objective/score" in m]
    assert len(training) == 4
    estimator = "k3" if method == "grpo" else "k1"
    assert all(f"objective/kl_{estimator}_per_token" in m and "response/eos_rate" in m for m in training)
    assert (tmp_path / "run" / method / "COMPLETE.json").is_file()
    assert (tmp_path / "run" / method / "config.json").is_file()
