"""Self-Instruct: its filters, its provenance, the pool growing, and `rlhf data generate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignment.data.contamination import ContaminationIndex, EvalPrompt
from alignment.data.filters import Decontaminate
from alignment.data.rouge import RougeIndex, lcs_length, rouge_l
from alignment.data.self_instruct import PoolEntry, clean_instruction, filter_report, grow
from alignment.data.texts import words
from alignment.recipe.self_instruct import SelfInstructConfig
from tests.alignment.data_fixtures import make_tokenizer, read_jsonl, recipe_for, write_jsonl

SEEDS = ["Reverse the words: cat dog sun", "Give only the first word: red box cup", "Add 2 and 3 and say the sum"]
EVAL_PROMPT = "List the three largest planets of the solar system in order of their size from big to small"


def scripted(proposals: list[str], answers: dict[str, str] | None = None):
    """A generator whose proposals come from a script (in order) and whose answers are fixed."""
    queue = list(proposals)
    answers = answers or {}

    def generate(prompts, max_new_tokens, temperature, top_p, seed):
        if prompts and prompts[0].startswith("Here are some example tasks"):
            return [queue.pop(0) for _ in prompts]
        return [answers.get(p, f"an answer to {p}") for p in prompts]

    return generate


def test_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert rouge_l("a b c d".split(), "a c d e".split()) == pytest.approx(0.75)
    assert rouge_l([], ["a"]) == 0.0
    index = RougeIndex()
    index.add("s1", words(SEEDS[0]))
    assert index.most_similar(words("reverse the words: cat dog moon"), 0.7) == ("s1", pytest.approx(5 / 6))
    assert index.most_similar(words("Name a colour of the sea"), 0.7) is None


def test_clean_instruction_takes_the_first_line_without_numbering():
    assert clean_instruction("\n4. Task: Sort the numbers 3 1 2\nmore text") == "Sort the numbers 3 1 2"
    assert clean_instruction('"Write a poem"') == "Write a poem"


def test_filters_remove_duplicates_eval_prompts_format_and_length_and_record_provenance():
    pool = [PoolEntry(f"seed-{i + 1}", t) for i, t in enumerate(SEEDS)]
    cfg = SelfInstructConfig(rounds=2, per_round=6, in_context=2, machine_in_context=1)
    index = ContaminationIndex([EvalPrompt("eval", 0, EVAL_PROMPT, "e1")])
    round1 = [
        "1. Reverse the words: cat dog sun",           # a seed again: near duplicate
        EVAL_PROMPT,                                    # an evaluation prompt: decontaminated
        "Describe the image below in detail",           # format: a text model cannot
        "Hi there",                                     # length: 2 words
        "Count the vowels in the word banana",          # kept
        "Name the capital city of France",              # empty answer: dropped
    ]
    round2 = [
        "Count the vowels in the word banana",          # the kept round-1 instruction: near duplicate
        "Translate the word house into German",         # kept
        "?? what is this",                              # format: starts with punctuation
        "Translate the word house into German please",  # near duplicate of the one kept just before
        "Sort these numbers from small to large: 4 1 3",
        "Spell the word cat backwards",
    ]
    gen = scripted(round1 + round2, answers={"Name the capital city of France": "  "})
    rows, manifest = grow(pool, gen, cfg, Decontaminate(index), "tiny-generator", seed=0)

    fate = {(e["round"], e["instruction"]): e["filter"] for e in manifest}
    assert fate[(1, "Reverse the words: cat dog sun")] == "near_duplicate"
    assert fate[(1, EVAL_PROMPT)] == "decontaminate"
    assert fate[(1, "Describe the image below in detail")] == "format"
    assert fate[(1, "Hi there")] == "length"
    assert fate[(1, "Name the capital city of France")] == "empty_response"
    assert fate[(1, "Count the vowels in the word banana")] is None
    assert fate[(2, "Count the vowels in the word banana")] == "near_duplicate"  # the pool grew
    assert fate[(2, "Translate the word house into German please")] == "near_duplicate"
    assert fate[(2, "?? what is this")] == "format"
    kept = [r["messages"][0]["content"] for r in rows]
    assert kept == ["Count the vowels in the word banana", "Translate the word house into German",
                    "Sort these numbers from small to large: 4 1 3", "Spell the word cat backwards"]
    assert all(EVAL_PROMPT not in k for k in kept)
    for row in rows:
        prov = row["metadata"]["provenance"]
        assert prov["generator"] == "tiny-generator" and prov["method"] == "self-instruct"
        assert len(prov["seed_examples"]) == 2 and prov["round"] in (1, 2)
    # round 2 shows one generated instruction among its in-context examples
    assert any(s.startswith("si-r1-") for r in rows if r["metadata"]["provenance"]["round"] == 2
               for s in r["metadata"]["provenance"]["seed_examples"])
    report = filter_report(manifest)
    assert report["proposals"] == 12 and report["kept"] == 4
    assert report["removed"]["near_duplicate"] == {"count": 3, "share": pytest.approx(3 / 12)}
    assert report["rounds"]["1"]["removed"]["decontaminate"]["count"] == 1


def test_generated_rows_go_through_the_data_stage_with_their_provenance(tmp_path):
    from alignment.data.self_instruct import run_self_instruct
    from alignment.data.stage import run_data_stage

    tok = make_tokenizer(tmp_path / "tok")
    seeds = write_jsonl([{"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": "x"}]}
                         for s in SEEDS], tmp_path / "seeds.jsonl")
    evals = write_jsonl([{"prompt": EVAL_PROMPT}], tmp_path / "eval.jsonl")
    recipe = recipe_for(tmp_path, tok, [{"path": str(seeds)}, {"path": "self_instruct:train"}], [str(evals)],
                        f"self_instruct.seeds={seeds}", "self_instruct.rounds=1", "self_instruct.per_round=3",
                        "self_instruct.in_context=2")
    gen = scripted(["Count the vowels in the word banana", EVAL_PROMPT, "Spell the word cat backwards"],
                   answers={"Spell the word cat backwards": "Spell the word cat backwards"})  # an echo
    path = run_self_instruct(recipe, generate=gen, progress=False)
    assert len(read_jsonl(path)) == 2
    out = Path(recipe.output_dir) / "self_instruct"
    assert {e["filter"] for e in read_jsonl(out / "manifest.jsonl")} == {None, "decontaminate"}
    assert (out / "COMPLETE.json").is_file()
    run_data_stage(recipe, progress=False)
    data = Path(recipe.output_dir) / "data"
    dropped = [e for e in read_jsonl(data / "manifest.jsonl") if e["filter"] == "echo"]
    assert len(dropped) == 1 and dropped[0]["provenance"]["method"] == "self-instruct"
    assert dropped[0]["source"] == "self_instruct:train"
    mixed = [r["messages"][0]["content"] for r in read_jsonl(data / "train.jsonl")]
    assert "Count the vowels in the word banana" in mixed


def test_rlhf_data_generate_runs_end_to_end_on_a_tiny_model(tmp_path):
    from tests.alignment.eval_helpers import tiny_policy

    policy = tiny_policy(tmp_path / "policy", sharpen=4.0)
    seeds = write_jsonl([{"prompt": s} for s in SEEDS], tmp_path / "seeds.jsonl")
    evals = write_jsonl([{"prompt": EVAL_PROMPT}], tmp_path / "eval.jsonl")
    args = [f"output_dir={tmp_path / 'run'}", f"model.name_or_path={policy}", f"data.sources=[{{path: {seeds}}}]",
            f"data.eval_sets=[{evals}]", "eval.prompts=[]", f"self_instruct.seeds={seeds}", "self_instruct.rounds=2",
            "self_instruct.per_round=8", "self_instruct.in_context=2", "self_instruct.max_new_tokens=12",
            "self_instruct.response_max_new_tokens=8", "self_instruct.response_temperature=1.0", "self_instruct.min_words=1", "self_instruct.dtype=float32"]
    result = subprocess.run([sys.executable, "-m", "alignment.cli", "data", "generate", "configs/quickstart.yaml", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "self_instruct" / "report.json").read_text())
    assert report["proposals"] == 16
    assert report["kept"] + sum(r["count"] for r in report["removed"].values()) == 16
    assert "of 16 proposed instructions kept" in result.stdout
