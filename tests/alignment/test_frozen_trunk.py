"""PPO's shared frozen trunk: the split forward is the whole forward, the cache hands every
micro-batch its own rows, and PPO with it keeps its invariants while the update's forwards
no longer run the frozen blocks."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignment.ppo.actor_critic import PolicyWithValueHead, ValueModel, freeze_lower_blocks
from alignment.ppo.frozen_trunk import (
    TrunkCache,
    TrunkInput,
    capture_block_input,
    decoder_of,
    frozen_block_count,
    lower_hidden,
    running_blocks,
    same_lower_blocks,
    split_matches_whole,
)
from alignment.ppo.rollout import Episodes, fed_inputs, padding_bounds, padding_extent, policy_forward, value_forward
from alignment.recipe import load_recipe
from tests.alignment.ppo_tiny import one_thread  # noqa: F401  (autouse fixture)
from tests.alignment.ppo_tiny import cat_reward, make_policy, tiny_overrides, write_prompts

LAYERS, ADAPTED = 4, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trunk-world")
    return make_policy(tmp / "policy", layers=LAYERS), write_prompts(tmp / "prompts.jsonl")


def lora_actor(path):
    """A LoRA actor on the top ADAPTED blocks whose adapter already moved it (B != 0)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    actor = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                             layers_to_transform=list(range(LAYERS - ADAPTED, LAYERS)), lora_dropout=0.0))
    with torch.no_grad():
        for name, p in actor.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return actor.eval()


def episodes_batch(n=6, seed=0):
    """Left-padded prompts of several lengths and right-padded responses of several lengths."""
    g = torch.Generator().manual_seed(seed)
    P, R = 5, 4
    query_mask = torch.zeros(n, P, dtype=torch.long)
    response_mask = torch.zeros(n, R, dtype=torch.long)
    for i in range(n):
        query_mask[i, P - 1 - i % P :] = 1
        response_mask[i, : 1 + (i * 3) % R] = 1
    query_ids = torch.randint(4, 19, (n, P), generator=g) * query_mask
    response_ids = torch.randint(4, 19, (n, R), generator=g) * response_mask
    return query_ids, query_mask, response_ids, response_mask


def test_the_frozen_blocks_are_counted_from_the_bottom(world):
    actor = lora_actor(world[0])
    assert frozen_block_count(actor) == LAYERS - ADAPTED
    full = AutoModelForCausalLM.from_pretrained(world[0])
    assert frozen_block_count(full) == 0  # the embeddings train: nothing to share
    full.requires_grad_(False)
    assert frozen_block_count(full) == LAYERS


def test_a_forward_from_the_shared_hidden_states_gives_the_whole_forward_s_logprobs_and_values(world):
    actor = lora_actor(world[0])
    q, qm, r, rm = episodes_batch()
    trunk = TrunkInput(lower_hidden(actor, *fed_inputs(q, qm, r, rm), LAYERS - ADAPTED), LAYERS - ADAPTED)
    with torch.no_grad():
        whole = policy_forward(actor, q, qm, r, rm, 0.7)[0]
        split = policy_forward(actor, q, qm, r, rm, 0.7, trunk=trunk)[0]
        with actor.disable_adapter():  # the reference reads the same hidden states
            ref_whole = policy_forward(actor, q, qm, r, rm, 0.7)[0]
            ref_split = policy_forward(actor, q, qm, r, rm, 0.7, trunk=trunk)[0]
    torch.testing.assert_close(split, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ref_split, ref_whole, atol=1e-6, rtol=1e-6)
    assert (whole - ref_whole).abs().max() > 1e-2  # the adapter matters, so the check above could fail
    assert len(decoder_of(actor).layers) == LAYERS and not isinstance(decoder_of(actor).norm, torch.nn.Identity)

    shared = PolicyWithValueHead(actor)
    torch.nn.init.normal_(shared.value_head.weight)
    critic = ValueModel(AutoModelForSequenceClassification.from_pretrained(world[0], num_labels=1))
    freeze_lower_blocks(critic.model, ADAPTED)
    with torch.no_grad():
        for model, forward in ((shared, lambda **k: shared_values(shared, q, qm, r, rm, **k)),
                               (critic, lambda **k: value_forward(critic, q, qm, r, rm, **k))):
            torch.testing.assert_close(forward(trunk=trunk), forward(), atol=1e-6, rtol=1e-6)
    assert same_lower_blocks(actor, critic, LAYERS - ADAPTED)
    assert split_matches_whole(actor, q, qm, LAYERS - ADAPTED) and split_matches_whole(critic, q, qm, LAYERS - ADAPTED)


def shared_values(model, q, qm, r, rm, trunk=None):
    from alignment.ppo.rollout import policy_value_forward

    return policy_value_forward(model, q, qm, r, rm, 1.0, trunk=trunk)[1]


def test_a_critic_shares_only_frozen_blocks_that_hold_the_actor_s_weights(world):
    actor = lora_actor(world[0])
    critic = AutoModelForSequenceClassification.from_pretrained(world[0], num_labels=1)
    assert not same_lower_blocks(actor, critic, LAYERS - ADAPTED)  # trainable: it would drift from the actor
    freeze_lower_blocks(critic, ADAPTED)
    assert same_lower_blocks(actor, critic, LAYERS - ADAPTED)
    with torch.no_grad():
        decoder_of(critic).layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert not same_lower_blocks(actor, critic, LAYERS - ADAPTED)


def test_a_critic_above_the_adapted_blocks_reads_the_reference_s_hidden_states(world):
    """A critic that trains only its last block matches the actor's *base* weights below it, adapted
    blocks included (the reference runs them with the adapter off), and the hidden state the reference's
    forward shows entering that block is the one the critic computes there itself."""
    actor = lora_actor(world[0])
    critic = ValueModel(AutoModelForSequenceClassification.from_pretrained(world[0], num_labels=1))
    freeze_lower_blocks(critic.model, 1)
    assert same_lower_blocks(actor, critic, LAYERS - 1)
    q, qm, r, rm = episodes_batch()
    ids, mask = fed_inputs(q, qm, r, rm)
    trunk = TrunkInput(lower_hidden(actor, ids, mask, LAYERS - ADAPTED), LAYERS - ADAPTED)
    with torch.no_grad(), actor.disable_adapter(), capture_block_input(actor, LAYERS - 1) as entering:
        policy_forward(actor, q, qm, r, rm, 1.0, trunk=trunk)
    assert len(entering) == 1
    own = lower_hidden(critic, ids, mask, LAYERS - 1)
    torch.testing.assert_close(entering[0][mask.bool()], own[mask.bool()], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(value_forward(critic, q, qm, r, rm, trunk=TrunkInput(entering[0], LAYERS - 1)),
                                   value_forward(critic, q, qm, r, rm), atol=1e-5, rtol=1e-5)
    with torch.no_grad(), capture_block_input(actor, LAYERS - 1) as with_adapter:
        policy_forward(actor, q, qm, r, rm, 1.0, trunk=trunk)
    assert (with_adapter[0] - entering[0])[mask.bool()].abs().max() > 1e-3  # the adapter would have mattered


def test_the_decoder_is_whole_again_after_a_split_forward_fails(world):
    actor = lora_actor(world[0])
    layers = decoder_of(actor).layers
    with pytest.raises(RuntimeError), running_blocks(actor, 1, 3):
        assert len(decoder_of(actor).layers) == 2
        raise RuntimeError("boom")
    assert decoder_of(actor).layers is layers and not isinstance(decoder_of(actor).norm, torch.nn.Identity)


def test_the_cache_hands_each_micro_batch_of_any_epoch_its_own_rows_hidden_states(world):
    """Filled in one order of trimmed micro-batches, read in another: each read equals the hidden
    states computed afresh for that trimmed micro-batch."""
    actor = lora_actor(world[0])
    q, qm, r, rm = episodes_batch()
    bounds = padding_bounds(qm, rm)
    episodes = Episodes(q, qm, r, rm, torch.ones(6), *(torch.zeros(6, 4),) * 3, torch.zeros(6))
    cache = TrunkCache(LAYERS - ADAPTED, 6, q.shape[1], r.shape[1])
    for rows in (torch.tensor([4, 0]), torch.tensor([2, 5]), torch.tensor([1, 3])):
        first, _ = padding_extent(bounds[rows])
        mb = episodes.select(rows).trimmed(padding_extent(bounds[rows]))
        cache.keep(rows, first, lower_hidden(actor, *fed_inputs(mb.query_ids, mb.query_mask, mb.response_ids,
                                                           mb.response_mask), LAYERS - ADAPTED))
    left_out = 0
    for rows in (torch.tensor([5, 1, 0]), torch.tensor([3, 2]), torch.tensor([4])):
        extent = padding_extent(bounds[rows])
        mb = episodes.select(rows).trimmed(extent)
        ids, mask = fed_inputs(mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask)
        fresh = lower_hidden(actor, ids, mask, LAYERS - ADAPTED)
        read = cache.read(rows, *extent).hidden
        assert read.shape == fresh.shape
        # every position whose output is read: the prompt's, and each response token's but the row's last
        # (a micro-batch narrower than this one never fed that token; what it predicts is past the response)
        read_out = torch.cat([mb.query_mask, mb.response_mask[:, 1:]], dim=1).bool()
        left_out += int((mask.bool() & ~read_out).sum())
        torch.testing.assert_close(read[read_out], fresh[read_out], atol=1e-5, rtol=1e-5)
    assert left_out > 0  # such positions were there, fed, and rightly not compared


@pytest.mark.parametrize("critic,critic_trains", [("separate", ADAPTED), ("separate", 1), ("shared", ADAPTED)])
def test_ppo_with_the_shared_trunk_keeps_its_invariants_and_the_update_skips_the_frozen_blocks(tmp_path, world, critic,
                                                                                               critic_trains, monkeypatch):
    """With LoRA on the top blocks, the update's forwards (the only ones with autograd on) never run
    the frozen blocks: not block 0, nor, for a critic that trains only its last block, the block below
    it; without sharing they do. The first ratio is 1 and the first KL 0 either way, and the first
    iteration's losses agree."""
    import alignment.ppo.trainer as trainer

    calls: dict[str, list[bool]] = {}

    def counting(loader, name, block):
        def load(*args, **kwargs):
            model = loader(*args, **kwargs)
            decoder_of(model).layers[block].register_forward_pre_hook(
                lambda *_: calls.setdefault(name, []).append(torch.is_grad_enabled()))
            return model
        return load

    monkeypatch.setattr(trainer, "load_actor", counting(trainer.load_actor, "actor", 0))
    monkeypatch.setattr(trainer, "load_critic", counting(trainer.load_critic, "critic", LAYERS - critic_trains - 1))
    metrics, grad_calls = {}, {}
    for share in (True, False):
        calls.clear()
        recipe = load_recipe(None, tiny_overrides(
            tmp_path / str(share), *world, total_episodes=32, ppo_epochs=2, critic=critic, share_frozen_trunk=share,
            critic_trainable_layers=critic_trains, **{"lora.enabled": True, "lora.r": 4, "lora.last_layers": ADAPTED}))
        trainer.train_ppo(recipe, reward_fn=cat_reward)
        metrics[share] = [m for m in trainer.read_metrics(tmp_path / str(share) / "ppo" / "metrics.jsonl")
                          if "iteration" in m]
        grad_calls[share] = {name: sum(flags) for name, flags in calls.items()}
    for share in (True, False):
        first = metrics[share][0]
        assert first["objective/kl"] == 0.0 and first["policy/first_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert set(grad_calls[True].values()) == {0}
    assert all(n > 0 for n in grad_calls[False].values()) and len(grad_calls[False]) == (2 if critic == "separate" else 1)
    for name in ("loss/policy", "loss/value", "objective/score"):
        assert metrics[True][0][name] == pytest.approx(metrics[False][0][name], rel=1e-4, abs=1e-6), name
