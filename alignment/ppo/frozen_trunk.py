"""The frozen lower blocks PPO's models share: run once per rollout, read by every forward after it.

With LoRA on the last N of L decoder blocks (`lora.last_layers`), the actor's embeddings and
its lower L - N blocks never change, and the reference (the actor with its adapter switched
off) is made of the very same ones. The hidden state entering block L - N is then one tensor
for the actor's old logprobs, the reference's logprobs, the values of a shared value head, and
every epoch of the update. PPO computes it once per rollout batch (`TrunkCache`) and runs
only the top N blocks from it (`top_blocks_only`): the same operations on the same weights
as the whole forward, for N / L of the block compute. On SmolLM2-135M (L = 30) with
`last_layers: 8`, the rollout's three forwards run 30 + 3 x 8 blocks instead of 3 x 30,
and the update's forward 8 instead of 30 (its backward already stopped at block 22).

A separate critic whose embeddings and lower blocks are frozen (`ppo.critic_trainable_layers`)
and hold the reference's weights exactly (a critic initialised from the policy, or read off a
reward model trained with LoRA on the same last blocks of the same base as the SFT policy)
starts from a hidden state PPO has anyway: the shared trunk's, when it trains more blocks than
the actor adapts; else the one entering its first trainable block, taken from the reference's
forward (`capture_block_input`), which runs those blocks with the same base weights. With
`critic_trainable_layers: 2` on SmolLM2 its forwards then run 2 blocks.

The decoder is found by its layout (`embed_tokens`, a `layers` list, a final `norm`: Llama,
Mistral, Qwen and their kin); a model laid out otherwise (GPT-2's `h`) runs whole, as before.
`split_matches_whole` checks on real inputs that the split forward equals the whole one
before PPO relies on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn

from alignment.ppo.masks import position_ids_from_mask


def decoder_of(model: nn.Module) -> Optional[nn.Module]:
    """The decoder stack inside a causal LM, a peft model, a value-head wrapper or a sequence classifier."""
    for module in model.modules():
        if (isinstance(getattr(module, "layers", None), nn.ModuleList) and isinstance(getattr(module, "norm", None), nn.Module)
                and isinstance(getattr(module, "embed_tokens", None), nn.Module)):
            return module
    return None


def frozen_block_count(model: nn.Module) -> int:
    """How many of the lowest decoder blocks, with the embeddings, have no trainable parameter (0 if none
    or the layout is unknown)."""
    decoder = decoder_of(model)
    if decoder is None or _trainable(decoder.embed_tokens):
        return 0
    count = 0
    for layer in decoder.layers:
        if _trainable(layer):
            break
        count += 1
    return count


def same_lower_blocks(actor: nn.Module, critic: nn.Module, blocks: int) -> bool:
    """Whether the critic's embeddings and lowest `blocks` blocks are frozen and hold the weights the actor's
    reference computes with: the actor's own, its LoRA adapters left out (they are off in the reference)."""
    da, dc = decoder_of(actor), decoder_of(critic)
    if da is None or dc is None or frozen_block_count(critic) < blocks or len(da.layers) < blocks:
        return False
    pairs = [(da.embed_tokens, dc.embed_tokens)] + list(zip(da.layers[:blocks], dc.layers[:blocks]))
    for ma, mc in pairs:
        if any(p.requires_grad for p in _base_parameters(ma).values()):
            return False
        sa, sc = _base_state(ma), mc.state_dict()
        if sa.keys() != sc.keys() or not all(sa[k].shape == sc[k].shape and torch.equal(sa[k], sc[k]) for k in sa):
            return False
    return True


def _base_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` without peft's adapters, under the names the plain model gives its weights."""
    return {k.replace(".base_layer.", "."): v for k, v in module.state_dict().items() if "lora_" not in k}


def _base_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    return {k: p for k, p in module.named_parameters() if "lora_" not in k}


@contextlib.contextmanager
def running_blocks(model: nn.Module, start: int, stop: Optional[int] = None) -> Iterator[nn.Module]:
    """Within: `model`'s decoder runs blocks [start, stop) only; stopping early, it also skips its final
    norm, so that its last hidden state is the input of block `stop`. Yields the decoder.

    The model's own forward does the rest (masks, rotary positions, heads), so the split
    forward is the whole one's operations, in its order.
    """
    decoder = decoder_of(model)
    layers, norm = decoder.layers, decoder.norm
    stop = len(layers) if stop is None else stop
    decoder.layers = nn.ModuleList(list(layers)[start:stop])
    if stop < len(layers):
        decoder.norm = nn.Identity()
    try:
        yield decoder
    finally:
        decoder.layers, decoder.norm = layers, norm


@contextlib.contextmanager
def capture_block_input(model: nn.Module, block: Optional[int]) -> Iterator[list[torch.Tensor]]:
    """Within: every forward of `model` appends the hidden state entering decoder block `block` to the
    yielded list (nothing when `block` is None). The block is hooked as a module, so a split forward
    (`running_blocks`) that runs it is seen too."""
    seen: list[torch.Tensor] = []
    if block is None:
        yield seen
        return
    handle = decoder_of(model).layers[block].register_forward_pre_hook(
        lambda _module, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()),
        with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def lower_hidden(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, blocks: int) -> torch.Tensor:
    """The hidden state entering block `blocks`, for every position of `ids` [B, T, H]."""
    with torch.no_grad(), running_blocks(model, 0, blocks) as decoder:
        return decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                       use_cache=False).last_hidden_state


@dataclass
class TrunkInput:
    """A batch's hidden states entering block `start` [B, T, H]: what a split forward starts from."""

    hidden: torch.Tensor
    start: int


@contextlib.contextmanager
def top_blocks_only(model: nn.Module, trunk: Optional[TrunkInput]) -> Iterator[dict]:
    """The keyword arguments that feed `model` its input: `input_ids` as usual, or, with `trunk`,
    its hidden states as `inputs_embeds` while the decoder runs blocks from `trunk.start` up."""
    if trunk is None:
        yield {}
        return
    with running_blocks(model, trunk.start):
        yield {"inputs_embeds": trunk.hidden}


class TrunkCache:
    """The shared hidden states of one rollout batch, for every episode's input positions.

    A forward feeds `query + response[:-1]` (the last response token predicts nothing), so
    episode rows hold P + R - 1 positions [N, P + R - 1, H]. A micro-batch trimmed of its
    all-padding columns (`Episodes.trimmed`: prompt columns from `first`, `width` response
    tokens) reads columns [first, P + width - 1) of its rows, in any epoch's order. A column that
    the filling micro-batch was too narrow to feed stays zero: it is a row's last response token,
    whose output predicts past the response, so no logprob or value reads it (and, the model being
    causal, no earlier position sees it).
    """

    def __init__(self, blocks: int, n_rows: int, query_width: int, response_width: int):
        self.blocks, self.query_width = blocks, query_width
        self.shape = (n_rows, query_width + response_width - 1)
        self.hidden: Optional[torch.Tensor] = None

    def keep(self, rows: torch.Tensor, first: int, hidden: torch.Tensor) -> TrunkInput:
        """Keep a micro-batch's hidden states entering block `blocks` (fed from prompt column `first`):
        `lower_hidden`'s, or the reference's entering a critic's first trainable block."""
        if self.hidden is None:
            self.hidden = hidden.new_zeros((*self.shape, hidden.shape[2]))
        self.hidden[rows, first : first + hidden.shape[1]] = hidden
        return TrunkInput(hidden, self.blocks)

    def read(self, rows: torch.Tensor, first: int, width: int) -> TrunkInput:
        return TrunkInput(self.hidden[rows, first : self.query_width + width - 1], self.blocks)


def split_matches_whole(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, blocks: int,
                        atol: float = 1e-4) -> bool:
    """Whether the last hidden state of the split forward (blocks below `blocks`, then the rest from there)
    matches the whole forward's on these inputs: the layout check before PPO relies on the split."""
    decoder = decoder_of(model)
    with torch.no_grad():
        whole = decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                        use_cache=False).last_hidden_state
        low = lower_hidden(model, ids, mask, blocks)
        with running_blocks(model, blocks):
            split = decoder(inputs_embeds=low, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                            use_cache=False).last_hidden_state
    real = mask.bool()
    return bool(torch.allclose(whole[real].float(), split[real].float(), atol=atol, rtol=1e-4))


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
