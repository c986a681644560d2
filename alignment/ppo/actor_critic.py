"""The models PPO holds: actor, reference, and a critic that reads a value at every token.

- Actor: the SFT policy, trained fully or through a LoRA adapter.
- Reference: the frozen SFT policy. With LoRA it is the actor with its adapter switched off
  (`reference_mode`), so no second copy of the weights is held in memory.
- Critic (`ppo.critic=separate`): a separate model, by default the reward model's backbone
  and score head (its score head already knows how good a finished response is, which is
  what the value must learn at the last token), rescaled to the normalised score PPO's
  returns are built from. `ValueModel` applies that head at every position instead of only
  the last, giving one value per token.
- Critic (`ppo.critic=shared`): a scalar value head on the actor's own final hidden states
  (`PolicyWithValueHead`, as TRL 0.x's AutoModelForCausalLMWithValueHead): no second
  network, one forward for logprobs and values, and the value loss trains the trunk too.

Dropout is off in all of them (see alignment.models.load_policy for why), the LoRA adapter's
own `lora.dropout` included.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from transformers.utils import ModelOutput

from alignment.errors import UserError
from alignment.models import disable_dropout, load_policy, lora_config
from alignment.ppo.frozen_trunk import decoder_of
from alignment.ppo.masks import position_ids_from_mask
from alignment.recipe.model import ModelConfig
from alignment.recipe.ppo import PPOConfig
from reward.scoring import RewardStats

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_BIAS_FILE = "value_bias.safetensors"


class ValueModel(torch.nn.Module):
    """V(s_t) for every position t: a sequence-classification model's head applied per token, plus `bias`.

    Wrapping it as one module (rather than calling backbone and head from the trainer) keeps
    DDP/FSDP working: they hook the wrapped module's forward. `bias` is the value's own offset
    (zero unless `normalise_scores` moves it): most score heads (Llama's, Qwen's) have none, and
    a critic read off a reward model needs one to start on the normalised scale. It is saved
    beside the checkpoint, in VALUE_BIAS_FILE.
    """

    def __init__(self, seq_cls_model: Any):
        super().__init__()
        self.model = seq_cls_model  # the only registered submodule, so the state dict has no duplicate keys
        if getattr(seq_cls_model, "score", None) is None:
            raise UserError(
                f"{type(seq_cls_model).__name__} has no `score` head; the critic must be a decoder-only "
                "AutoModelForSequenceClassification (Llama, Qwen, GPT-2, ...)"
            )
        weight = seq_cls_model.score.weight  # in the head's dtype and device, as FSDP wants uniform dtypes
        self.bias = torch.nn.Parameter(torch.zeros(1, dtype=weight.dtype, device=weight.device))

    @property
    def backbone(self) -> torch.nn.Module:
        return getattr(self.model, self.model.base_model_prefix)

    @property
    def head(self) -> torch.nn.Module:
        return self.model.score

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                inputs_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One value per position; `inputs_embeds` instead of `input_ids` when the frozen trunk is shared."""
        hidden = self.backbone(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state
        return (self.head(hidden) + self.bias).squeeze(-1).float()

    @torch.no_grad()
    def normalise_scores(self, stats: RewardStats) -> None:
        """Make V read (r - mean) / std where it read the reward model's raw r: the scale PPO's returns are on.

        The normalisation is folded into the head: w' = w / std, and the offset
        b' = (b - mean) / std goes into the head's own bias when it has one, else into `bias`.
        """
        head = self.head
        head.weight.div_(stats.std)
        if head.bias is not None:
            head.bias.sub_(stats.mean).div_(stats.std)
        else:
            self.bias.sub_(stats.mean).div_(stats.std)

    def save_pretrained(self, path, **kwargs) -> None:
        from safetensors.torch import save_file

        self.model.save_pretrained(path, **kwargs)
        save_file({"bias": self.bias.detach().contiguous().cpu()}, str(Path(path) / VALUE_BIAS_FILE))


@dataclass
class PolicyValueOutput(ModelOutput):
    """A causal LM's output (`.loss`, `.logits`, so the reference and PPO-ptx read it as they read the LM's)
    plus `.value` [B, kept positions]."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    value: Optional[torch.Tensor] = None


class PolicyWithValueHead(torch.nn.Module):
    """The actor and V(s_t) from one forward: a linear value head on the final hidden states.

    `forward` returns the policy's logits and one value per kept position, for the same
    `logits_to_keep` positions. Wrapping both as one module keeps DDP working (it hooks the
    wrapped module's forward) and puts the head in accelerate's checkpoints beside the actor.

    The head starts at zero (weight and bias): every value is 0 at first, a neutral baseline,
    and the value loss's gradient into the trunk (through the head's weight) is then exactly
    zero, so the first updates train the head alone instead of pushing random directions into
    the actor. A randomly initialised head would read values of arbitrary scale off the hidden
    states, which the first iterations would spend the trunk's capacity undoing.
    """

    def __init__(self, policy: Any):
        super().__init__()
        self.policy = policy  # a transformers causal LM, or a peft model around one
        weight = policy.get_output_embeddings().weight  # the head lives in the trunk's dtype and device
        self.value_head = torch.nn.Linear(policy.config.hidden_size, 1, dtype=weight.dtype, device=weight.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                logits_to_keep: int = 0, train_trunk: bool = True, **kwargs) -> "PolicyValueOutput":
        """`train_trunk=False` (critic warm-up) runs the policy without autograd: only the head gets a gradient."""
        # The value reads what the LM head reads: the final hidden states (after the last norm), at
        # the kept positions. A hook on the head's input takes that one tensor; asking the model for
        # output_hidden_states would hold every layer's states through a no-grad rollout forward.
        captured: list[torch.Tensor] = []
        hook = self.policy.get_output_embeddings().register_forward_pre_hook(lambda _, args: captured.append(args[0]))
        try:
            with torch.set_grad_enabled(train_trunk and torch.is_grad_enabled()):
                out = self.policy(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep,
                                  **kwargs)
        finally:
            hook.remove()
        return PolicyValueOutput(loss=out.loss, logits=out.logits, value=self.value_head(captured[-1]).squeeze(-1).float())

    def __getattr__(self, name: str):
        """Everything else is the policy's (generate, generation_config, disable_adapter, the gradient
        checkpointing switches), as peft's PeftModel forwards to its base model."""
        try:
            return super().__getattr__(name)  # parameters and submodules, policy and value_head among them
        except AttributeError:
            if name == "policy":
                raise
            return getattr(self.policy, name)

    def trunk_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    def save_value_head(self, folder) -> None:
        from safetensors.torch import save_file

        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.value_head.state_dict().items()},
                  str(Path(folder) / VALUE_HEAD_FILE))


def load_actor(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device, dtype: torch.dtype):
    """The policy (+LoRA) in `dtype`; with `ppo.critic=shared`, inside a `PolicyWithValueHead`."""
    model = load_policy(path, model_cfg, device=device, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg.lora, model))
        disable_dropout(model)  # peft's own lora_dropout modules came after load_policy turned dropout off
    return PolicyWithValueHead(model) if cfg.critic == "shared" else model


def load_reference(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device, dtype: torch.dtype):
    """A frozen copy of the policy in the actor's `dtype` (equal logprobs at the start), or None with LoRA
    (the actor serves, adapter off)."""
    if cfg.lora.enabled:
        return None
    model = load_policy(path, model_cfg, device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model


def load_critic(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device, dtype: torch.dtype,
                reward_stats: Optional[RewardStats] = None) -> ValueModel:
    """The separate critic from `path`; with the reward model's `reward_stats`, on the normalised score's scale.

    PPO's returns come from normalised scores, so a critic read off the reward model would
    otherwise start with values off by the normalisation at every token, and its first
    updates would go to undoing that instead of learning the value.
    """
    from transformers import AutoModelForSequenceClassification

    model = load_policy(path, model_cfg, device=device, model_class=AutoModelForSequenceClassification, num_labels=1,
                        dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.critic_trainable_layers is not None:
        freeze_lower_blocks(model, cfg.critic_trainable_layers)
    critic = ValueModel(model)
    if reward_stats is not None:
        critic.normalise_scores(reward_stats)
    return critic


def freeze_lower_blocks(model, trainable: int) -> None:
    """Freeze the embeddings and every decoder block but the last `trainable` (heads stay trainable)."""
    decoder = decoder_of(model)
    if decoder is None:
        raise UserError(f"ppo.critic_trainable_layers: {type(model).__name__} has no decoder laid out as "
                        "embed_tokens / layers / norm (Llama, Mistral, Qwen, ...); leave it unset")
    depth = len(decoder.layers)
    if trainable > depth:
        raise UserError(f"ppo.critic_trainable_layers={trainable}, but the critic has only {depth} blocks")
    decoder.embed_tokens.requires_grad_(False)
    for layer in decoder.layers[: depth - trainable]:
        layer.requires_grad_(False)


def check_critic_tokenizer(critic_path: str, policy_tokenizer) -> None:
    """A critic initialised from the reward model reads the policy's token ids: vocabularies must match."""
    from transformers import AutoTokenizer

    critic_tok = AutoTokenizer.from_pretrained(critic_path)
    if critic_tok.get_vocab() != policy_tokenizer.get_vocab():
        raise UserError(
            f"ppo.critic_init=reward, but the reward model at {critic_path} uses another tokenizer than the "
            "policy; set ppo.critic_init=policy (the reward model still scores, re-tokenizing the text)"
        )


@contextlib.contextmanager
def reference_mode(actor, reference):
    """Yield the model that computes reference logprobs: the frozen copy, or the actor with its adapter off
    (with a shared value head too: its values are not read)."""
    if reference is not None:
        yield reference
        return
    unwrapped = actor.module if hasattr(actor, "module") else actor
    with unwrapped.disable_adapter():
        yield actor
