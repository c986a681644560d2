"""Batched generation from chat prompts: left padding, stop at EOS, seeded.

Shared by the SFT gold evaluation, candidate sampling for labelers, the regression
evaluation, PPO's rollout and the KL samplers, so that every stage decodes the same way.

Every generation goes through `generate_ids`, which samples from exactly

    pi(y_t | x, y_<t) = softmax(filter(logits / T))      filter: top-k, then top-p (off by default)

and nothing else. transformers fills every setting a call leaves unset from the checkpoint's
own `generation_config.json` (and, on 4.x, even overrides settings a call gives at their
global default): a checkpoint shipping `repetition_penalty: 1.1`, `temperature: 0.7` or
`no_repeat_ngram_size` would then shape the sampler without anyone asking, and the policy
sampled would not be the one whose logprobs PPO and the KL estimates recompute.
`checkpoint_defaults_off` removes that source of settings for the duration of the call, and
the temperature, top-k and top-p are applied by our own processors, so that the last one
(`SampledLogprobs`) sees the scores the token is drawn from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from alignment.data.rows import prompt_messages
from alignment.ppo.masks import position_ids_from_mask

SPECIAL_TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
"""The only settings a checkpoint's generation_config keeps during `generate_ids`: which ids are special."""


def chat_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[str]:
    """Prompts rendered with the chat template, ready for the assistant's turn."""
    return [
        tokenizer.apply_chat_template(prompt_messages(p), tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


@contextlib.contextmanager
def checkpoint_defaults_off(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, every generation_config the model holds carries only the special token ids.

    transformers merges the model's `generation_config` into the one a call passes
    (`_prepare_generation_config`), so a repetition penalty, n-gram ban, temperature,
    top-k/top-p, min length or suppressed tokens that the checkpoint ships would add logits
    processors of their own. Every module is visited because wrappers keep their own copy
    (peft's PeftModel copies its config onto the base model inside `generate`).
    """
    swapped: list[tuple[torch.nn.Module, GenerationConfig]] = []
    for module in model.modules():
        own = vars(module).get("generation_config")
        if isinstance(own, GenerationConfig):
            clean = GenerationConfig(**{k: getattr(own, k, None) for k in SPECIAL_TOKEN_KEYS})
            swapped.append((module, own))
            module.generation_config = clean
    try:
        yield
    finally:
        for module, own in swapped:
            module.generation_config = own


class SampledLogprobs(LogitsProcessor):
    """The sampler's own log pi(y_t) of each drawn token, kept without holding every step's scores.

    Placed last in the processor list, it sees at each step the very scores the next token is
    drawn from (softmax of them). It keeps that step's log-softmax until the next call, whose
    `input_ids` end with the token drawn from it, gathers that one value and drops the rest:
    memory is one [B, V] row set plus [B] per step. `finish` reads the last step's token from the
    final sequences. Steps are keyed by position because generate may run past the stop and undo
    its last steps.
    """

    def __init__(self) -> None:
        self.pending: Optional[tuple[int, torch.Tensor]] = None  # (position of the token to draw, log-softmax)
        self.picked: dict[int, torch.Tensor] = {}  # position -> log pi of the token drawn there [B]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._gather(input_ids)
        self.pending = (input_ids.shape[1], scores.float().log_softmax(dim=-1))
        return scores

    def _gather(self, sequences: torch.Tensor) -> None:
        if self.pending is not None and self.pending[0] < sequences.shape[1]:
            position, logp = self.pending
            self.picked[position] = logp.gather(-1, sequences[:, position : position + 1]).squeeze(-1)
            self.pending = None

    def finish(self, sequences: torch.Tensor, prompt_width: int) -> torch.Tensor:
        """log pi [B, new tokens] of sequences[:, prompt_width:] under the distribution each was drawn from."""
        self._gather(sequences)
        positions = range(prompt_width, sequences.shape[1])
        if not positions:
            return sequences.new_zeros((sequences.shape[0], 0), dtype=torch.float32)
        return torch.stack([self.picked[t] for t in positions], dim=1)


@dataclass
class Generated:
    """What `generate_ids` returns: the new tokens, and (when asked) their log-probability under the sampler."""

    ids: torch.Tensor
    """[B * num_return_sequences, <= max_new_tokens]; rows that stopped early are padded with pad_token_id."""
    logprobs: Optional[torch.Tensor] = None
    """[same shape] log pi(y_t) as sampled, at temperature T and after top-k/top-p; None unless asked for."""


@torch.no_grad()
def generate_ids(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    eos_token_id: int | list[int] | None,
    pad_token_id: int,
    top_k: int = 0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    sampler_logprobs: bool = False,
) -> Generated:
    """New tokens after left-padded `input_ids`, drawn from softmax(filter(logits / T)) and nothing else.

    Temperature 0 means greedy (argmax of the raw logits). The checkpoint's generation_config
    is kept out (`checkpoint_defaults_off`), every processor transformers could add is given
    its neutral value, and temperature, top-k and top-p are our processors, in transformers'
    own order, followed by `SampledLogprobs` when `sampler_logprobs` is set.
    """
    sampling = temperature > 0
    neutral = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, renormalize_logits=False, remove_invalid_values=False)
    if sampling:  # the warpers transformers would add are all off: ours below do their work
        neutral.update(temperature=1.0, top_k=0, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)
    prefilled = {}
    if num_return_sequences > 1 and input_ids.shape[1] > 1:  # each prompt read once, not once per sample
        prefilled["cache"] = shared_prompt_cache(model, input_ids, attention_mask, num_return_sequences)
        input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sampling,
                              num_return_sequences=1 if prefilled else num_return_sequences,
                              eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=True, **neutral)
    processors = LogitsProcessorList()
    if sampling and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if sampling and top_k:
        processors.append(TopKLogitsWarper(top_k=top_k))
    if sampling and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p))
    recorder = SampledLogprobs() if sampler_logprobs else None
    if recorder is not None:
        processors.append(recorder)
    with checkpoint_defaults_off(model):
        sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                   logits_processor=processors, **prefilled)
    width = input_ids.shape[1]
    return Generated(sequences[:, width:], None if recorder is None else recorder.finish(sequences, width))


@torch.no_grad()
def shared_prompt_cache(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, copies: int) -> DynamicCache:
    """Each prompt read once, its key/value cache repeated for the `copies` responses drawn from it.

    transformers' `num_return_sequences` repeats every prompt before the first forward, so K
    samples per prompt prefill each prompt K times. The prompt is most of the tokens a labeling
    round reads (SmolLM2's chat prompts: ~53 tokens, responses <= 24), and on 64 prompts x 8
    samples that prefill was half of `generate`'s time (bench/README.md). The cache holds all
    but each prompt's last token, which `generate` then feeds itself, so the first sampled
    token comes from its own logits as before; the rows are in `num_return_sequences`' order.
    """
    cache = DynamicCache(config=model.config)
    head, mask = input_ids[:, :-1], attention_mask[:, :-1]
    model(input_ids=head, attention_mask=mask, position_ids=position_ids_from_mask(mask), cache=cache,
          use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(copies)
    return cache


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    num_return_sequences: int = 1,
    top_k: int = 0,
    top_p: float = 1.0,
    progress: bool = False,
) -> list[str] | list[list[str]]:
    """Responses for `prompts`; a list per prompt when `num_return_sequences > 1`.

    Temperature 0 means greedy; either way only `generate_ids`' distribution applies. Sampling is seeded through a forked RNG, so the caller's
    global random state is left as it was.
    """
    texts = chat_prompts(tokenizer, prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            batches = range(0, len(texts), batch_size)
            for start in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
                enc = tokenizer(
                    texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(device)
                new = generate_ids(model, enc["input_ids"], enc["attention_mask"], max_new_tokens, temperature,
                                   tokenizer.eos_token_id, tokenizer.pad_token_id, top_k, top_p,
                                   num_return_sequences).ids
                out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    out = [t.strip() for t in out]
    if num_return_sequences == 1:
        return out
    n = num_return_sequences
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]
