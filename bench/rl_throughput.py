"""Our PPO against TRL's RLOOTrainer and GRPOTrainer on the same work: speed and memory, side by side.

    python bench/rl_throughput.py --quick                # CPU, the tiny offline model (a couple of minutes)
    python bench/rl_throughput.py                        # CPU, quickstart-sized batches (longer)
    python bench/rl_throughput.py --model-size 0.5b      # GPU: a Qwen2-0.5B-shaped random model in bf16, + MFU
    python bench/rl_throughput.py --quick --only ppo,rloo --no-append
    $VLLM_VENV/bin/python bench/rl_throughput.py --quick --only ppo-shared --rollout-engine vllm   # vLLM samples ours

Each contender runs in its own child process (so that peak memory is its own and no
accelerate state leaks between trainers) on the same policy checkpoint, the same prompts,
the same reward function, the same episodes and generated tokens per step, the same
minibatch and number of optimiser steps, the same sampling settings and the same number of
threads. One *step* is one round of the algorithm: sample `episodes` responses, then
`epochs` passes over them in minibatches of `minibatch` (one optimiser step each). The first
`warmup` steps are run and thrown away. Ours runs twice: `ppo` (a separate critic model) and
`ppo-shared` (the same with ppo.critic=shared: a value head on the actor), each against the peers.

Printed per contender (means over the measured steps):
  rollout tok/s   generated tokens / rollout seconds (sampling, then logprobs under the policy
                  and the reference (and our critic's values), then the reward)
  train tok/s     generated tokens x epochs / (step seconds - rollout seconds)
  end-to-end      generated tokens / step seconds, and seconds per step
  tok per CPU-s   generated tokens / the child's CPU seconds per step: far less sensitive to a
                  busy shared machine than wall time (every contender uses the same threads)
  peak memory     CPU: the child's peak RSS (ru_maxrss) above its RSS after imports;
                  GPU: torch.cuda.max_memory_allocated
  GPU only        MFU of the training phase (decoder FLOPs x3 for forward+backward, against
                  the GPU's bf16 dense peak) and decode memory-bandwidth utilisation
                  (weights + KV cache read per decoding step, over the time in generate())
and our ratio to each peer. `--repeat N` runs the contenders N times, interleaved, and reports
each figure's median. Results are appended to bench/results/rl_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

CONTENDERS = {"ppo": "ours: PPO (alignment.ppo)", "ppo-shared": "ours: PPO, ppo.critic=shared (value head on the actor)",
              "ppo-whole": "ours: PPO, every forward through the whole model (ppo.share_frozen_trunk=false)",
              "rloo": "TRL RLOOTrainer", "grpo": "TRL GRPOTrainer"}
CRITIC = {"ppo": "separate", "ppo-shared": "shared", "ppo-whole": "separate"}  # ours, and the ppo.critic each runs with
DEFAULT_CONTENDERS = ("ppo", "ppo-shared", "rloo", "grpo")  # ppo-whole differs from ppo only with --lora-last-layers
LORA_R, LORA_ALPHA = 16, 32  # with --lora-last-layers, the adapters of every contender
FIELD_HELP = {"lora_last_layers": "LoRA on the last N blocks for every contender (default 0: all weights train); "
              "our PPO then shares its frozen lower blocks' forward, and its separate critic trains N blocks",
              "critic_trainable_layers": "blocks our separate critic trains (default: --lora-last-layers, else all)"}
OURS = tuple(CRITIC)


# ----------------------------------------------------------------------------- the work, held equal
@dataclasses.dataclass
class Work:
    """What every contender does. Everything here is passed to all of them alike."""

    model_size: str = "tiny"
    """'tiny': the offline quickstart Llama; 'smollm2': the real SmolLM2-135M-Instruct (offline:, from its
    package); 'tiny-qwen2' / '0.5b': a random Qwen2-shaped model."""
    dtype: str = "float32"
    """model.dtype for every contender: 'bfloat16' on a CPU is fp32 weights under bf16 autocast for all
    (ours: accelerate's mixed precision; TRL: bf16=True), bf16 weights on a GPU."""
    rollout_engine: str = "hf"
    """Our PPO's sampler (ppo.rollout_engine): 'hf' or 'vllm' (needs the vllm environment,
    scripts/setup_vllm_env.sh). TRL's trainers sample with transformers generate either way."""
    lora_last_layers: int = 0
    """LoRA (r=16, alpha=32, every linear) on the last N blocks for every contender, TRL's through
    peft_config; 0 trains all weights. With N, our PPO's frozen lower blocks run once per rollout
    (ppo.share_frozen_trunk) and our separate critic trains its last N blocks (ppo.critic_trainable_layers)."""
    critic_trainable_layers: int = -1
    """Our separate critic trains its last N blocks and its head (ppo.critic_trainable_layers); -1: all of
    it without LoRA, lora_last_layers with it."""
    episodes: int = 32
    """Responses sampled per step (our rollout_batch_size; TRL's generation batch = prompts x num_generations)."""
    minibatch: int = 8
    """Episodes per optimiser step (our mini_batch_size; TRL's per_device_train_batch_size)."""
    epochs: int = 2
    """Passes over each step's episodes (our ppo_epochs; TRL's num_iterations)."""
    max_new_tokens: int = 24
    num_generations: int = 4
    """TRL's group size; the generation batch still holds `episodes` responses."""
    steps: int = 4
    """Measured steps."""
    warmup: int = 1
    """Steps run first and not measured (allocator warm-up, lazy imports, kernel selection)."""
    learning_rate: float = 3e-4
    kl_coef: float = 0.05
    temperature: float = 1.0
    threads: int = 1
    """torch intra-op threads on CPU (a tiny model only loses time to thread hand-offs)."""
    seed: int = 0
    device: str = "cpu"
    model_dir: str = ""
    prompts: str = ""


PROFILES = {
    "quick": dict(episodes=32, minibatch=8, epochs=2, max_new_tokens=24, steps=4, warmup=1),
    "default": dict(episodes=64, minibatch=16, epochs=4, max_new_tokens=32, steps=6, warmup=1),
    "gpu": dict(episodes=64, minibatch=16, epochs=2, max_new_tokens=128, steps=3, warmup=1, threads=0),
}

# Qwen2.5-0.5B's decoder (360M non-embedding parameters); the vocabulary is the offline tokenizer's,
# since a random model's samples must be decodable by the tokenizer the prompts were encoded with.
MODEL_SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "tiny-qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2),
}

# Dense bf16 tensor-core peak (FLOP/s) and memory bandwidth (bytes/s) by device name, most specific first.
GPU_PEAKS = [
    ("H200", 989e12, 4.8e12), ("GH200", 989e12, 4.0e12), ("H100 NVL", 835e12, 3.9e12),
    ("H100 PCIe", 756e12, 2.0e12), ("H100", 989e12, 3.35e12), ("H800", 989e12, 3.35e12),
    ("A100-SXM4-80GB", 312e12, 2.039e12), ("A100 80GB PCIe", 312e12, 1.935e12), ("A100", 312e12, 1.555e12),
    ("L40S", 362e12, 0.864e12), ("L4", 121e12, 0.3e12), ("A10G", 70e12, 0.6e12), ("A10", 125e12, 0.6e12),
    ("RTX 4090", 165e12, 1.008e12), ("RTX 3090", 71e12, 0.936e12),
]


def gpu_peaks(name: str) -> tuple[Optional[float], Optional[float]]:
    for key, flops, bandwidth in GPU_PEAKS:
        if key in name:
            return flops, bandwidth
    return None, None


# ----------------------------------------------------------------------------- FLOP and byte counters
class Counters:
    """Counts decoder FLOPs and decode-step bytes by wrapping the decoder stack's forward.

    Every model here (our actor, reference and critic; TRL's policy and reference) runs its
    transformer blocks through one class's `forward` (LlamaModel or Qwen2Model), so one
    wrapper sees all of them alike. A forward with gradients on is training work: its FLOPs
    are 3x the forward's (backward is twice the forward), over the blocks it ran (our PPO's
    forwards from a shared frozen trunk run only the blocks above it). A forward of one new token with a KV
    cache is a decoding step: it reads every weight and the whole cache once. Tensor sums are
    accumulated on the device and read at the end, so counting adds no host-device syncs.
    """

    def __init__(self, decoder_class, config):
        self.hidden = config.hidden_size
        self.layers = config.num_hidden_layers
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or self.hidden // heads
        self.kv_width = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
        self.block_params = 0  # parameters in the transformer blocks, from the first forward
        self.param_bytes = 0  # bytes of all decoder weights (the tied embedding stands for the LM head)
        self.elem_size = 0
        self.train_flops = 0.0
        self.train_tokens = 0.0
        self._pending: list = []
        self.decode_bytes = 0.0
        self.decode_steps = 0
        self.generate_s = 0.0
        self._patch(decoder_class)

    def _patch(self, decoder_class) -> None:
        import torch

        original = decoder_class.forward
        counters = self

        @functools.wraps(original)
        def forward(module, *args, **kwargs):
            if not counters.block_params:  # one block's (they are alike); our PPO may run a slice of them
                counters.block_params = sum(p.numel() for p in module.layers[0].parameters())
                counters.elem_size = next(module.parameters()).element_size()
            ids = kwargs.get("input_ids", args[0] if args else None)
            embeds = kwargs.get("inputs_embeds")  # our PPO's forwards from the shared frozen blocks
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            cache = kwargs.get("past_key_values", kwargs.get("cache"))  # transformers 5 names it `cache`
            if torch.is_grad_enabled() and (ids is not None or embeds is not None):
                counters._count_training(ids if ids is not None else embeds[..., 0], mask, len(module.layers))
            elif ids is not None and ids.shape[1] == 1 and cache is not None:
                if not counters.param_bytes:  # generation runs every block
                    counters.param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
                # keys and values of every earlier position (padding included: it is read too)
                context = (cache.get_seq_length() if hasattr(cache, "get_seq_length") else mask.shape[1] - 1) + 1
                kv = 2 * counters.layers * counters.kv_width * context * ids.shape[0] * counters.elem_size
                counters.decode_bytes += counters.param_bytes + kv
                counters.decode_steps += 1
            return original(module, *args, **kwargs)

        decoder_class.forward = forward

        from transformers.generation.utils import GenerationMixin

        generate = GenerationMixin.generate

        @functools.wraps(generate)
        def timed_generate(model, *args, **kwargs):
            sync()
            t0 = time.perf_counter()
            try:
                return generate(model, *args, **kwargs)
            finally:
                sync()
                counters.generate_s += time.perf_counter() - t0

        GenerationMixin.generate = timed_generate

    def _count_training(self, ids, mask, blocks: int) -> None:
        """A forward with autograd on over `blocks` blocks (all of them, or those above a shared frozen trunk)."""
        lengths = mask.sum(dim=1) if mask is not None else ids.new_full((ids.shape[0],), ids.shape[1])
        lengths = lengths.double()
        # matmuls: 2 FLOPs per weight per token; causal attention: QK^T and AV, 2*L*d*T^2 per sequence
        forward = 2.0 * blocks * self.block_params * lengths.sum() + 2.0 * blocks * self.hidden * (lengths ** 2).sum()
        self._pending.append((3.0 * forward, lengths.sum()))

    def snapshot(self) -> dict:
        for flops, tokens in self._pending:
            self.train_flops += float(flops)
            self.train_tokens += float(tokens)
        self._pending.clear()
        return {"train_flops": self.train_flops, "train_tokens": self.train_tokens, "decode_bytes": self.decode_bytes,
                "decode_steps": self.decode_steps, "generate_s": self.generate_s}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- the world
def prepare(work: Work, work_dir: Path) -> Work:
    """The offline world (prompts, tokenizer, tiny model) and, for Qwen2 shapes, the random model."""
    from alignment.errors import UserError
    from alignment.offline_models import materialize
    from alignment.recipe import load_recipe
    from alignment.suite.world import build_world

    recipe = load_recipe(str(REPO / "configs" / "quickstart.yaml"), [f"output_dir={work_dir / 'world'}"])
    try:
        world = build_world(recipe)
    except UserError:  # built by an older suite version: this cache is ours to rebuild
        print(f"rebuilding {work_dir / 'world'}: the suite settings changed since it was built")
        shutil.rmtree(work_dir / "world")
        world = build_world(recipe)
    model_dir = world.model_dir
    if work.model_size == "smollm2":
        model_dir = materialize("offline:smollm2-135m-instruct")
    elif work.model_size != "tiny":
        model_dir = make_qwen2(work.model_size, world.model_dir, work_dir / f"qwen2-{work.model_size}", work.device)
    return dataclasses.replace(work, model_dir=str(model_dir), prompts=str(world.suite_dir / "prompts.jsonl"))


def make_qwen2(size: str, tokenizer_dir: Path, out: Path, device: str) -> Path:
    """A randomly initialised Qwen2-shaped causal LM with the offline tokenizer, saved once."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    marker = out / "bench.json"
    tokenizer_fp = json.loads((tokenizer_dir / "COMPLETE.json").read_text()).get("fingerprint")
    if marker.is_file() and json.loads(marker.read_text()).get("key") == [str(dtype), tokenizer_fp]:
        return out
    shutil.rmtree(out, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True,
                         rope_theta=1_000_000.0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=None, **MODEL_SHAPES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    marker.write_text(json.dumps({"size": size, "parameters": n, "key": [str(dtype), tokenizer_fp]}))
    return out


def reward_fn(seed: int):
    """The reward every contender uses: a seeded N(0,1) per (prompt, response) text, costing microseconds,
    so reward-model cost cannot favour anyone (see README: what is held equal)."""
    from alignment.ppo.trainer import random_reward

    return lambda prompts, responses: random_reward(prompts, responses, seed)


# ----------------------------------------------------------------------------- the contenders (in the child)
def _instrument(work: Work) -> Counters:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(work.model_dir)
    if config.model_type == "qwen2":
        from transformers.models.qwen2.modeling_qwen2 import Qwen2Model as Decoder
    elif config.model_type == "llama":
        from transformers.models.llama.modeling_llama import LlamaModel as Decoder
    else:
        raise ValueError(f"no FLOP counter for model type {config.model_type}")
    return Counters(Decoder, config)


def run_ppo(work: Work, out: Path, counters: Counters, critic: str = "separate", share_trunk: bool = True) -> dict:
    """Our PPO through its public entry point, `train_ppo`, exactly as `rlhf ppo` runs it.

    `critic`: "separate" (a critic model of its own) or "shared" (a value head on the actor's trunk);
    `share_trunk`: ppo.share_frozen_trunk (it acts only with LoRA on the last blocks). Nothing else differs.
    """
    from alignment.ppo import metrics_log
    from alignment.ppo.metrics_log import read_metrics
    from alignment.ppo.trainer import train_ppo
    from alignment.recipe import load_recipe

    rounds = work.warmup + work.steps
    ppo = {
        "policy": work.model_dir, "critic_init": "policy", "prompts": work.prompts, "eval_prompts": "",
        "total_episodes": work.episodes * (rounds + 1), "rollout_batch_size": work.episodes,
        "mini_batch_size": work.minibatch, "ppo_epochs": work.epochs, "max_new_tokens": work.max_new_tokens,
        "learning_rate": work.learning_rate, "kl_coef": work.kl_coef, "temperature": work.temperature,
        "kl_stop": "null", "save_every": 0, "sample_every": 0, "eval_every": 0, "report_to": "[none]",
        "critic_warmup_steps": 0,  # TRL trains its policy every step; critic-only iterations would do less work
        "critic": critic, "rollout_engine": work.rollout_engine, "share_frozen_trunk": str(share_trunk).lower(),
    }
    if work.lora_last_layers:
        ppo.update({"lora.enabled": "true", "lora.r": LORA_R, "lora.alpha": LORA_ALPHA,
                    "lora.last_layers": work.lora_last_layers})
    critic_layers = work.critic_trainable_layers if work.critic_trainable_layers >= 0 else (work.lora_last_layers or None)
    if critic_layers is not None:
        ppo["critic_trainable_layers"] = critic_layers
    recipe = load_recipe(str(REPO / "configs" / "quickstart.yaml"),
                         [f"output_dir={out}", f"seed={work.seed}", f"model.dtype={work.dtype}"]
                         + [f"ppo.{k}={v}" for k, v in ppo.items()])
    boundaries: list[tuple[float, float, dict]] = []
    log = metrics_log.MetricsLogger.log

    def timed_log(self, step, metrics):  # one log line per iteration: the end of a step
        boundaries.append(_boundary(counters))
        return log(self, step, metrics)

    metrics_log.MetricsLogger.log = timed_log
    train_ppo(recipe, reward_fn=reward_fn(work.seed), force=True, max_iterations=rounds)
    lines = [m for m in read_metrics(out / "ppo" / "metrics.jsonl") if "time/iteration_s" in m]
    if len(lines) != rounds or len(boundaries) != rounds:
        raise RuntimeError(f"ppo: expected {rounds} iterations, saw {len(lines)} metric lines "
                           f"and {len(boundaries)} logs")
    steps = []
    for k in range(work.warmup, rounds):
        m = lines[k]
        tokens = m["response/length"] * work.episodes
        steps.append({"tokens": tokens, "rollout_s": tokens / m["speed/rollout_tokens_per_s"],
                      "step_s": boundaries[k][0] - boundaries[k - 1][0],
                      "cpu_s": boundaries[k][1] - boundaries[k - 1][1],
                      "response_length": m["response/length"], "push_s": m.get("time/weight_push_s", 0.0)})
    return {"steps": steps, "counters": _counter_delta(boundaries[work.warmup - 1][2], boundaries[-1][2])}


def run_trl(method: str, work: Work, out: Path, counters: Counters) -> dict:
    """TRL's trainer, configured so that one generation round is exactly one of our PPO iterations."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from alignment.data.files import read_rows
    from alignment.data.rows import prompt_messages
    import torch

    from alignment.models import load_policy, load_tokenizer, training_precision
    from alignment.online_rl import trl_reward_function
    from alignment.ppo.rollout import eos_ids
    from alignment.recipe import load_recipe

    if method == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

    recipe = load_recipe(str(REPO / "configs" / "quickstart.yaml"), [f"output_dir={out}", f"model.dtype={work.dtype}"])
    ppo = recipe.ppo  # the same score shaping as ours: clip and missing-EOS penalty
    precision = training_precision(work.dtype, torch.device(work.device))  # as our PPO holds its weights
    tokenizer = load_tokenizer(work.model_dir, recipe.model, padding_side="left")
    model = load_policy(work.model_dir, recipe.model, device=work.device, dtype=precision.weights)
    reward = trl_reward_function(reward_fn(work.seed), eos_ids(tokenizer, model), ppo.reward_clip,
                                 ppo.missing_eos_penalty)
    prompts = [row["prompt"] for row in read_rows(work.prompts)]
    dataset = Dataset.from_list([{"prompt": prompt_messages(p)} for p in prompts])
    per_round = (work.episodes // work.minibatch) * work.epochs
    rounds = work.warmup + work.steps
    args = Config(
        output_dir=str(out / "trl"), per_device_train_batch_size=work.minibatch, gradient_accumulation_steps=1,
        steps_per_generation=work.episodes // work.minibatch, num_iterations=work.epochs,
        num_generations=work.num_generations, max_completion_length=work.max_new_tokens,
        temperature=work.temperature, top_k=0, top_p=1.0, beta=work.kl_coef, epsilon=0.2,
        learning_rate=work.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        max_steps=rounds * per_round, logging_steps=per_round, save_strategy="no", report_to="none",
        seed=work.seed, data_seed=work.seed, dataloader_num_workers=0, disable_dropout=True,
        bf16=precision.bf16_autocast, gradient_checkpointing=False, use_cpu=work.device == "cpu",
    )
    peft_config = None
    if work.lora_last_layers:  # the adapters our PPO trains (alignment.models.lora_config), on TRL's side too
        from alignment.models import lora_config
        from alignment.recipe.sft import LoraConfig

        peft_config = lora_config(LoraConfig(enabled=True, r=LORA_R, alpha=LORA_ALPHA,
                                             last_layers=work.lora_last_layers), model)
    trainer = Trainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config)

    rollouts: list[dict] = []
    generate_and_score = trainer._generate_and_score_completions

    def timed_rollout(inputs):
        sync()
        t0 = time.perf_counter()
        batch = generate_and_score(inputs)
        tokens = float(batch["completion_mask"].sum())
        rollouts.append({"rollout_s": time.perf_counter() - t0, "tokens": tokens,
                         "response_length": tokens / batch["completion_mask"].shape[0]})
        return batch

    trainer._generate_and_score_completions = timed_rollout
    boundaries: list[tuple[float, float, dict]] = []

    class RoundEnd(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            boundaries.append(_boundary(counters))

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % per_round == 0:
                boundaries.append(_boundary(counters))

    trainer.add_callback(RoundEnd())
    trainer.train()
    if len(rollouts) != rounds:
        raise RuntimeError(f"{method}: expected {rounds} generation rounds, TRL ran {len(rollouts)}")
    steps = [{**rollouts[k], "step_s": boundaries[k + 1][0] - boundaries[k][0],
              "cpu_s": boundaries[k + 1][1] - boundaries[k][1]} for k in range(work.warmup, rounds)]
    return {"steps": steps, "counters": _counter_delta(boundaries[work.warmup][2], boundaries[-1][2])}


def _boundary(counters: Counters) -> tuple[float, float, dict]:
    """The end of a step: wall clock, this process's CPU time (all threads), the counters."""
    sync()
    return time.perf_counter(), time.process_time(), counters.snapshot()


def _counter_delta(start: dict, end: dict) -> dict:
    return {k: end[k] - start[k] for k in end}


def worker(name: str, work: Work, out: Path) -> dict:
    """One contender in this process: returns per-step figures, memory and counters."""
    import psutil
    import torch

    if work.device == "cpu" and work.threads:
        torch.set_num_threads(work.threads)
    import trl  # noqa: F401  (every contender pays for the same imports before the baseline)

    import alignment.ppo.trainer  # noqa: F401

    base_rss = psutil.Process().memory_info().rss
    counters = _instrument(work)
    if work.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    result = (run_ppo(work, out, counters, CRITIC[name], share_trunk=name != "ppo-whole") if name in OURS
              else run_trl(name, work, out, counters))
    result["wall_s"] = time.perf_counter() - t0
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result["peak_rss_mb"] = peak_rss / 2**20
    result["peak_rss_delta_mb"] = max(peak_rss - base_rss, 0) / 2**20
    if work.device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name(0)
    return result


# ----------------------------------------------------------------------------- figures and the table
def summarize(name: str, raw: dict, work: Work, peak_flops: Optional[float], peak_bw: Optional[float]) -> dict:
    steps = raw["steps"]
    n = len(steps)
    tokens = sum(s["tokens"] for s in steps)
    rollout_s = sum(s["rollout_s"] for s in steps)
    step_s = sum(s["step_s"] for s in steps)
    train_s = max(step_s - rollout_s, 1e-9)
    c = raw["counters"]
    fig = {
        "contender": name, "steps": n, "episodes_per_step": work.episodes,
        "generated_tokens_per_step": tokens / n, "response_length": sum(s["response_length"] for s in steps) / n,
        "rollout_s_per_step": rollout_s / n, "train_s_per_step": train_s / n, "step_s": step_s / n,
        "rollout_tokens_per_s": tokens / rollout_s, "train_tokens_per_s": tokens * work.epochs / train_s,
        "end_to_end_tokens_per_s": tokens / step_s, "episodes_per_s": work.episodes * n / step_s,
        "cpu_s_per_step": sum(s["cpu_s"] for s in steps) / n,
        "end_to_end_tokens_per_cpu_s": tokens / max(sum(s["cpu_s"] for s in steps), 1e-9),
        "peak_memory_mb": raw.get("peak_cuda_mb", raw["peak_rss_delta_mb"]),
        "peak_memory_kind": "cuda max_memory_allocated" if "peak_cuda_mb" in raw else "RSS above post-import",
        "peak_rss_mb": raw["peak_rss_mb"], "wall_s": raw["wall_s"],
        "train_tflops_per_s": c["train_flops"] / train_s / 1e12,
        "decode_gb_per_s": c["decode_bytes"] / c["generate_s"] / 1e9 if c["generate_s"] else None,
        "generate_s_per_step": c["generate_s"] / n,
        "weight_push_s_per_step": sum(s.get("push_s", 0.0) for s in steps) / n,
    }
    fig["mfu"] = c["train_flops"] / train_s / peak_flops if peak_flops else None
    fig["decode_bandwidth_utilisation"] = (c["decode_bytes"] / c["generate_s"] / peak_bw
                                           if peak_bw and c["generate_s"] else None)
    return fig


ROWS = [
    ("rollout tok/s", "rollout_tokens_per_s", "{:.0f}", "higher"),
    ("train tok/s", "train_tokens_per_s", "{:.0f}", "higher"),
    ("end-to-end tok/s", "end_to_end_tokens_per_s", "{:.0f}", "higher"),
    ("tok per CPU-s", "end_to_end_tokens_per_cpu_s", "{:.0f}", "higher"),
    ("s per step", "step_s", "{:.2f}", "lower"),
    ("  CPU s per step", "cpu_s_per_step", "{:.2f}", "lower"),
    ("  rollout s", "rollout_s_per_step", "{:.2f}", "lower"),
    ("  train s", "train_s_per_step", "{:.2f}", "lower"),
    ("  of which push s", "weight_push_s_per_step", "{:.2f}", None),
    ("tokens per step", "generated_tokens_per_step", "{:.0f}", None),
    ("peak memory MB", "peak_memory_mb", "{:.0f}", "lower"),
]
GPU_ROWS = [
    ("train TFLOP/s", "train_tflops_per_s", "{:.3g}", "higher"),
    ("MFU (train)", "mfu", "{:.1%}", "higher"),
    ("decode GB/s", "decode_gb_per_s", "{:.3g}", "higher"),
    ("decode BW util.", "decode_bandwidth_utilisation", "{:.1%}", "higher"),
]


def median_figures(runs: list[dict]) -> dict:
    """One contender's figures over repeated runs: the median of each number (robust to a busy neighbour)."""
    import statistics

    out = dict(runs[0])
    for key, value in runs[0].items():
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(values) == len(runs):
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    return out


def ratios(figures: dict[str, dict], name: str = "ppo") -> dict[str, dict]:
    """Ours (`name`) against each TRL peer: ours / peer for rates, peer / ours for times and memory;
    above 1 means ours is better."""
    ours = figures.get(name)
    out: dict[str, dict] = {}
    if not ours:
        return out
    for peer, fig in figures.items():
        if peer in OURS:
            continue
        out[peer] = {}
        for _, key, _, better in ROWS + GPU_ROWS:
            a, b = ours.get(key), fig.get(key)
            if better and a and b:
                out[peer][key] = a / b if better == "higher" else b / a
    return out


def print_table(figures: dict[str, dict], rel: dict[str, dict[str, dict]]) -> None:
    """`rel`: ours -> peer -> ratios (one column per pair)."""
    names = list(figures)
    pairs = [(ours, peer) for ours, peers in rel.items() for peer in peers]
    width = 16
    print("\n" + f"{'':<20}" + "".join(f"{n:>{width}}" for n in names)
          + "".join(f"{ours + ' vs ' + peer:>{width + 4}}" for ours, peer in pairs))
    for label, key, fmt, _ in ROWS + GPU_ROWS:
        cells = "".join(f"{(fmt.format(figures[n][key]) if figures[n].get(key) is not None else 'n/a'):>{width}}"
                        for n in names)
        cells += "".join(f"{(f'{rel[o][p][key]:.2f}x' if key in rel[o][p] else ''):>{width + 4}}" for o, p in pairs)
        print(f"{label:<20}{cells}")
    print("\nratios: above 1.00x means ours is better (faster, or less memory).")


# ----------------------------------------------------------------------------- main
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches and few steps (CPU, minutes)")
    parser.add_argument("--model-size", choices=["tiny", "smollm2", "tiny-qwen2", "0.5b"], default="tiny",
                        help="tiny: the offline quickstart model; smollm2: the real SmolLM2-135M-Instruct "
                        "(needs `pip install -e .[smollm2]`); 0.5b: Qwen2-0.5B-shaped, bf16, needs a GPU")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="model.dtype of every contender (default: bfloat16 on a GPU, float32 on a CPU)")
    parser.add_argument("--rollout-engine", choices=["hf", "vllm"], default=None,
                        help="our PPO's sampler (default hf); vllm needs the environment of scripts/setup_vllm_env.sh")
    parser.add_argument("--only", default=",".join(DEFAULT_CONTENDERS),
                        help=f"comma-separated subset of {','.join(CONTENDERS)} (default: {','.join(DEFAULT_CONTENDERS)})")
    for field in ("episodes", "minibatch", "epochs", "max_new_tokens", "num_generations", "steps", "warmup",
                  "threads", "lora_last_layers", "critic_trainable_layers"):
        parser.add_argument("--" + field.replace("_", "-"), type=int, default=None,
                            help=FIELD_HELP.get(field, f"override Work.{field}"))
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="override Work.learning_rate (a tiny one keeps the policy, and so the response "
                        "lengths, where they started: rates of two runs then compare like for like)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the contenders this many times, interleaved, and report medians (shared machines)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "bench_rl_throughput"),
                        help="world, model and run folders (reused between invocations)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of an unlisted GPU, for MFU")
    parser.add_argument("--peak-bandwidth-gbs", type=float, default=None, help="memory bandwidth of an unlisted GPU")
    parser.add_argument("--no-append", action="store_true", help="do not append to bench/results/")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # the child: one contender
        work = Work(**json.loads(args.work))
        result = worker(args.worker, work, Path(args.work_dir) / args.worker)
        Path(args.result).write_text(json.dumps(result))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible", file=sys.stderr)
        return 2
    if args.model_size == "0.5b" and device != "cuda":
        print("--model-size 0.5b needs a CUDA GPU (on CPU use the tiny model: --quick)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        print(f"--only: unknown contender(s) {unknown}; choose from {', '.join(CONTENDERS)}", file=sys.stderr)
        return 2
    profile = "gpu" if device == "cuda" else ("quick" if args.quick else "default")
    settings = dict(PROFILES[profile])
    if args.quick and device == "cuda":
        settings.update(steps=2)
    settings.update({k: v for k, v in vars(args).items() if k in Work.__dataclass_fields__ and v is not None})
    settings.update(model_size=args.model_size, device=device,
                    dtype=args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    work = Work(**settings)
    if work.warmup < 1 or work.steps < 1:
        print("--warmup and --steps must be at least 1 (a step is timed from the end of the one before)",
              file=sys.stderr)
        return 2
    if work.episodes % work.minibatch or work.episodes % work.num_generations:
        print(f"--episodes ({work.episodes}) must be a multiple of --minibatch and --num-generations", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir).resolve()
    work = prepare(work, work_dir)

    peak_flops = peak_bw = None
    if device == "cuda":
        gpu_name = torch.cuda.get_device_name(0)
        peak_flops, peak_bw = gpu_peaks(gpu_name)
        if peak_flops is None:
            print(f"{gpu_name}: bf16 peak unknown; pass --peak-tflops and --peak-bandwidth-gbs for MFU",
                  file=sys.stderr)
    peak_flops = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops
    peak_bw = args.peak_bandwidth_gbs * 1e9 if args.peak_bandwidth_gbs else peak_bw

    load = os.getloadavg()
    print(f"work: {json.dumps({k: v for k, v in dataclasses.asdict(work).items() if k not in ('prompts',)})}")
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(max(args.repeat, 1)):
        for name in names:
            log_path = work_dir / f"{name}.log"
            result_path = work_dir / f"{name}.result.json"
            result_path.unlink(missing_ok=True)
            print(f"running {CONTENDERS[name]} ... (log: {log_path})", flush=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--work",
                   json.dumps(dataclasses.asdict(work)), "--result", str(result_path), "--work-dir", str(work_dir)]
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1"}
            with open(log_path, "w") as log:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
            if proc.returncode != 0 or not result_path.is_file():
                print(f"{name} failed (exit {proc.returncode}); last lines of {log_path}:", file=sys.stderr)
                print("\n".join(log_path.read_text(errors="replace").splitlines()[-25:]), file=sys.stderr)
                return 1
            fig = summarize(name, json.loads(result_path.read_text()), work, peak_flops, peak_bw)
            runs[name].append(fig)
            print(f"  {fig['end_to_end_tokens_per_s']:.0f} tokens/s end to end, {fig['step_s']:.2f} s per step, "
                  f"{fig['cpu_s_per_step']:.2f} CPU-s per step (load {os.getloadavg()[0]:.1f})", flush=True)
    figures = {name: median_figures(r) for name, r in runs.items()}
    load_after = os.getloadavg()
    rel = {ours: ratios(figures, ours) for ours in OURS if ours in figures}
    print_table(figures, rel)
    print(f"load average after: {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
    if not args.no_append:
        from results import append_result

        path = append_result("rl_throughput", {
            "profile": profile,
            "work": {k: v for k, v in dataclasses.asdict(work).items() if k not in ("prompts", "model_dir")},
            "load_average": [round(x, 2) for x in load], "load_average_after": [round(x, 2) for x in load_after],
            "repeat": max(args.repeat, 1), "figures": figures, "ours_vs": rel.get("ppo", {}),
            "ppo_shared_vs": rel.get("ppo-shared", {}), "ppo_whole_vs": rel.get("ppo-whole", {}),
        })
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
