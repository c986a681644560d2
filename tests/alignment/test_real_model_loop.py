"""Every stage of the loop on a real pretrained model (SmolLM2-135M-Instruct), with tiny budgets.

The tiny random Llama never meets what users' checkpoints bring: a tokenizer of its own, a
chat template with a default system prompt, tied embeddings, a generation config. This runs
`rlhf run configs/smollm2-135m-instruct.yaml` with every stage shrunk to a step or two, both
labeling rounds (about five minutes on 2 CPU cores) and checks what a user would check afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignment.models import cpu_has_native_bf16
from tests.alignment.test_offline_models import needs_smollm2

RECIPE = "configs/smollm2-135m-instruct.yaml"
TINY = [
    "suite.n_sft=40", "suite.n_prompts=40", "suite.n_eval=8",
    "sft.max_steps=2", "sft.batch_size=4", "sft.gold_eval_prompts=2", "sft.save_steps=1000", "sft.max_new_tokens=8",
    "labels.prompts=12", "labels.candidates_per_prompt=3", "labels.pairs_per_prompt=3", "labels.max_new_tokens=12",
    "reward.max_steps=2", "reward.batch_size=2", "reward.eval_steps=1000", "reward.normalize_samples=8",
    "reward.gold_test_samples=2", "reward.bootstrap_samples=100", "reward.eval_fraction=0",
    "reward.early_stopping_patience=0",
    "ppo.total_episodes=8", "ppo.rollout_batch_size=4", "ppo.mini_batch_size=2", "ppo.max_new_tokens=8",
    "ppo.save_every=0",
    "dpo.max_steps=2", "dpo.save_steps=1000",
    "eval.max_prompts_per_set=2", "eval.kl_prompts=2", "eval.bootstrap_samples=100", "eval.max_new_tokens=8",
]

pytestmark = [pytest.mark.slow, needs_smollm2]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smollm2") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: two fight over two shared cores
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", "run", RECIPE, f"output_dir={out}", *TINY],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_every_stage_finishes(run):
    summary = json.loads((run / "summary.json").read_text())
    stages = summary.get("stages", summary)
    for stage in ("data", "sft", "samples", "labels", "reward", "ppo", "dpo", "eval"):
        assert (run / stage / "COMPLETE.json").is_file(), stage
        assert stage in stages
    # the recipe's second labeling round: round 1's PPO policy is sampled, no DPO
    for stage in ("samples", "labels", "reward", "ppo"):
        assert (run / "round2" / stage / "COMPLETE.json").is_file(), f"round2/{stage}"
    assert not (run / "round2" / "dpo").exists()
    candidates = [json.loads(line) for line in (run / "round2" / "samples" / "candidates.jsonl").read_text().splitlines()]
    assert {c["metadata"]["policy"] for c in candidates} == {"ppo"}


def test_policy_folders_load_in_plain_transformers_and_the_adapters_in_peft(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.offline_models import materialize

    base_template = AutoTokenizer.from_pretrained(materialize("offline:smollm2-135m-instruct")).chat_template
    for stage in ("sft", "ppo", "dpo"):
        model = AutoModelForCausalLM.from_pretrained(run / stage)
        assert model.config.model_type == "llama" and model.config.vocab_size == 49152
        assert AutoTokenizer.from_pretrained(run / stage).chat_template == base_template, stage
    sft = AutoModelForCausalLM.from_pretrained(run / "sft")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(materialize("offline:smollm2-135m-instruct")),
                                        run / "sft" / "adapter")
    ids = torch.tensor([[1, 504, 3458, 28, 2]])
    with torch.no_grad():  # the saved merged folder is the base model plus the saved adapter
        torch.testing.assert_close(adapted(ids).logits, sft(ids).logits, rtol=0, atol=1e-4)


def test_the_reward_folder_loads_as_a_sequence_classifier_with_its_statistics(run):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run / "reward")
    assert model.config.num_labels == 1
    stats = json.loads((run / "reward" / "reward_stats.json").read_text())
    assert stats["std"] > 0


def test_rollouts_render_prompts_with_the_models_chat_template(run):
    from alignment.models import load_tokenizer
    from alignment.ppo.rollout import encode_prompts

    tokenizer = load_tokenizer(str(run / "sft"), padding_side="left")
    ids = encode_prompts(tokenizer, ["Add 2 and 3."])[0]
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n")


def test_the_sampler_agrees_with_the_recomputed_logprobs_and_the_first_ratio_is_one(run):
    lines = [json.loads(line) for line in (run / "ppo" / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in lines if "policy/first_ratio" in m]
    assert trained and all(abs(m["policy/first_ratio"] - 1.0) < 1e-5 for m in trained)
    gaps = [m["rollout/sampler_logprob_gap"] for m in lines if "rollout/sampler_logprob_gap" in m]
    assert gaps and max(gaps) < 1e-3, gaps


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no AVX512-BF16/AMX: bf16 is emulated, far too slow")
def test_bf16_ppo_on_the_real_model_has_a_first_ratio_of_exactly_one(run, tmp_path):
    """In bf16 a matmul's rounding depends on the batch's shape; old logprobs recomputed over other
    batches than the update's gave first ratios of 0.995-1.006 on this model."""
    out = tmp_path / "ppo-bf16"
    overrides = [f"output_dir={out}", f"ppo.policy={run / 'sft'}", f"ppo.reward_model={run / 'reward'}",
                 f"ppo.prompts={run / 'suite' / 'prompts.jsonl'}", "ppo.dtype=bfloat16", "ppo.total_episodes=16",
                 "ppo.rollout_batch_size=8", "ppo.mini_batch_size=4", "ppo.max_new_tokens=8", "ppo.save_every=0",
                 "ppo.eval_max_prompts=0"]
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", "ppo", RECIPE, *overrides], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "ppo" / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in lines if "policy/first_ratio" in m]
    assert len(trained) == 2
    assert all(m["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6) for m in trained), trained
    assert all(m["policy/first_approx_kl"] == pytest.approx(0.0, abs=1e-9) for m in trained)
    # and bf16 did run: its sampler is further from the recomputation than fp32's 1e-5
    assert min(m["rollout/sampler_logprob_gap"] for m in trained) > 1e-3
