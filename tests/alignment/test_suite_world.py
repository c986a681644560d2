"""The built world: files on disk, idempotence, determinism, tokenizer, base model, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.errors import UserError
from alignment.recipe import Recipe
from alignment.suite.generate import SPLITS
from alignment.suite.world import MARKER, build_world

SMALL = {"n_sft": 400, "n_prompts": 100, "n_eval": 20}


def small_recipe(output_dir: Path, seed: int = 0) -> Recipe:
    recipe = Recipe()
    recipe.seed = seed
    recipe.output_dir = str(output_dir)
    for key, value in SMALL.items():
        setattr(recipe.suite, key, value)
    return recipe


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(small_recipe(tmp_path_factory.mktemp("world") / "run"))


def test_writes_splits_model_and_markers(world):
    for split in SPLITS:
        rows = [json.loads(line) for line in (world.suite_dir / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == {"sft": 400, "prompts": 100}.get(split, 20)
    assert (world.suite_dir / MARKER).is_file() and (world.model_dir / MARKER).is_file()
    assert (world.model_dir / "config.json").is_file()
    assert world.summary["rows"]["sft"] == 400 and 0.5 < world.summary["demo_mean_gold"] < 1.0
    assert not list(world.suite_dir.parent.glob(".*tmp*"))


def test_rebuild_is_skipped(world):
    before = {p.name: p.stat().st_mtime_ns for p in world.suite_dir.iterdir()}
    again = build_world(small_recipe(world.suite_dir.parent))
    assert again.suite_dir == world.suite_dir
    assert {p.name: p.stat().st_mtime_ns for p in world.suite_dir.iterdir()} == before


def test_interrupted_build_is_redone(world, tmp_path):
    root = tmp_path / "run"
    (root / "suite").mkdir(parents=True)
    (root / "suite" / "sft.jsonl").write_text("half a file")  # no marker: not done
    rebuilt = build_world(small_recipe(root))
    for split in SPLITS:
        name = f"{split}.jsonl"
        assert (rebuilt.suite_dir / name).read_bytes() == (world.suite_dir / name).read_bytes()


def test_same_seed_same_files_and_weights(world, tmp_path):
    again = build_world(small_recipe(tmp_path / "run"))
    for name in ["tokenizer.json", "model.safetensors"] + [f"{s}.jsonl" for s in SPLITS]:
        folder = again.model_dir if not name.endswith(".jsonl") else again.suite_dir
        reference = world.model_dir if not name.endswith(".jsonl") else world.suite_dir
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


def test_other_seed_differs(world, tmp_path):
    other = build_world(small_recipe(tmp_path / "run", seed=1))
    assert (other.suite_dir / "sft.jsonl").read_bytes() != (world.suite_dir / "sft.jsonl").read_bytes()
    a = AutoModelForCausalLM.from_pretrained(world.model_dir).model.layers[0].self_attn.q_proj.weight
    b = AutoModelForCausalLM.from_pretrained(other.model_dir).model.layers[0].self_attn.q_proj.weight
    assert a.shape == b.shape and not torch.equal(a, b)


def test_changed_settings_on_a_built_world_are_an_error(world):
    recipe = small_recipe(world.suite_dir.parent)
    recipe.suite.demo_error_rate = 0.1
    with pytest.raises(UserError, match="other suite settings"):
        build_world(recipe)


def test_tokenizer_round_trips_and_keeps_its_specials(world):
    tok = AutoTokenizer.from_pretrained(world.model_dir)
    assert len(tok) == Recipe().suite.tiny_model.vocab_size
    assert (tok.pad_token, tok.eos_token) == ("<|pad|>", "<|end|>")
    assert tok.pad_token_id != tok.eos_token_id
    for text in ["Reverse the order of these words: cat dog sun", "RESULT [YAK, OWL] DONE", "unseen: zebra ünï 42!"]:
        assert tok.decode(tok(text)["input_ids"]) == text


def test_chat_template_masks_the_assistant_turn(world):
    tok = AutoTokenizer.from_pretrained(world.model_dir)
    messages = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5 done"}]
    out = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "5 done<|end|>"
    assert tok.decode(ids) == "<|user|>\nAdd 2 and 3.\n<|assistant|>\n5 done<|end|>\n"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>\nAdd 2 and 3.\n<|assistant|>\n"


def test_base_model_loads_and_generates(world):
    tok = AutoTokenizer.from_pretrained(world.model_dir)
    model = AutoModelForCausalLM.from_pretrained(world.model_dir)
    assert model.config.model_type == "llama"
    assert (model.config.eos_token_id, model.config.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert model.config.vocab_size == len(tok)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Add 2 and 3."}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_suite_command_prints_the_summary(world, tmp_path, capsys):
    from alignment.commands import suite as command

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(f"output_dir: {world.suite_dir.parent}\n")
    overrides = [f"suite.{k}={v}" for k, v in SMALL.items()]
    assert command.main(argparse.Namespace(recipe=str(recipe_file), overrides=overrides)) == 0
    out = capsys.readouterr().out
    assert str(world.suite_dir) in out and "eval_heldout_family" in out and "mean gold" in out
