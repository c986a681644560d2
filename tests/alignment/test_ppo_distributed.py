"""`accelerate launch` with two CPU processes (gloo) runs PPO and logs what one process logs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignment.ppo.metrics_log import read_metrics
from alignment.ppo.trainer import train_ppo
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import make_policy, tiny_overrides, write_prompts

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu_2proc.yaml"


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_two_process_run_matches_single_process_metrics_shape(tmp_path, critic):
    policy, prompts = make_policy(tmp_path / "policy"), write_prompts(tmp_path / "prompts.jsonl")
    settings = dict(reward="random", total_episodes=32, save_every=1, ptx_coef=0.1,  # ptx: a second forward under DDP
                    critic=critic)
    if critic == "shared":  # a warm-up iteration too: the trunk's gradients are reduced, then dropped
        settings["critic_warmup_steps"] = 1
    demos = tmp_path / "demos.jsonl"
    demos.write_text('{"prompt": "say cat", "completion": "cat"}\n' * 8)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(f"name: two-proc\ndata:\n  sources: [{{path: {demos}}}]\n")

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CONFIG.parents[2])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "-m", "alignment.cli",
           "ppo", str(recipe_file), *tiny_overrides(two, policy, prompts, **settings)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=CONFIG.parents[2])
    assert done.returncode == 0, done.stderr[-3000:]

    one = tmp_path / "one"
    train_ppo(load_recipe(recipe_file, tiny_overrides(one, policy, prompts, **settings)), force=True)

    two_m, one_m = read_metrics(two / "ppo" / "metrics.jsonl"), read_metrics(one / "ppo" / "metrics.jsonl")
    assert len(two_m) == len(one_m) == 2
    assert [sorted(m) for m in two_m] == [sorted(m) for m in one_m]
    assert [m["episode"] for m in two_m] == [16, 32]
    assert two_m[0]["objective/kl"] == 0.0 and two_m[-1]["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    if critic == "shared":  # the warm-up moved the value head only
        assert two_m[1]["objective/kl"] == 0.0 and two_m[1]["loss/value"] != two_m[0]["loss/value"]
    marker = (two / "ppo" / "COMPLETE.json").read_text()
    assert '"processes": 2' in marker
    assert (two / "ppo" / "checkpoints").is_dir()
