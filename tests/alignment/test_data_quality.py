"""The data stage against ground truth: defects injected at known rates into clean generated rows.

- the report finds each kind of defect with precision and recall >= 0.95;
- `clean` removes exactly the rows its manifest lists, and a second run changes nothing;
- decontamination removes every copied evaluation prompt and nothing else from a clean set.
"""

from __future__ import annotations

import json

import pytest

from alignment.data.stage import inspect_recipe, run_data_stage
from alignment.data.synthetic import INJECTABLE, clean_sft_rows, inject_defects

try:
    from tests.alignment import data_fixtures as fx
except ImportError:  # tests/alignment is not a package: pytest put its folder on sys.path
    import data_fixtures as fx

N_CLEAN, RATE = 3000, 0.03


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dataq")
    tokenizer = fx.make_tokenizer(tmp / "tok")
    eval_rows = [{"prompt": r["messages"][0]["content"], "id": f"ev{i}"} for i, r in enumerate(clean_sft_rows(300, seed=7))]
    eval_path = fx.write_jsonl(eval_rows, tmp / "eval.jsonl")
    clean = clean_sft_rows(N_CLEAN, seed=1)
    dirty, truth = inject_defects(clean, {k: RATE for k in INJECTABLE}, seed=3, eval_prompts=[r["prompt"] for r in eval_rows])
    return {
        "tmp": tmp, "tokenizer": tokenizer, "eval": eval_path, "eval_rows": eval_rows, "clean": clean,
        "dirty": dirty, "truth": truth, "dirty_path": fx.write_jsonl(dirty, tmp / "dirty.jsonl"),
    }


def _recipe(world, name, path, *overrides):
    return fx.recipe_for(world["tmp"] / name, world["tokenizer"], [{"path": str(path), "name": "train"}], [str(world["eval"])], *overrides)


def test_report_finds_each_injected_defect(world):
    report, inspections = inspect_recipe(_recipe(world, "inspect", world["dirty_path"]), progress=False)
    inspection = inspections["sft"]
    assert inspection.n_rows == len(world["dirty"])
    for kind in INJECTABLE:
        found = set(inspection.rows_with(kind))
        true = {i for i, kinds in enumerate(world["truth"]) if kind in kinds}
        assert len(true) == round(RATE * N_CLEAN)
        hit = len(found & true)
        precision, recall = hit / max(len(found), 1), hit / len(true)
        assert precision >= 0.95 and recall >= 0.95, (kind, precision, recall, len(found), len(true))
        assert report["datasets"]["sft"]["findings"][kind]["rows"] == len(found)
    # every contaminated row is named, with the evaluation prompt it copies
    named = report["datasets"]["sft"]["contamination"]["rows"]
    assert len(named) == len(inspection.rows_with("contaminated"))
    assert all("eval.jsonl row" in f["detail"] and "(ev" in f["detail"] for c in named for f in c["findings"])
    assert report["datasets"]["sft"]["contamination"]["rows_by_eval_set"] == {str(world["eval"]): len(named)}


def test_clean_removes_exactly_what_the_manifest_lists_and_is_idempotent(world):
    overrides = ("data.filters.pii={}", "data.filters.near_dedup={}")
    dirty, _ = inject_defects(world["clean"][:1200], {k: RATE for k in INJECTABLE}, seed=4,
                              eval_prompts=[r["prompt"] for r in world["eval_rows"]])
    recipe = _recipe(world, "clean", fx.write_jsonl(dirty, world["tmp"] / "dirty_small.jsonl"), *overrides)
    train = run_data_stage(recipe, progress=False)
    out_dir = train.parent
    manifest = fx.read_jsonl(out_dir / "manifest.jsonl")
    output = fx.read_jsonl(train)
    dropped = {e["row"] for e in manifest if e["action"] == "drop"}
    changed: dict[int, list[dict]] = {}
    for e in manifest:
        assert e["source"] == "train" and e["filter"] and e["reason"]
        if e["action"] == "change":
            changed.setdefault(e["row"], []).append(e)
    # the output is the input minus the dropped rows, in order; unchanged rows are byte-identical
    kept = [(i + 1, row) for i, row in enumerate(dirty) if i + 1 not in dropped]
    assert len(output) == len(kept)
    for (number, original), cleaned in zip(kept, output):
        if number in changed:
            assert cleaned != original
        else:
            assert cleaned == original
    # every kind of injected defect is gone (or, for PII and encoding, repaired)
    report = json.loads((out_dir / "report.json").read_text())
    counts = report["filters"]["sft"]
    injected = round(RATE * 1200)
    assert counts["exact_dedup"]["dropped"] >= injected and counts["pii"]["changed"] >= 4 * injected
    assert counts["empty"]["dropped"] >= injected and counts["echo"]["dropped"] >= injected
    assert counts["decontaminate"]["dropped"] >= injected - 2  # a leaked row can go first to another filter
    assert (out_dir / "COMPLETE.json").is_file() and (out_dir / "report.html").is_file()

    # twice: the same recipe writes the same files
    first = train.read_bytes(), (out_dir / "manifest.jsonl").read_bytes()
    run_data_stage(recipe, force=True, progress=False)
    assert (train.read_bytes(), (out_dir / "manifest.jsonl").read_bytes()) == first

    # cleaning the cleaned file again removes and changes nothing
    again = run_data_stage(_recipe(world, "again", train, *overrides), progress=False)
    assert fx.read_jsonl(again.parent / "manifest.jsonl") == []
    assert again.read_bytes() == train.read_bytes()


def test_decontamination_removes_every_copied_eval_prompt_and_nothing_else(world):
    clean = world["clean"][:1500]
    leaked, truth = inject_defects(clean, {"contaminated": 0.04}, seed=5, eval_prompts=[r["prompt"] for r in world["eval_rows"]])
    path = fx.write_jsonl(leaked, world["tmp"] / "leaked.jsonl")
    recipe = _recipe(
        world, "decon", path, "data.filters.encoding=null", "data.filters.empty=null", "data.filters.echo=null",
        "data.filters.exact_dedup=null",
    )
    train = run_data_stage(recipe, progress=False)
    manifest = fx.read_jsonl(train.parent / "manifest.jsonl")
    removed = {e["row"] - 1 for e in manifest}
    assert all(e["filter"] == "decontaminate" and e["action"] == "drop" for e in manifest)
    assert removed == {i for i, kinds in enumerate(truth) if "contaminated" in kinds}
    assert len(fx.read_jsonl(train)) == len(clean)
