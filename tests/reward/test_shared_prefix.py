"""Reading a prompt once for all its responses (reward.encoding.shared_prefix_rewards) gives the
rewards, gradients and training step of reading every conversation whole."""

from __future__ import annotations

import itertools

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model

from alignment.recipe.reward import RewardConfig
from reward.comparisons import Comparisons, tokenize
from reward.encoding import (PrefixBatch, common_prefix_length, encode_conversations, pad_sequences,
                             sequence_rewards, shared_prefix_rewards)
from reward.training import BradleyTerryTrainer, PairCollator, trl_args
from tests.reward.tiny import WORDS, make_reward_model, make_tokenizer


def test_common_prefix_leaves_each_sequence_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # not 3: the first keeps its last token
    assert common_prefix_length([[7, 8]]) == 1
    with pytest.raises(ValueError, match="share no first token"):
        PrefixBatch.of([[[1, 2], [1, 3]], [[4, 5], [6, 5]]], pad_id=0)


def prompt_groups(tokenizer):
    """Three prompts of different lengths (so prefixes are left-padded), 2-4 responses each,
    one response a prefix of another."""
    prompts = ["the cat", "a dog sat on the mat red blue", [{"role": "system", "content": "one two"},
                                                            {"role": "user", "content": "sun moon"}]]
    responses = [["yes", "no", "yes no"], ["three", "reverse words answer"], ["green", "blue", "red", "green sun"]]
    return [encode_conversations(tokenizer, [p] * len(r), r) for p, r in zip(prompts, responses)]


def lora(model):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], layers_to_transform=[1],
                        task_type="SEQ_CLS", lora_dropout=0.0,
                        init_lora_weights=False)  # B not zero: the adapter changes the prefix cache
    return get_peft_model(model, config)


def test_shared_prefix_rewards_and_gradients_equal_whole_conversations():
    tokenizer = make_tokenizer()
    groups = prompt_groups(tokenizer)
    flat = [s for g in groups for s in g]
    batch = PrefixBatch.of(groups, tokenizer.pad_token_id)
    assert batch.prefix_mask.sum(1).tolist() == [common_prefix_length(g) for g in groups]
    assert batch.suffix_mask.sum().item() < sum(map(len, flat))  # fewer tokens read

    results = []
    for shared in (True, False):
        model = lora(make_reward_model(tokenizer, seed=3))
        if shared:
            rewards = shared_prefix_rewards(model, batch)
        else:
            rewards = sequence_rewards(model, *pad_sequences(flat, tokenizer.pad_token_id, "right"))
        (rewards * torch.linspace(-1, 1, len(flat))).sum().backward()  # every reward in the gradient, unequally
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((rewards.detach(), grads))
    (r_shared, g_shared), (r_whole, g_whole) = results
    assert r_shared.shape == (len(flat),)
    torch.testing.assert_close(r_shared, r_whole, atol=1e-5, rtol=1e-4)
    assert g_shared.keys() == g_whole.keys() and any("lora_A" in n for n in g_shared)
    for name in g_shared:
        torch.testing.assert_close(g_shared[name], g_whole[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(g.abs().sum() > 0 for n, g in g_shared.items() if "lora_A" in n)


def test_a_training_step_is_the_same_with_and_without_sharing(tmp_path):
    tokenizer = make_tokenizer()
    rows = []
    for p in range(4):
        prompt = " ".join(WORDS[p:p + 2 + p])
        responses = [" ".join(WORDS[(p + 3 * i) % len(WORDS):][:1 + i % 3]) for i in range(4)]
        for i, (a, b) in enumerate(itertools.combinations(responses, 2)):
            rows.append({"prompt": prompt, "chosen": a, "rejected": b, "margin": 0.0,
                         "weight": 1.0, "target": 0.5 if i == 0 else 1.0})
    examples = tokenize(Comparisons(rows), tokenizer, max_length=None)
    cfg = RewardConfig(report_to=["none"], batch_size=2, max_steps=2, learning_rate=1e-2, warmup_ratio=0.0)
    weights, losses = [], []
    for shared in (True, False):
        model = make_reward_model(tokenizer, seed=5)
        args = trl_args(cfg, str(tmp_path / str(shared)), seed=0, n_train=len(examples), has_eval=False,
                        save_strategy="no", logging_steps=1)
        trainer = BradleyTerryTrainer(model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id, shared),
                                      train_dataset=Dataset.from_list(examples), processing_class=tokenizer)
        assert not args.gradient_checkpointing  # with it on, transformers drops the cache the sharing needs
        trainer.train()
        losses.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert len(losses[0]) == 2
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5)
    before = make_reward_model(tokenizer, seed=5).state_dict()
    assert any(not torch.equal(before[n], w) for n, w in weights[0].items())  # it trained
    # Adam divides by sqrt(v): where a gradient is ~0, float noise of 1e-7 becomes a visible step,
    # so the weights are compared relative to how far the step moved them (measured: < 0.2%).
    for name in weights[0]:
        moved = (weights[0][name] - before[name]).abs().max().item()
        assert (weights[0][name] - weights[1][name]).abs().max().item() <= 0.01 * moved + 1e-7, name
