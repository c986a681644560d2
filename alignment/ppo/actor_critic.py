"""The models PPO holds: actor, reference, and a critic that reads a value at every token.

- Actor: the SFT policy, trained fully or through a LoRA adapter.
- Reference: the frozen SFT policy. With LoRA it is the actor with its adapter switched off
  (`reference_mode`), so no second copy of the weights is held in memory.
- Critic: a separate model, by default the reward model's backbone and score head (its
  score head already knows how good a finished response is, which is what the value must
  learn at the last token). `ValueModel` applies that head at every position instead of
  only the last, giving one value per token.

Dropout is off in all of them (see alignment.models.load_policy for why).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from alignment.errors import UserError
from alignment.models import load_policy, lora_config
from alignment.ppo.masks import position_ids_from_mask
from alignment.recipe.model import ModelConfig
from alignment.recipe.ppo import PPOConfig


class ValueModel(torch.nn.Module):
    """V(s_t) for every position t: a sequence-classification model's head applied per token.

    Wrapping it as one module (rather than calling backbone and head from the trainer) keeps
    DDP/FSDP working: they hook the wrapped module's forward.
    """

    def __init__(self, seq_cls_model: Any):
        super().__init__()
        self.model = seq_cls_model  # the only registered submodule, so the state dict has no duplicate keys
        if getattr(seq_cls_model, "score", None) is None:
            raise UserError(
                f"{type(seq_cls_model).__name__} has no `score` head; the critic must be a decoder-only "
                "AutoModelForSequenceClassification (Llama, Qwen, GPT-2, ...)"
            )

    @property
    def backbone(self) -> torch.nn.Module:
        return getattr(self.model, self.model.base_model_prefix)

    @property
    def head(self) -> torch.nn.Module:
        return self.model.score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state
        return self.head(hidden).squeeze(-1).float()

    def save_pretrained(self, path, **kwargs) -> None:
        self.model.save_pretrained(path, **kwargs)


def load_actor(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device):
    model = load_policy(path, model_cfg, device=device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg.lora))
    return model


def load_reference(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device):
    """A frozen copy of the policy, or None with LoRA (the actor serves, adapter off)."""
    if cfg.lora.enabled:
        return None
    model = load_policy(path, model_cfg, device=device).eval()
    model.requires_grad_(False)
    return model


def load_critic(path: str, model_cfg: ModelConfig, cfg: PPOConfig, device: torch.device) -> ValueModel:
    from transformers import AutoModelForSequenceClassification

    model = load_policy(path, model_cfg, device=device, model_class=AutoModelForSequenceClassification, num_labels=1)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return ValueModel(model)


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
    """Yield the model that computes reference logprobs: the frozen copy, or the actor with its adapter off."""
    if reference is not None:
        yield reference
        return
    unwrapped = actor.module if hasattr(actor, "module") else actor
    with unwrapped.disable_adapter():
        yield actor
