"""Reading a prompt once for all its responses (reward.encoding.shared_prefix_rewards) gives the
rewards, gradients and training step of reading every conversation whole."""

from __future__ import annotations

import itertools

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model

from alignment.models import lora_config
from alignment.ppo.frozen_trunk import decoder_of, frozen_block_count
from alignment.recipe.reward import RewardConfig
from alignment.recipe.sft import LoraConfig as RecipeLora
from reward.comparisons import Comparisons, tokenize
from reward.encoding import (PrefixBatch, common_prefix_length, encode_conversations, pad_sequences, prefix_trunk,
                             sequence_rewards, shared_prefix_rewards)
from reward.training import BradleyTerryTrainer, PairCollator, TrunkStates, indexed_dataset, trl_args
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


def test_kept_trunk_states_give_the_rewards_and_gradients_of_the_whole_forward():
    """Starting from the hidden states below the first adapted block (`prefix_trunk`, or `TrunkStates`
    re-padded into another batch) gives every reward and gradient the whole forward gives."""
    tokenizer = make_tokenizer()
    groups = prompt_groups(tokenizer)
    batch = PrefixBatch.of(groups, tokenizer.pad_token_id)
    results = []
    for split in (False, True):
        model = lora(make_reward_model(tokenizer, seed=3))
        assert frozen_block_count(model) == 1  # embeddings and block 0 frozen; the adapter is on block 1
        trunk = prefix_trunk(model, batch, 1) if split else None
        rewards = shared_prefix_rewards(model, batch, trunk)
        (rewards * torch.linspace(-1, 1, len(rewards))).sum().backward()
        results.append((rewards.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (r_whole, g_whole), (r_split, g_split) = results
    torch.testing.assert_close(r_split, r_whole, atol=1e-5, rtol=1e-4)
    assert any("lora_B" in n for n in g_split) and any("score" in n for n in g_split)
    for name in g_whole:
        torch.testing.assert_close(g_split[name], g_whole[name], atol=1e-5, rtol=1e-4, msg=name)

    # kept from one batch, laid out again in another (other groups beside them, other padding)
    model = lora(make_reward_model(tokenizer, seed=3)).eval()
    states = TrunkStates(blocks=1)
    with torch.no_grad():
        states.for_batch(model, batch, torch.tensor([10, 11, 12]))
        regrouped = PrefixBatch.of([groups[2], groups[0]], tokenizer.pad_token_id)
        reads = []
        hook = model.get_base_model().model.embed_tokens.register_forward_hook(lambda *_: reads.append(1))
        try:
            kept = states.for_batch(model, regrouped, torch.tensor([12, 10]))
            from_kept = shared_prefix_rewards(model, regrouped, kept)
        finally:
            hook.remove()
        assert not reads  # nothing below block 1 ran
        torch.testing.assert_close(from_kept, shared_prefix_rewards(model, regrouped), atol=1e-5, rtol=1e-4)


def test_training_with_kept_trunk_states_runs_the_frozen_blocks_once_and_trains_the_same(tmp_path):
    tokenizer = make_tokenizer()
    rows = []
    for p in range(4):
        prompt = " ".join(WORDS[p:p + 2 + p])
        responses = [" ".join(WORDS[(p + 3 * i) % len(WORDS):][:1 + i % 3]) for i in range(3)]
        for a, b in itertools.combinations(responses, 2):
            rows.append({"prompt": prompt, "chosen": a, "rejected": b, "margin": 0.0, "weight": 1.0, "target": 1.0})
    examples = tokenize(Comparisons(rows), tokenizer, max_length=None)
    cfg = RewardConfig(report_to=["none"], batch_size=2, epochs=3, learning_rate=1e-2, warmup_ratio=0.0,
                       lora=RecipeLora(enabled=True, r=4, alpha=8, last_layers=1, dropout=0.0))
    losses, frozen_reads = [], []
    for cached in (False, True):
        model = make_reward_model(tokenizer, seed=5)
        args = trl_args(cfg, str(tmp_path / str(cached)), seed=0, n_train=len(examples), has_eval=False,
                        save_strategy="no", logging_steps=1, eval_strategy="steps", eval_steps=2)
        trainer = BradleyTerryTrainer(model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id),
                                      train_dataset=indexed_dataset(examples), eval_dataset=indexed_dataset(examples[:2]),
                                      processing_class=tokenizer,
                                      peft_config=lora_config(cfg.lora, model, task_type="SEQ_CLS"),
                                      cache_frozen_trunk=cached)
        assert (trainer.trunk_states is not None) == cached
        reads = []
        hook = decoder_of(trainer.model).layers[0].register_forward_hook(lambda *_: reads.append(1))
        trainer.train()
        hook.remove()
        losses.append([h[k] for h in trainer.state.log_history for k in ("loss", "eval_loss") if k in h])
        frozen_reads.append(len(reads))
    steps_per_epoch, evaluations = 2, 3  # 4 prompts in batches of 2; eval_steps=2: one evaluation per epoch, one batch
    assert len(losses[0]) == 3 * steps_per_epoch + evaluations
    assert losses[1] == pytest.approx(losses[0], rel=1e-4, abs=1e-5)
    # a prefix and a suffix forward per batch: every step and evaluation without the states, the first epoch's
    # steps and the first evaluation with them
    assert frozen_reads == [2 * (3 * steps_per_epoch + evaluations), 2 * (steps_per_epoch + 1)]
