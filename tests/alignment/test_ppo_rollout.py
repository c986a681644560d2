"""Rollout plumbing on a tiny random Llama: padding, recomputed logprobs, values, truncation."""

import pytest
import torch

from alignment.ppo.actor_critic import PolicyWithValueHead, ValueModel
from alignment.ppo.masks import truncate_after_eos
from alignment.ppo.rollout import (
    Episodes,
    decode_responses,
    encode_prompts,
    eos_ids,
    forward_in_update_shapes,
    left_pad,
    padding_bounds,
    padding_extent,
    policy_forward,
    policy_value_forward,
    sample_responses,
    value_forward,
)
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.ppo_tiny import make_policy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = make_policy(tmp_path_factory.mktemp("policy"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    critic = ValueModel(AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval())
    return tok, model, critic


PROMPTS = ["say cat", "say one two three red blue green moon sun"]


def test_left_padding_changes_neither_logprobs_nor_values(tiny):
    tok, model, critic = tiny
    enc = encode_prompts(tok, PROMPTS)
    assert len(enc[0]) < len(enc[1])
    response = torch.tensor([[5, 6, 7, 1]])
    r_mask = torch.ones_like(response)
    with torch.no_grad():
        alone_ids, alone_mask = left_pad(enc[:1], tok.pad_token_id)
        alone, _ = policy_forward(model, alone_ids, alone_mask, response, r_mask, temperature=1.0)
        v_alone = value_forward(critic, alone_ids, alone_mask, response, r_mask)
        ids, mask = left_pad(enc, tok.pad_token_id)
        assert mask[0, 0] == 0 and mask[1, 0] == 1  # the short prompt is padded on the left
        both, _ = policy_forward(model, ids, mask, response.repeat(2, 1), r_mask.repeat(2, 1), temperature=1.0)
        v_both = value_forward(critic, ids, mask, response.repeat(2, 1), r_mask.repeat(2, 1))
    torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_both[0], v_alone[0], atol=1e-5, rtol=1e-5)
    assert v_both.shape == both.shape == (2, 4)


def test_a_value_head_on_the_actor_reads_values_from_the_logprob_forward(tiny):
    """PolicyWithValueHead: the same logprobs as the plain policy, and one value per response token, padding-proof."""
    tok, model, _ = tiny
    shared = PolicyWithValueHead(model).eval()
    assert not shared.value_head.weight.any() and not shared.value_head.bias.any()  # starts at zero
    torch.nn.init.normal_(shared.value_head.weight, std=0.5)  # a head that reads something
    ids, mask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    response = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    r_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.no_grad():
        plain, _ = policy_forward(model, ids, mask, response, r_mask, temperature=0.7)
        logprobs, values, entropy = policy_value_forward(shared, ids, mask, response, r_mask, 0.7, with_entropy=True)
        alone_ids, alone_mask = left_pad(encode_prompts(tok, PROMPTS[:1]), tok.pad_token_id)
        _, alone, _ = policy_value_forward(shared, alone_ids, alone_mask, response[:1], r_mask[:1], 0.7)
    torch.testing.assert_close(logprobs, plain)
    assert values.shape == entropy.shape == response.shape and values.dtype == torch.float32
    torch.testing.assert_close(values[0], alone[0], atol=1e-5, rtol=1e-5)
    assert shared.generation_config.eos_token_id == model.generation_config.eos_token_id  # the rest is the policy's


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_recomputed_logprobs_match_the_sampling_distribution(tiny, temperature):
    """The logprob PPO recomputes is the one the token was sampled with (same T, no top-k/top-p)."""
    tok, model, _ = tiny
    ids, mask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                             max_new_tokens=6, min_new_tokens=6, output_logits=True, return_dict_in_generate=True,
                             pad_token_id=tok.pad_token_id, eos_token_id=None)
        response = out.sequences[:, ids.shape[1]:]
        at_sampling = torch.stack(out.logits, dim=1).div(temperature).log_softmax(-1)
        at_sampling = at_sampling.gather(-1, response.unsqueeze(-1)).squeeze(-1)
        recomputed, entropy = policy_forward(model, ids, mask, response, torch.ones_like(response), temperature, with_entropy=True)
    torch.testing.assert_close(recomputed, at_sampling, atol=1e-4, rtol=1e-4)
    assert entropy.shape == recomputed.shape and float(entropy.min()) > 0


def test_sampling_is_seeded_and_respects_the_length_budget(tiny):
    tok, model, _ = tiny
    ids, mask = left_pad(encode_prompts(tok, PROMPTS * 4), tok.pad_token_id)
    eos = eos_ids(tok, model)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(sample_responses(model, ids, mask, 8, 1.0, eos, tok.pad_token_id)[0])
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape[0] == 8 and runs[0].shape[1] <= 8


def test_truncated_responses_decode_without_what_follows_eos(tiny):
    tok, _, _ = tiny
    cat, dog, eos, pad = (tok.convert_tokens_to_ids(t) for t in ("cat", "dog", "<|end|>", "<pad>"))
    raw = torch.tensor([[cat, eos, dog, dog], [cat, dog, cat, dog], [eos, cat, cat, cat]])
    ids, mask, has_eos = truncate_after_eos(raw, [eos], pad)
    assert decode_responses(tok, ids, mask) == ["cat", "cat dog cat dog", ""]
    assert has_eos.tolist() == [True, False, True]
    assert mask.sum(dim=1).tolist() == [2, 4, 1]


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_lora_dropout_is_off_in_the_actor(tiny, tmp_path, critic):
    """peft adds its own Dropout modules (lora.dropout) when it wraps the policy: they must be off too,
    or the rollout's logprobs and the update's differ for the same tokens (PPO's ratio is not 1)."""
    from alignment.ppo.actor_critic import load_actor
    from alignment.recipe import load_recipe

    path = make_policy(tmp_path / "policy")
    recipe = load_recipe(None, ["ppo.lora.enabled=true", "ppo.lora.dropout=0.1", "ppo.lora.r=4", f"ppo.critic={critic}"])
    actor = load_actor(str(path), recipe.model, recipe.ppo, torch.device("cpu"), torch.float32)
    dropouts = [m for m in actor.modules() if isinstance(m, torch.nn.Dropout)]
    assert any("lora_dropout" in name for name, _ in actor.named_modules())  # the adapter's own are there...
    assert dropouts and all(m.p == 0.0 for m in dropouts)  # ...and off, like the base model's
    with torch.no_grad():  # a trained adapter (B != 0): a fresh one's zero B would hide any dropout
        for name, param in actor.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    tok = tiny[0]
    ids, mask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    response = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    r_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    actor.train()
    torch.manual_seed(0)
    first, _ = policy_forward(actor, ids, mask, response, r_mask, 1.0)
    second, _ = policy_forward(actor, ids, mask, response, r_mask, 1.0)
    assert torch.equal(first, second)


def test_a_critic_from_the_reward_model_starts_on_the_normalised_scale(tmp_path):
    """PPO's returns are built from normalised scores (r - mean) / std; a critic initialised from the
    reward model must read its value at the last token on that scale, not the raw one."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from alignment.ppo.actor_critic import load_critic
    from alignment.recipe import load_recipe
    from reward.encoding import encode_conversations
    from reward.scoring import RewardScorer, RewardStats
    from tests.alignment.ppo_tiny import make_tokenizer

    tok = make_tokenizer()
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "reward")
    tok.save_pretrained(tmp_path / "reward")
    RewardStats(mean=0.7, std=3.0, n=10).save(tmp_path / "reward")

    recipe = load_recipe(None, [])
    critic = load_critic(str(tmp_path / "reward"), recipe.model, recipe.ppo, torch.device("cpu"), torch.float32,
                         RewardStats.load(tmp_path / "reward")).eval()
    scorer = RewardScorer.from_pretrained(tmp_path / "reward")
    prompts, responses = ["say cat", "say one two three"], ["cat cat", "one two three"]
    normalised, raw = scorer.score(prompts, responses), scorer.score(prompts, responses, normalize=False)
    assert float((normalised - raw).abs().min()) > 0.1  # the two scales differ here
    ids, mask = left_pad(encode_conversations(tok, prompts, responses), tok.pad_token_id)
    with torch.no_grad():
        at_last_token = critic(ids, mask)[:, -1]
    torch.testing.assert_close(at_last_token, normalised, atol=1e-5, rtol=1e-5)


def test_old_logprobs_are_computed_in_the_shapes_the_update_trims_its_micro_batches_to():
    """forward_in_update_shapes sees each first-epoch micro-batch exactly as the update does, and puts
    every row's outputs back in its own row."""
    query_mask = torch.tensor([[0, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1]])
    response_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    query_ids, response_ids = query_mask * 7, response_mask * 9
    order, micro = torch.tensor([3, 0, 2, 1]), 2
    bounds = padding_bounds(query_mask, response_mask)
    seen = []

    def fn(rows, first, q, qm, r, rm):
        seen.append((tuple(q.shape), tuple(r.shape)))
        assert torch.equal(q, query_ids[rows, first:])
        return r.float() + 10 * torch.arange(r.shape[0]).unsqueeze(1)  # which row of the micro-batch

    out = forward_in_update_shapes(fn, order, bounds, micro, query_ids, query_mask, response_ids, response_mask)
    zeros = torch.zeros(4, 4)
    episodes = Episodes(query_ids, query_mask, response_ids, response_mask, torch.ones(4), zeros, zeros, zeros,
                        torch.zeros(4))
    expected = []
    for start in range(0, 4, micro):
        rows = order[start : start + micro]
        mb = episodes.select(rows).trimmed(padding_extent(bounds[rows]))
        expected.append((tuple(mb.query_ids.shape), tuple(mb.response_ids.shape)))
    assert seen == expected == [((2, 1), (2, 1)), ((2, 3), (2, 3))]
    assert out.shape == (4, 4)
    # row 3 was first in the first micro-batch, row 1 second in the second; nothing past a row's batch width
    assert out[3].tolist() == [9, 0, 0, 0] and out[0].tolist() == [19, 0, 0, 0]
    assert out[2].tolist() == [9, 9, 0, 0] and out[1].tolist() == [19, 19, 19, 0]
