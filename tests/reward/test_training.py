"""The held-out accuracy the reward trainer reports (and early-stops on) is the exact one."""

from __future__ import annotations

import itertools

import torch

from reward.comparisons import Comparisons, tokenize
from reward.encoding import encode_conversations, pad_sequences, sequence_rewards
from tests.reward.tiny import WORDS, make_reward_model, make_tokenizer


def test_eval_accuracy_counts_every_pair_of_every_prompt_group(tmp_path):
    """Three prompts with 15 pairs each: one eval batch of 3 examples holding 45 pairs.

    accelerate's gather_for_metrics trims a last batch to the number of remaining examples
    (3 here), which once made the reported accuracy that of the first 3 pairs only.
    """
    from datasets import Dataset

    from alignment.recipe.reward import RewardConfig
    from reward.training import BradleyTerryTrainer, PairCollator, trl_args

    tokenizer = make_tokenizer()
    model = make_reward_model(tokenizer, seed=1)
    rows = []
    for p in range(3):
        prompt = " ".join(WORDS[p:p + 3])
        responses = [" ".join(WORDS[(p + 2 * i) % len(WORDS):][:2 + i % 3]) for i in range(6)]
        for a, b in itertools.combinations(responses, 2):
            rows.append({"prompt": prompt, "chosen": a, "rejected": b, "margin": 0.0, "weight": 1.0, "target": 1.0})
    examples = tokenize(Comparisons(rows), tokenizer, max_length=None)
    assert len(examples) == 3 and sum(len(e["pairs"]) for e in examples) == 45

    with torch.no_grad():
        def reward(prompts, responses):
            ids, mask = pad_sequences(encode_conversations(tokenizer, prompts, responses), tokenizer.pad_token_id)
            return sequence_rewards(model, ids, mask)
        diff = reward([r["prompt"] for r in rows], [r["chosen"] for r in rows]) - \
            reward([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    exact = ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()
    first_three = ((diff[:3] > 0).float() + 0.5 * (diff[:3] == 0).float()).mean().item()
    assert exact != first_three  # otherwise this set-up could not tell the two apart

    args = trl_args(RewardConfig(report_to=["none"]), str(tmp_path), seed=0, n_train=3, has_eval=True)
    trainer = BradleyTerryTrainer(model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id),
                                  train_dataset=Dataset.from_list(examples), eval_dataset=Dataset.from_list(examples),
                                  processing_class=tokenizer)
    metrics = trainer.evaluate()
    assert abs(metrics["eval_accuracy"] - exact) < 1e-6


def test_the_new_head_is_drawn_from_the_recipe_seed_not_the_process_rng(tmp_path):
    # `rlhf run` trains SFT in the same process before the reward model; `rlhf reward` alone
    # does not. The head must not depend on that history, or the two paths give two models.
    from transformers import LlamaConfig, LlamaForCausalLM

    from reward.stage import reward_model_to_train

    tok = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "sft")
    init = str(tmp_path / "sft")

    torch.manual_seed(123)
    first = reward_model_to_train(init, seed=7).score.weight
    after = torch.rand(1)
    torch.manual_seed(999)
    torch.rand(1000)  # some other history of draws
    second = reward_model_to_train(init, seed=7).score.weight
    assert torch.equal(first, second)
    assert not torch.equal(first, reward_model_to_train(init, seed=8).score.weight)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after)  # the process's own RNG stream is left as it was
