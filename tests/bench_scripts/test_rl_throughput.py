"""bench/rl_throughput.py: the FLOP and byte counters, and the figures derived from timed steps."""

from __future__ import annotations

import pytest
import torch

from tests.bench_scripts.scripts import load

rt = load("rl_throughput")


@pytest.fixture
def counted_qwen2():
    """A tiny Qwen2 with GQA, its decoder forward wrapped by Counters (unwrapped again afterwards)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.generation.utils import GenerationMixin
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

    config = Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    forward, generate = Qwen2Model.forward, GenerationMixin.generate
    counters = rt.Counters(Qwen2Model, config)
    yield model, counters
    Qwen2Model.forward, GenerationMixin.generate = forward, generate


def test_training_flops_are_three_forwards_over_real_tokens(counted_qwen2):
    model, counters = counted_qwen2
    ids = torch.randint(2, 50, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # lengths 3 and 5: padding costs nothing
    model(input_ids=ids, attention_mask=mask).logits.sum().backward()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)  # a no-grad forward is not training work
    blocks = sum(p.numel() for p in model.model.layers.parameters())
    # 2 FLOPs per block weight per token, causal attention 2*L*d*T^2 per sequence; backward = 2 forwards
    expected = 3 * (2 * blocks * (3 + 5) + 2 * 2 * 16 * (3 ** 2 + 5 ** 2))
    snap = counters.snapshot()
    assert snap["train_tokens"] == 8
    assert snap["train_flops"] == pytest.approx(expected)


def test_a_forward_from_a_shared_frozen_trunk_counts_only_the_blocks_it_ran(counted_qwen2):
    from alignment.ppo.frozen_trunk import lower_hidden, running_blocks

    model, counters = counted_qwen2
    ids, mask = torch.randint(2, 50, (1, 4)), torch.ones(1, 4, dtype=torch.long)
    hidden = lower_hidden(model, ids, mask, 1)  # no grad: not training work
    with running_blocks(model, 1):
        model(inputs_embeds=hidden, attention_mask=mask).logits.sum().backward()
    one_block = sum(p.numel() for p in model.model.layers[1].parameters())
    assert counters.snapshot()["train_flops"] == pytest.approx(3 * (2 * one_block * 4 + 2 * 16 * 4 ** 2))


def test_decode_bytes_are_weights_plus_kv_cache_per_new_token(counted_qwen2):
    model, counters = counted_qwen2
    ids = torch.randint(2, 50, (3, 4))
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, min_new_tokens=3,
                   do_sample=True, pad_token_id=0)
    snap = counters.snapshot()
    weights = sum(p.numel() * 4 for p in model.model.parameters())  # float32
    kv_width = 2 * (16 // 4)  # 2 key/value heads of width 4
    # the prompt is one prefill forward; then 2 decoding steps read 5 and 6 cached positions
    kv = sum(2 * 2 * kv_width * ctx * 3 * 4 for ctx in (5, 6))
    assert snap["decode_steps"] == 2
    assert snap["decode_bytes"] == 2 * weights + kv
    assert snap["generate_s"] > 0


def test_figures_and_ratios_from_timed_steps():
    work = rt.Work(episodes=4, epochs=2)
    zero = {"train_flops": 0.0, "train_tokens": 0.0, "decode_bytes": 0.0, "decode_steps": 0, "generate_s": 0.0}
    raw = {"steps": [{"tokens": 100.0, "rollout_s": 1.0, "step_s": 3.0, "cpu_s": 2.0, "response_length": 25.0},
                     {"tokens": 60.0, "rollout_s": 1.0, "step_s": 1.0, "cpu_s": 2.0, "response_length": 15.0}],
           "counters": zero, "peak_rss_mb": 500.0, "peak_rss_delta_mb": 200.0, "wall_s": 9.0}
    ours = rt.summarize("ppo", raw, work, None, None)
    assert ours["rollout_tokens_per_s"] == 80.0          # 160 tokens / 2 s
    assert ours["train_tokens_per_s"] == 160.0           # 160 tokens x 2 epochs / (4 - 2) s
    assert ours["end_to_end_tokens_per_s"] == 40.0       # 160 tokens / 4 s
    assert ours["end_to_end_tokens_per_cpu_s"] == 40.0  # 160 tokens / 4 CPU-s
    assert ours["step_s"] == 2.0 and ours["peak_memory_mb"] == 200.0
    peer = dict(ours, end_to_end_tokens_per_s=20.0, step_s=4.0, peak_memory_mb=400.0)
    rel = rt.ratios({"ppo": ours, "rloo": peer})["rloo"]
    assert rel["end_to_end_tokens_per_s"] == 2.0 and rel["step_s"] == 2.0 and rel["peak_memory_mb"] == 2.0
    shared = dict(ours, step_s=1.0)  # ppo-shared is compared with the TRL peers, not with ppo
    both = {"ppo": ours, "ppo-shared": shared, "rloo": peer}
    assert list(rt.ratios(both)) == ["rloo"] and rt.ratios(both, "ppo-shared")["rloo"]["step_s"] == 4.0

    # repeated runs: each figure is the median over the repeats
    slow, fast = dict(ours, step_s=9.0), dict(ours, step_s=1.0)
    assert rt.median_figures([slow, ours, fast])["step_s"] == 2.0
