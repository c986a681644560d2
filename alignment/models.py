"""Loading policies and tokenizers, local or from the hub, with errors a user can act on;
and the library arguments our recipe settings become (LoRA, learning-rate warm-up)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from alignment.errors import UserError
from alignment.recipe.model import ModelConfig
from alignment.threads import settle_threads


def pick_device(prefer: Optional[str] = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16), read from /proc/cpuinfo.

    Without either, torch emulates bf16 matmuls, and on an AVX2-only core they ran 4x (generation)
    to 11x (autocast training) slower than fp32; with AVX512-BF16 they ran 2.3-2.7x faster
    (docs/policy_optimization.md). Elsewhere than Linux, no: there is nothing to read.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


BF16_WHERE_NATIVE = "bfloat16-if-native"
"""The `model.dtype` that asks for bf16 wherever the hardware computes it natively (a GPU
that supports it, a CPU with AVX512-BF16 or AMX) and fp32 elsewhere. A recipe meant for
many machines names it instead of `bfloat16`: on an AVX2-only CPU bf16 is emulated, and
the SmolLM2 recipe's SFT ran 39 s per step there in bf16 against 5.4 s in fp32."""


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights dtype `model.dtype` names.

    - 'auto': bf16 on a GPU that has it, else fp32. It stays fp32 on a CPU even with native
      bf16: bf16 moves the sampler 0.04 nats/token away from the recomputed logprobs (fp32:
      1e-5), and the quickstart stays bit-for-bit the same on every machine kind.
    - 'bfloat16-if-native': bf16 where it is native (see `BF16_WHERE_NATIVE`), else fp32.
    - a torch dtype's name: that dtype, with a warning when it is bf16 on a CPU that emulates it.
    """
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name == BF16_WHERE_NATIVE:
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    dtype = getattr(torch, name)
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        warnings.warn("model.dtype=bfloat16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated here, 4-11x "
                      f"slower than float32 (set model.dtype=float32, or {BF16_WHERE_NATIVE})", stacklevel=2)
    return dtype


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a stage that trains holds its weights and runs its matmuls."""

    weights: torch.dtype
    """The dtype the trained model is loaded in (and AdamW updates)."""
    bf16_autocast: bool
    """Forward passes under bf16 autocast: Trainer's `bf16=True`, accelerate's mixed_precision='bf16'."""


def training_precision(name: str, device: torch.device) -> Precision:
    """Weights and autocast for a training stage whose recipe asks for `model.dtype=name`.

    On a CPU, bf16 means fp32 master weights under bf16 autocast: the matmuls run in bf16
    (as fast as bf16 weights, measured: 2.2-2.8 s against 2.4-2.8 s per 8 x 128-token LoRA
    step), while AdamW's small updates land on fp32 weights instead of being rounded away.
    On a GPU the weights are loaded in the dtype asked for, as TRL does, and bf16 also turns
    on autocast for the fp32 parts (heads, adapters).
    """
    dtype = pick_dtype(name, device)
    if device.type == "cpu" and dtype == torch.bfloat16:
        return Precision(torch.float32, True)
    return Precision(dtype, dtype == torch.bfloat16)


def _check_exists(path: str, what: str) -> None:
    local = path.startswith((".", "/", "~")) or os.path.exists(path)
    if local and not Path(path).expanduser().exists():
        raise UserError(f"{what} not found: {path}")


def load_tokenizer(path: str, cfg: ModelConfig | None = None, padding_side: str = "right"):
    """A tokenizer with a chat template and a pad token, or one clear error saying which is missing."""
    from transformers import AutoTokenizer

    cfg = cfg or ModelConfig()
    path = cfg.tokenizer_name_or_path or path
    _check_exists(path, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load tokenizer {path}: {str(err).splitlines()[0]}") from None
    if cfg.chat_template:
        template = cfg.chat_template
        if template.endswith(".jinja") and Path(template).is_file():
            template = Path(template).read_text(encoding="utf-8")
        tok.chat_template = template
    if not tok.chat_template:
        raise UserError(f"tokenizer {path} has no chat template; set model.chat_template in the recipe")
    if tok.pad_token is None:
        if not cfg.pad_token:
            raise UserError(
                f"tokenizer {path} has no pad token; set model.pad_token in the recipe "
                f"(for example to its EOS token {tok.eos_token!r})"
            )
        tok.pad_token = cfg.pad_token
    if tok.eos_token is None:
        raise UserError(f"tokenizer {path} has no EOS token, so responses could never end")
    tok.padding_side = padding_side
    return tok


def load_policy(
    path: str,
    cfg: ModelConfig | None = None,
    device: torch.device | str | None = None,
    dropout: bool = False,
    model_class: Any = None,
    dtype: Optional[torch.dtype] = None,
    **kwargs: Any,
):
    """A causal LM (or `model_class`) on `device`, dropout off unless asked for; in `dtype`, else `cfg.dtype`'s.

    RL needs dropout off: with it on, the logprobs of the same tokens differ between the
    rollout and the update, and the PPO ratio is not 1 on the first minibatch.
    """
    from transformers import AutoModelForCausalLM

    cfg = cfg or ModelConfig()
    _check_exists(path, "model")
    device = pick_device(str(device) if device else None)
    model_class = model_class or AutoModelForCausalLM
    extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    try:
        model = model_class.from_pretrained(
            path,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            dtype=dtype or pick_dtype(cfg.dtype, device),
            **extra,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load model {path}: {str(err).splitlines()[0]}") from None
    if not dropout:
        disable_dropout(model)
    if device.type == "cpu":
        settle_threads(model)
    return model.to(device)


def disable_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


def lora_config(lora, model, task_type: str = "CAUSAL_LM"):
    """peft LoraConfig from our recipe section, for `model` (whose depth `lora.last_layers` counts from)."""
    from peft import LoraConfig as PeftLoraConfig

    layers, targets = None, lora.target_modules or "all-linear"
    if lora.last_layers:
        depth = model.config.num_hidden_layers
        if lora.last_layers > depth:
            raise UserError(f"lora.last_layers={lora.last_layers}, but the model has only {depth} blocks")
        layers = list(range(depth - lora.last_layers, depth))
        # peft takes a block range only with named modules: every linear inside the blocks
        targets = lora.target_modules or block_linear_names(model)
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type=task_type,
    )


def warmup_arguments(ratio: float, arguments_class: Any = None) -> dict[str, float]:
    """The TrainingArguments keyword that warms up over `ratio` of all steps, on the installed transformers.

    transformers 4.x takes the share as `warmup_ratio` and rejects a non-integer `warmup_steps`;
    5.x dropped `warmup_ratio` and reads a `warmup_steps` below 1 as the share. The trainer
    itself turns the share into steps (`get_warmup_steps`), so packing or several processes
    change nothing here. `arguments_class` is TrainingArguments (TRL's configs subclass it).
    """
    if arguments_class is None:
        from transformers import TrainingArguments as arguments_class
    names = {f.name: f for f in dataclasses.fields(arguments_class)}
    takes_share = names["warmup_steps"].type in (float, "float")
    if takes_share or "warmup_ratio" not in names:
        return {"warmup_steps": ratio}
    return {"warmup_ratio": ratio}


def block_linear_names(model) -> list[str]:
    """Names (last component) of the linear layers inside the transformer blocks, as peft's
    'all-linear' picks them: every nn.Linear but the output head and a classification head."""
    heads = {id(model.get_output_embeddings()), id(getattr(model, "score", None))}
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and id(module) not in heads})


def save_model(model, tokenizer, path: str | os.PathLike) -> None:
    """A plain save_pretrained folder (model + tokenizer) that transformers/peft load as is."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
