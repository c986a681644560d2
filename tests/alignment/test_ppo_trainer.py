"""PPO end to end on a tiny random Llama: invariants, learning, KL control, guards, resume."""

import json

import pytest
import torch

from alignment.ppo.metrics_log import read_metrics
from alignment.ppo.trainer import TrainingStopped, train_ppo
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.ppo_tiny import cat_reward, make_opinionated_policy, make_policy, tiny_overrides, write_prompts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo-world")
    return make_policy(tmp / "policy"), write_prompts(tmp / "prompts.jsonl")


def run(tmp_path, world, name="run", reward=cat_reward, max_iterations=None, **ppo):
    recipe = load_recipe(None, tiny_overrides(tmp_path / name, *world, **ppo))
    summary = train_ppo(recipe, reward_fn=reward, max_iterations=max_iterations)  # reward=None: the reward model
    return summary, [m for m in read_metrics(tmp_path / name / "ppo" / "metrics.jsonl") if "iteration" in m]


def test_invariants_before_any_update(tmp_path, world):
    """KL to the reference is exactly 0 at the first rollout; the first minibatch has ratio 1."""
    _, metrics = run(tmp_path, world, total_episodes=16, ppo_epochs=1)
    first = metrics[0]
    assert first["objective/kl"] == 0.0 and first["objective/kl_k3"] == 0.0
    assert first["objective/non_score_reward"] == 0.0
    assert first["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert first["policy/first_approx_kl"] == pytest.approx(0.0, abs=1e-9)
    for name in ("objective/score", "objective/rlhf_reward", "objective/beta", "loss/policy", "loss/value",
                 "policy/clipfrac", "value/clipfrac", "policy/approx_kl", "policy/entropy", "response/length",
                 "response/eos_rate", "speed/rollout_tokens_per_s", "speed/train_tokens_per_s"):
        assert name in first, name


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_bf16_on_cpu_runs_under_autocast_with_fp32_weights_and_keeps_the_invariants(tmp_path, world, critic,
                                                                                     monkeypatch):
    """ppo.dtype=bfloat16 on a CPU: the update and the rollout run under bf16 autocast (the sampler's logprobs
    come out of bf16 matmuls), the weights AdamW updates stay fp32, and the invariants hold exactly."""
    import alignment.ppo.trainer as trainer

    seen = {}
    real_load_actor = trainer.load_actor

    def spy(*args):
        actor = real_load_actor(*args)
        seen["dtype"] = next(actor.parameters()).dtype
        return actor

    monkeypatch.setattr(trainer, "load_actor", spy)
    _, bf16 = run(tmp_path, world, "bf16", total_episodes=32, ppo_epochs=1, critic=critic, dtype="bfloat16")
    _, fp32 = run(tmp_path, world, "fp32", total_episodes=32, ppo_epochs=1, critic=critic, dtype="float32")
    assert seen["dtype"] == torch.float32
    first = bf16[0]
    assert first["objective/kl"] == 0.0 and first["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    # bf16 matmuls really ran: same seed, same samples' distribution, other numbers (fp32 runs are bit-identical)
    assert first["policy/entropy"] != fp32[0]["policy/entropy"]
    assert first["rollout/sampler_logprob_gap"] < 1e-3  # tiny widths: decode and full forward round alike
    assert all(torch.isfinite(torch.tensor(m["loss/policy"])) for m in bf16)


def test_trivially_learnable_reward_rises_and_large_beta_holds_the_policy(tmp_path, world):
    free, free_m = run(tmp_path, world, "free", total_episodes=160, kl_coef=0.0)
    tied, tied_m = run(tmp_path, world, "tied", total_episodes=160, kl_coef=3.0)
    start = sum(m["objective/raw_score"] for m in free_m[:2]) / 2
    end = sum(m["objective/raw_score"] for m in free_m[-2:]) / 2
    assert end > start + 0.15, (start, end)
    # beta large: the policy barely moves (KL per sequence stays far below the unconstrained run's)
    assert tied_m[-1]["objective/kl"] < 0.25 * free_m[-1]["objective/kl"], (tied_m[-1], free_m[-1])
    tied_end = sum(m["objective/raw_score"] for m in tied_m[-2:]) / 2
    assert tied_end < end


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_resume_after_kill_reaches_the_same_step_and_kl_controller_state(tmp_path, world, critic):
    settings = dict(total_episodes=64, save_every=2, adaptive_kl=True, target_kl=0.01, kl_horizon=100, critic=critic)
    straight, straight_m = run(tmp_path, world, "straight", **settings)
    _, killed_m = run(tmp_path, world, "killed", max_iterations=3, **settings)  # dies after iteration 3...
    assert len(killed_m) == 3
    import shutil  # ...whose checkpoint it had not written yet
    shutil.rmtree(tmp_path / "killed" / "ppo" / "checkpoints" / "iter-000003")
    assert not (tmp_path / "killed" / "ppo" / "COMPLETE.json").exists()
    resumed, resumed_m = run(tmp_path, world, "killed", **settings)
    assert resumed["iterations"] == straight["iterations"] == 4
    assert resumed["episodes"] == straight["episodes"] == 64
    assert resumed["final_beta"] == pytest.approx(straight["final_beta"], rel=1e-6)
    assert resumed["final_beta"] != settings.get("kl_coef", 0.05)  # the controller did move
    assert [m["iteration"] for m in resumed_m] == [1, 2, 3, 4]
    for a, b in zip(resumed_m[2:], straight_m[2:]):  # the same episodes after the resume
        assert a["objective/score"] == pytest.approx(b["objective/score"], abs=1e-5)
        assert a["objective/kl"] == pytest.approx(b["objective/kl"], abs=1e-4)
        assert a["loss/value"] == pytest.approx(b["loss/value"], rel=1e-4)  # the critic (or value head) came back too


def test_nan_reward_stops_with_step_and_tensor_named(tmp_path, world):
    calls = []

    def poisoned(prompts, responses):
        calls.append(1)
        scores = cat_reward(prompts, responses)
        if len(calls) == 2:
            scores[3] = float("nan")
        return scores

    with pytest.raises(TrainingStopped, match=r"iteration 2: score is not finite; the last good checkpoint is .*iter-000001"):
        run(tmp_path, world, reward=poisoned, save_every=1)


def test_kl_blowup_stops_the_run(tmp_path, world):
    with pytest.raises(TrainingStopped, match=r"iteration 2: KL to the reference is .* past ppo.kl_stop=1e-06"):
        run(tmp_path, world, kl_stop=1e-6, learning_rate=0.05)


def test_the_sampled_policy_is_the_optimised_one_on_a_checkpoint_with_its_own_sampling_settings(tmp_path, world):
    """rollout/sampler_logprob_gap: the sampler's logprobs against PPO's recomputed ones, logged every
    iteration and kept in the summary; ~0 even when generation_config.json asks for other sampling."""
    opinionated = (make_opinionated_policy(tmp_path / "opinionated"), world[1])
    summary, metrics = run(tmp_path, opinionated, total_episodes=32, ppo_epochs=1)
    assert all(m["rollout/sampler_logprob_gap"] < 1e-4 for m in metrics)
    assert summary["rollout/sampler_logprob_gap"] == metrics[-1]["rollout/sampler_logprob_gap"]


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_lora_actor_uses_its_own_base_weights_as_reference_and_saves_a_plain_model(tmp_path, world, critic):
    from transformers import AutoModelForCausalLM

    summary, metrics = run(tmp_path, world, total_episodes=32, critic=critic, **{"lora.enabled": True, "lora.r": 4})
    assert metrics[0]["objective/kl"] == 0.0
    assert metrics[0]["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert metrics[1]["objective/kl"] != 0.0  # the adapter moved the policy away from its base
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "ppo")  # merged: no peft needed
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert json.loads((tmp_path / "run" / "ppo" / "COMPLETE.json").read_text())["iterations"] == 2


def test_critic_warmup_leaves_the_actor_untouched(tmp_path, world):
    _, metrics = run(tmp_path, world, total_episodes=32, critic_warmup_steps=1, kl_coef=0.0)
    assert "loss/policy" not in metrics[0] and "loss/value" in metrics[0]
    assert metrics[1]["objective/kl"] == 0.0  # the second rollout still comes from the SFT policy
    assert "loss/policy" in metrics[1]


def test_kl_as_a_loss_term_and_ptx_mix_in(tmp_path, world):
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": "say cat", "completion": "cat cat"}) + "\n" for _ in range(8)))
    recipe = load_recipe(None, tiny_overrides(tmp_path / "run", *world, total_episodes=32, kl_in="loss",
                                              kl_estimator="k2", kl_coef=0.5, ptx_coef=0.5) + [f"data.sources=[{{path: {demos}}}]"])
    train_ppo(recipe, reward_fn=cat_reward)
    metrics = [m for m in read_metrics(tmp_path / "run" / "ppo" / "metrics.jsonl") if "iteration" in m]
    assert all(m["objective/non_score_reward"] == 0.0 for m in metrics)  # KL left the reward...
    assert metrics[1]["objective/kl"] > 0.0  # ...but is still measured
    assert all(m["loss/ptx"] > 0.0 for m in metrics)
    assert metrics[0]["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)


def test_cli_names_the_missing_reward_model_in_one_line(tmp_path, world, capsys):
    from alignment.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: no-rm\n")
    overrides = [o for o in tiny_overrides(tmp_path / "run", *world) if not o.startswith("ppo.critic_init")]
    assert main(["ppo", str(recipe), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rlhf ppo: error: no reward model at") and "ppo.reward_model" in err, err


def test_sizes_that_do_not_divide_are_named(tmp_path, world):
    from alignment.errors import UserError

    with pytest.raises(UserError, match=r"key 'ppo.rollout_batch_size': 16 must be a multiple of ppo.mini_batch_size=6"):
        run(tmp_path, world, mini_batch_size=6)


def test_reward_model_with_another_tokenizer_scores_the_text(tmp_path, world):
    """PPO scores through reward.scoring.RewardScorer, which re-tokenizes: a different vocabulary is fine,
    but the critic then cannot start from the reward model, and the error says which setting to change."""
    from alignment.errors import UserError
    from reward.scoring import RewardScorer
    from tests.alignment.ppo_tiny import make_reward_model

    rm = make_reward_model(tmp_path / "rm")
    with pytest.raises(UserError, match="uses another tokenizer than the policy; set ppo.critic_init=policy"):
        run(tmp_path, world, "r1", reward=None, critic_init="reward", reward_model=rm)
    summary, metrics = run(tmp_path, world, "r2", reward=None, reward_model=rm, total_episodes=16)
    scorer = RewardScorer.from_pretrained(rm)
    assert scorer.stats.mean == 0.5 and scorer.stats.std == 2.0
    assert metrics[0]["objective/raw_score"] != 0.0 and summary["iterations"] == 1


# ----------------------------------------------------------------------------- ppo.critic=shared
def test_shared_value_head_keeps_the_invariants_and_reads_masked_values_from_the_actor(tmp_path, world, monkeypatch):
    """One forward of the actor gives logprobs and values: the first minibatch still has ratio 1, and the
    values GAE reads have the response's shape, zero after EOS."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    import alignment.ppo.trainer as trainer

    seen = []

    def spy(rewards, values, mask, gamma, lam):
        seen.append((values.clone(), mask.clone()))
        return compute_gae(rewards, values, mask, gamma, lam)

    compute_gae = trainer.compute_gae
    monkeypatch.setattr(trainer, "compute_gae", spy)
    _, metrics = run(tmp_path, world, total_episodes=32, ppo_epochs=1, critic="shared")
    assert metrics[0]["objective/kl"] == 0.0
    for m in metrics:
        assert m["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
        assert m["policy/first_approx_kl"] == pytest.approx(0.0, abs=1e-9)
    assert not seen[0][0].any()  # the head starts at zero
    values, mask = seen[1]  # after one iteration of training
    assert values.shape == mask.shape and (values[mask == 0] == 0).all() and values[mask == 1].abs().min() > 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "ppo")  # the policy folder: the plain LM
    assert not any("value" in name for name, _ in model.named_parameters())
    head = load_file(tmp_path / "run" / "ppo" / "critic" / "value_head.safetensors")
    assert head["weight"].shape == (1, model.config.hidden_size) and head["weight"].any()


def test_shared_warmup_trains_only_the_value_head(tmp_path, world):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, metrics = run(tmp_path, world, total_episodes=32, critic="shared", critic_warmup_steps=2, kl_coef=0.0)
    assert all("loss/policy" not in m for m in metrics)
    assert metrics[1]["objective/kl"] == 0.0  # the second rollout's logprobs are still the SFT policy's
    before = AutoModelForCausalLM.from_pretrained(world[0]).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "ppo").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the trunk did not move...
    assert load_file(tmp_path / "run" / "ppo" / "critic" / "value_head.safetensors")["weight"].any()  # ...the head did


def test_shared_value_head_learns_the_trivial_reward(tmp_path, world):
    _, metrics = run(tmp_path, world, total_episodes=160, kl_coef=0.0, critic="shared")
    start = sum(m["objective/raw_score"] for m in metrics[:2]) / 2
    end = sum(m["objective/raw_score"] for m in metrics[-2:]) / 2
    assert end > start + 0.15, (start, end)
