"""From prompts to scored episodes: the data PPO learns from.

    prompts -> chat template -> left-padded ids -> sample a response at temperature T
            -> truncate after the first EOS -> logprobs of the sampled tokens under the actor
               (recomputed with the same T) and the reference -> per-token values -> score

The values come from the separate critic's own forward (`value_forward`), or, with a value
head on the actor's trunk, from the actor's logprob forward itself (`policy_value_forward`).

Left padding keeps every prompt's last token in the same column, so that generation appends
to all rows at once with the KV cache; position ids are built from the attention mask so the
padding is invisible to the model. Logprobs are recomputed in a separate forward pass rather
than taken from generation, because that is the exact computation the PPO update repeats:
the ratio on the first minibatch is then 1. That ratio cannot tell whether the sampler drew
from the same distribution, so the sampler's own logprobs come back too, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence

import torch

from alignment.generation import chat_prompts, generate_ids
from alignment.ppo.frozen_trunk import TrunkInput, top_blocks_only
from alignment.ppo.losses import entropy_from_logits, logprobs_of
from alignment.ppo.masks import position_ids_from_mask

RewardFunction = Callable[[Sequence, Sequence[str]], torch.Tensor]
"""(prompts, response texts) -> scores [N] on CPU; the reward model, or a stand-in in tests."""


@dataclass
class Episodes:
    """One rollout batch. Per-token tensors are [batch, response_len], masked after the first EOS."""

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    has_eos: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    """Raw scores from the reward function, before normalisation clip and EOS penalty."""

    def select(self, index: torch.Tensor) -> "Episodes":
        """The episodes at `index` (a minibatch), every tensor sliced alike."""
        return Episodes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def trimmed(self, extent: Optional[tuple[int, int]] = None) -> "Episodes":
        """The same episodes without the columns that are padding in every row.

        The rollout pads prompts to the longest of the whole batch and responses to the
        longest response; a minibatch's own longest is often shorter. Dropping the columns
        that no row uses changes no logprob or value (pads are masked, and a causal model's
        outputs do not depend on later positions), and every forward and backward of the
        minibatch then runs over fewer positions. `extent` is (first prompt column, response
        width) when the caller knows it already (`padding_extent`), which saves reading the
        masks back from the device.
        """
        if extent is None:
            extent = padding_extent(padding_bounds(self.query_mask, self.response_mask))
        start, width = extent
        per_token = {"response_ids", "response_mask", "logprobs", "ref_logprobs", "values"}
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if f.name in ("query_ids", "query_mask"):
                t = t[:, start:]
            elif f.name in per_token:
                t = t[:, :width]
            out[f.name] = t
        return Episodes(**out)


def padding_bounds(query_mask: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per episode (on the CPU): [first real prompt column, response length]."""
    real = query_mask.bool()
    first = torch.where(real.any(dim=1), real.long().argmax(dim=1), torch.full_like(real[:, 0], real.shape[1],
                                                                                   dtype=torch.long))
    return torch.stack([first, response_mask.long().sum(dim=1)], dim=1).cpu()


def padding_extent(bounds: torch.Tensor) -> tuple[int, int]:
    """(first column any episode uses, longest response) over rows of `padding_bounds`."""
    if bounds.numel() == 0:
        return 0, 0
    return int(bounds[:, 0].min()), int(bounds[:, 1].max())


def encode_prompts(tokenizer, prompts: Sequence) -> list[list[int]]:
    """Token ids of each prompt rendered with the chat template, ready for the assistant's turn."""
    return tokenizer(chat_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def sample_responses(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    eos_token_id: int | list[int],
    pad_token_id: int,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(response ids [B, <= max_new_tokens], the sampler's own logprobs of them [same shape]).

    Sampled with the KV cache from softmax(logits / T) and nothing the checkpoint's
    generation_config adds (`alignment.generation.generate_ids`). top-k and top-p are off
    unless asked for: they make the sampling distribution differ from softmax(logits / T), and
    the PPO ratio would then be computed against the wrong policy. The sampler's logprobs are
    not used in the update (it recomputes them); they measure how far the recomputation is
    from what was sampled (`rollout/sampler_logprob_gap`).
    """
    out = generate_ids(model, query_ids, query_mask, max_new_tokens, temperature, eos_token_id, pad_token_id, top_k,
                       top_p, sampler_logprobs=True)
    return out.ids, out.logprobs


def policy_forward(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = True,
    trunk: Optional[TrunkInput] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logprobs [B, R] of the response tokens at temperature T (and per-token entropy).

    Only the logits of the last R positions are computed (`logits_to_keep`): the prompt's
    own next-token predictions are never needed, and the LM head is the widest matmul. The
    last response token is not fed at all: nothing predicted from it is needed, and in a
    causal model it changes no earlier position. `entropy_grad=False` computes the entropy
    outside autograd (for logging, when it is not part of the loss). With `trunk`, the forward
    starts from the shared frozen blocks' hidden states (`alignment.ppo.frozen_trunk`).
    """
    logprobs, _, entropy = _response_forward(model, query_ids, query_mask, response_ids, response_mask, temperature,
                                             with_entropy, entropy_grad, trunk)
    return logprobs, entropy


def policy_value_forward(model, *args, train_trunk: bool = True, **kwargs):
    """(logprobs [B, R], values [B, R], entropy) from ONE forward of a `PolicyWithValueHead`;
    the arguments are policy_forward's.

    The value at each response position is read from the same hidden state that predicts
    the token there: V(s_t), the state just before token t is chosen (as in value_forward).
    `train_trunk=False` gives gradients to the value head only.
    """
    return _response_forward(model, *args, train_trunk=train_trunk, **kwargs)


def fed_inputs(query_ids, query_mask, response_ids, response_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) a forward over the episodes reads: the prompt and every response token but the last."""
    return torch.cat([query_ids, response_ids[:, :-1]], dim=1), torch.cat([query_mask, response_mask[:, :-1]], dim=1)


def _response_forward(model, query_ids, query_mask, response_ids, response_mask, temperature, with_entropy=False,
                      entropy_grad=True, trunk: Optional[TrunkInput] = None, **model_kwargs):
    """(logprobs, values or None, entropy or None) over the response positions; see policy_forward."""
    R = response_ids.shape[1]
    if R == 0:
        empty = response_ids.new_zeros((response_ids.shape[0], 0), dtype=torch.float32)
        return empty, empty, (empty if with_entropy else None)
    ids, mask = fed_inputs(query_ids, query_mask, response_ids, response_mask)
    with top_blocks_only(model, trunk) as feed:
        out = model(
            **(feed or {"input_ids": ids}),
            attention_mask=mask,
            position_ids=position_ids_from_mask(mask),
            logits_to_keep=R,
            use_cache=False,
            **model_kwargs,
        )
    logits = out.logits.float()
    logprobs = logprobs_of(logits, response_ids, temperature)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = entropy_from_logits(logits / temperature)
    return logprobs, out.get("value"), entropy


def value_forward(critic, query_ids, query_mask, response_ids, response_mask,
                  trunk: Optional[TrunkInput] = None) -> torch.Tensor:
    """V [B, R]: the value of the state just before each response token is chosen.

    The last response token is not fed: no value is read after it (see policy_forward).
    """
    if response_ids.shape[1] == 0:
        return response_ids.new_zeros((response_ids.shape[0], 0), dtype=torch.float32)
    ids, mask = fed_inputs(query_ids, query_mask, response_ids, response_mask)
    P = query_ids.shape[1]
    with top_blocks_only(critic, trunk) as feed:
        return critic(**(feed or {"input_ids": ids}), attention_mask=mask)[:, P - 1 :]


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Response texts without EOS or padding (what the reward model and the gold checker read)."""
    lengths = response_mask.sum(dim=1).tolist()
    rows = [ids[:n] for ids, n in zip(response_ids.tolist(), lengths)]
    return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]


def eos_ids(tokenizer, model=None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen if isinstance(gen, list) else [gen])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def forward_in_update_shapes(fn, order: torch.Tensor, bounds: torch.Tensor, micro: int, query_ids: torch.Tensor,
                             query_mask: torch.Tensor, response_ids: torch.Tensor, response_mask: torch.Tensor):
    """fn(rows, first, query_ids, query_mask, response_ids, response_mask) over the micro-batches of `order`
    (their `rows`, their tensors trimmed of the all-padding columns exactly as the update trims them,
    `Episodes.select(...).trimmed(...)`, prompt columns from `first`), outputs scattered back to their rows [N, R].

    In bf16 a matmul's rounding depends on the shape of the batch it runs in: old logprobs
    computed over other batches than the update's differed from the update's own by about
    1e-3 per token (first ratios 0.995-1.006 on SmolLM2). Computed in the shapes of the first
    epoch's micro-batches, the first ratio is exactly 1 in any precision, and it stays a sharp
    check on masks, shifts and temperature. `fn` returns a tensor or a tuple of [n, width] tensors;
    columns past a micro-batch's own width are 0 (they are masked).
    """
    n, width_all = response_ids.shape
    outs: Optional[list[torch.Tensor]] = None
    for start in range(0, n, micro):
        rows = order[start : start + micro]
        first, width = padding_extent(bounds[rows.cpu()])
        parts = fn(rows, first, query_ids[rows, first:], query_mask[rows, first:], response_ids[rows, :width],
                   response_mask[rows, :width])
        parts = parts if isinstance(parts, tuple) else (parts,)
        if outs is None:
            outs = [p.new_zeros((n, width_all)) for p in parts]
        for out, part in zip(outs, parts):
            out[rows, :width] = part
    return tuple(outs) if len(outs) > 1 else outs[0]

