"""DPO steps by prompt (alignment.prompt_groups): the same loss and gradient as TRL's DPO on the
same pairs, each prompt and each distinct completion read once, whole prompts per batch."""

from __future__ import annotations

import collections
import functools
import math

import pytest
import torch
from trl import DPOTrainer

from alignment.dpo import SharedPromptDPOTrainer
from alignment.errors import UserError
from alignment.prompt_groups import PromptGroupBatches, PromptGroupCollator
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.test_reference_logprobs import RESPONSES, trainer_for


def grouped_trainer(tmp_path, prompts_per_step: int = 1, max_steps: int = 1):
    trainer = trainer_for(tmp_path, functools.partial(SharedPromptDPOTrainer, prompts_per_step=prompts_per_step))
    trainer.args.max_steps = max_steps
    return trainer


def lora_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_loss_and_gradient_equal_trls_on_the_same_pairs(tmp_path):
    trainer = grouped_trainer(tmp_path)
    model, data = trainer.model, trainer.train_dataset
    rows = [i for i, e in enumerate(data) if e["prompt"] != data[0]["prompt"]]  # two prompts' pairs
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy off its reference (the adapter as it was when the reference was read)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    examples = [data[i] for i in rows]

    theirs = DPOTrainer._compute_loss(trainer, model, trainer.data_collator(examples), False)
    theirs.backward()
    expected = lora_grads(model)
    model.zero_grad()
    batch = PromptGroupCollator(trainer.processing_class.pad_token_id, 64)(examples)
    ours = trainer._compute_loss(model, batch, False)
    ours.backward()

    assert len(batch["chosen_row"]) == len(rows) and batch["prefix_ids"].shape[0] == 2  # each prompt once
    assert batch["suffix_ids"].shape[0] == len(RESPONSES[1]) + len(RESPONSES[2]) < 2 * len(rows)  # each completion once
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert abs(ours.item() - math.log(2)) > 1e-3  # the policy is off the reference: a real loss
    for name, grad in lora_grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in expected.values())


def test_batches_hold_whole_prompts_and_every_pair_once_an_epoch():
    prompts = ["a"] * 3 + ["b"] * 2 + ["c"] * 4 + ["d"]
    batches = PromptGroupBatches(prompts, prompts_per_batch=2, seed=0)
    epochs = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        epoch_batches = list(batches)
        assert len(epoch_batches) == len(batches) == 2
        assert sorted(i for b in epoch_batches for i in b) == list(range(len(prompts)))
        for batch in epoch_batches:
            counts = collections.Counter(prompts[i] for i in batch)
            assert all(counts[p] == prompts.count(p) for p in counts)  # whole prompts only
        epochs.append(epoch_batches)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled by epoch
    batches.set_epoch(0)
    assert list(batches) == epochs[0]  # seeded


def test_training_by_prompt_runs_through_the_trainer(tmp_path, monkeypatch):
    trainer = grouped_trainer(tmp_path, prompts_per_step=1, max_steps=3)
    steps = []
    compute_loss = trainer._compute_loss

    def recorded(model, inputs, return_outputs):
        steps.append((inputs["prefix_ids"].shape[0], len(inputs["chosen_row"])))
        return compute_loss(model, inputs, return_outputs)

    monkeypatch.setattr(trainer, "_compute_loss", recorded)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.state.global_step == 3
    # one prompt per step, all its pairs: the three prompts in some order
    assert sorted(steps) == sorted((1, len(rs) * (len(rs) - 1) // 2) for rs in RESPONSES)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)  # it trained


def test_other_losses_are_refused_with_steps_by_prompt(tmp_path):
    with pytest.raises(UserError, match="prompts_per_step"):
        load_recipe(None, ["dpo.prompts_per_step=2", "dpo.loss_type=[ipo]"])
    with pytest.raises(UserError, match="gradient checkpointing"):
        load_recipe(None, ["dpo.prompts_per_step=2", "dpo.gradient_checkpointing=true"])
    assert load_recipe(None, ["dpo.prompts_per_step=2"]).dpo.prompts_per_step == 2
