"""DPO's reference log-probabilities read each prompt and each distinct completion once
(alignment.reference_logprobs) and equal what TRL's own precompute pass gives."""

from __future__ import annotations

import itertools

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from alignment.dpo import SharedPromptDPOTrainer, to_trl_pair
from alignment.reference_logprobs import completion_logprobs
from tests.alignment.ppo_tiny import make_policy
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)

PROMPTS = ["say cat", "say one two three red blue", "say dog sun"]
RESPONSES = [["cat", "dog", "cat cat", "red"], ["one two three", "red blue", "one"], ["dog sun", "sun"]]


def every_pair() -> list[dict]:
    return [{"prompt": p, "chosen": a, "rejected": b} for p, rs in zip(PROMPTS, RESPONSES)
            for a, b in itertools.combinations(rs, 2)]


def trainer_for(tmp_path, trainer_class, max_length: int | None = 64):
    path = make_policy(tmp_path / "policy", layers=3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    # an adapter that changes the outputs (B not zero): the reference must be read with it off
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             layers_to_transform=[2], lora_dropout=0.0, init_lora_weights=False))
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1,
                     precompute_ref_log_probs=True, max_length=max_length, report_to="none", use_cpu=True,
                     bf16=False, disable_dropout=True, gradient_checkpointing=False)
    return trainer_class(model=model, args=args, train_dataset=Dataset.from_list([to_trl_pair(r) for r in every_pair()]),
                         processing_class=tok)


@pytest.mark.parametrize("max_length", [64, 12])  # 12: some prompt + completion pairs are cut, as TRL's collator cuts them
def test_reference_logprobs_equal_trls_precompute(tmp_path, monkeypatch, max_length):
    with monkeypatch.context() as patch:  # ours must not fall back to TRL's pass
        patch.setattr(DPOTrainer, "compute_ref_log_probs", lambda *a, **k: pytest.fail("TRL's reference pass ran"))
        ours = trainer_for(tmp_path / "ours", SharedPromptDPOTrainer, max_length).train_dataset
    theirs = trainer_for(tmp_path / "theirs", DPOTrainer, max_length).train_dataset
    if max_length == 12:
        assert any(len(e["prompt_ids"]) + len(e["chosen_ids"]) > 12 for e in theirs)  # the cut is exercised
    assert len(ours) == len(theirs) == len(every_pair())
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert ours.features[column].dtype == theirs.features[column].dtype
        torch.testing.assert_close(torch.tensor(ours[column]), torch.tensor(theirs[column]), atol=1e-5, rtol=1e-5)
    assert len(set(ours["ref_chosen_logps"])) > 3  # real, varied figures


def test_each_prompt_and_each_distinct_completion_is_read_once(tmp_path):
    trainer = trainer_for(tmp_path, SharedPromptDPOTrainer)
    tokens = []
    embed = trainer.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: tokens.append(args[0].numel()))
    pairs = [(tuple(e["prompt_ids"]), tuple(e[side])) for e in trainer.train_dataset for side in ("chosen_ids", "rejected_ids")]
    try:
        with trainer.model.disable_adapter():
            logps = completion_logprobs(trainer.model, pairs, trainer.processing_class.pad_token_id)
    finally:
        hook.remove()
    distinct = set(pairs)
    assert len(logps) == len(distinct) == sum(len(rs) for rs in RESPONSES) < len(pairs)
    whole = sum(len(p) + len(c) for p, c in pairs)  # what reading every pair's two conversations reads
    prompts = {p for p, _ in distinct}
    longest_prompt = max(map(len, prompts))
    longest_suffix = max(len(c) for _, c in distinct) + 1
    # the prefixes (padded) once per prompt, each completion (padded, with the prompt's last token) once
    assert sum(tokens) <= len(prompts) * longest_prompt + len(distinct) * longest_suffix < whole
    with_adapter = completion_logprobs(trainer.model, pairs, trainer.processing_class.pad_token_id)
    assert max(abs(with_adapter[k] - logps[k]) for k in logps) > 1e-3  # the adapter was really off
