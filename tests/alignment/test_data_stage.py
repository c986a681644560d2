"""Mixtures (hand-computed shares, achieved vs requested), comparison figures, the CLI, and bad input."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest

from alignment.cli import main as rlhf
from alignment.data.filters import as_filters_config, import_predicate
from alignment.data.mixture import interleave, largest_remainder, pick_indices, plan_mixture
from alignment.data.stage import inspect_recipe, run_data_stage
from alignment.data.synthetic import clean_sft_rows
from alignment.errors import DataError, RecipeError, UserError
from alignment.recipe.data import MixingConfig

try:
    from tests.alignment import data_fixtures as fx
except ImportError:  # tests/alignment is not a package: pytest put its folder on sys.path
    import data_fixtures as fx


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return fx.make_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


# --- mixture math --------------------------------------------------------------------------


def test_largest_remainder_by_hand():
    assert largest_remainder([1 / 3] * 3, 10) == [4, 3, 3]
    assert largest_remainder([0.5, 0.3, 0.2], 7) == [4, 2, 1]  # 3.5, 2.1, 1.4 -> floors 3,2,1; .5 wins the spare row
    assert sum(largest_remainder([0.123, 0.456, 0.421], 997)) == 997


def test_mixture_shares_by_hand():
    sizes = {"a": 400, "b": 100, "c": 25}
    plans = plan_mixture(sizes, MixingConfig(strategy="proportional", cap=200), {})
    assert [p.requested_share for p in plans] == pytest.approx([200 / 325, 100 / 325, 25 / 325])
    assert [p.rows for p in plans] == [200, 100, 25]
    # temperature 2: sqrt sizes 20, 10, 5 -> shares 4/7, 2/7, 1/7 of 525 rows; c repeats 50 rows
    plans = plan_mixture(sizes, MixingConfig(strategy="temperature", temperature=2.0), {})
    assert [p.requested_share for p in plans] == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert [p.rows for p in plans] == [300, 150, 75] and [p.repeats for p in plans] == [0, 50, 50]
    plans = plan_mixture(sizes, MixingConfig(strategy="weights", total_rows=1000), {"a": 5, "b": 3, "c": 2})
    assert [p.rows for p in plans] == [500, 300, 200]
    with pytest.raises(RecipeError, match="has no weight"):
        plan_mixture(sizes, MixingConfig(strategy="weights"), {"a": 1.0, "b": None, "c": 1.0})


def test_picks_and_interleave():
    rng = random.Random(0)
    assert pick_indices(4, 10, rng)[:8] == [0, 1, 2, 3, 0, 1, 2, 3]  # two whole passes, then 2 sampled
    picked = pick_indices(100, 30, rng)
    assert len(set(picked)) == 30 and picked == sorted(picked)
    streams = {"x": iter(range(600)), "y": iter(range(300)), "z": iter(range(100))}
    merged = [name for name, _ in interleave(streams, {"x": 600, "y": 300, "z": 100}, random.Random(1))]
    assert Counter(merged) == {"x": 600, "y": 300, "z": 100}
    head = Counter(merged[:200])  # every prefix is close to the mixture: 60/30/10 % of 200 within 3 sigma
    for name, share in (("x", 0.6), ("y", 0.3), ("z", 0.1)):
        assert abs(head[name] / 200 - share) <= 3 * math.sqrt(share * (1 - share) / 200)


def _sources(tmp, sizes):
    out = []
    for s, n in enumerate(sizes):
        rows = clean_sft_rows(n, seed=10 + s)
        for i, row in enumerate(rows):
            row["id"], row["difficulty"] = f"s{s}-{i}", (i * 7919) % 101
        out.append({"path": str(fx.write_jsonl(rows, tmp / f"src{s}.jsonl")), "name": f"src{s}"})
    return out


def test_stage_mixture_achieved_matches_requested(tmp_path, tok):
    sources = _sources(tmp_path, [1200, 400, 150])
    recipe = fx.recipe_for(
        tmp_path, tok, sources, [], "data.mixing.strategy=temperature", "data.mixing.temperature=2",
        "data.mixing.total_rows=1000", "seed=3",
    )
    train = run_data_stage(recipe, progress=False)
    out = fx.read_jsonl(train)
    counts = Counter(row["id"].split("-")[0] for row in out)
    report = json.loads((train.parent / "report.json").read_text())["mixture"]["sft"]
    n = len(out)
    assert n == 1000
    for s, name in enumerate(["src0", "src1", "src2"]):
        entry = report["sources"][name]
        p = entry["requested_share"]
        assert entry["achieved_share"] == counts[f"s{s}"] / n
        assert abs(counts[f"s{s}"] / n - p) <= 3 * math.sqrt(p * (1 - p) / n)  # within sampling error
        assert abs(counts[f"s{s}"] / n - p) <= 1 / n  # and, by construction, within rounding
    # rows a source could not contribute are listed in the manifest as mixing left-outs
    manifest = fx.read_jsonl(train.parent / "manifest.jsonl")
    left = Counter(e["source"] for e in manifest if e["filter"] == "mixing")
    assert left == {name: e["left_out_rows"] for name, e in report["sources"].items() if e["left_out_rows"]}
    # the same seed gives the same file; `rlhf data mix` re-mixes with a curriculum, easy first
    before = train.read_bytes()
    assert run_data_stage(recipe, force=True, progress=False).read_bytes() == before


def _overrides(tmp, tok, sources):
    return [f"output_dir={tmp / 'run'}", f"model.name_or_path={tok}", f"data.sources={json.dumps(sources)}",
            "data.eval_sets=[]", "eval.prompts=[]"]


def test_cli_clean_then_mix_with_curriculum(tmp_path, tok, capsys):
    sources = _sources(tmp_path, [300, 100])
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("name: cli\n", encoding="utf-8")
    assert rlhf(["data", "clean", str(recipe_file), *_overrides(tmp_path, tok, sources)]) == 0
    printed = capsys.readouterr().out
    assert "filter sft/exact_dedup" in printed and "requested 75.00%  achieved 75.00%" in printed
    assert rlhf(["data", "mix", str(recipe_file), *_overrides(tmp_path, tok, sources), "data.mixing.curriculum=difficulty"]) == 0
    out = fx.read_jsonl(tmp_path / "run" / "data" / "train.jsonl")
    assert len(out) == 400 and [r["difficulty"] for r in out] == sorted(r["difficulty"] for r in out)
    assert (tmp_path / "run" / "data" / "COMPLETE.json").is_file()
    assert "curriculum" in json.loads((tmp_path / "run" / "data" / "report.json").read_text())["mixture"]["sft"]
    assert "Mixture (sft): 400 rows" in (tmp_path / "run" / "data" / "report.html").read_text()
    # inspect a file with the same settings: report files and a summary
    assert rlhf(["data", "inspect", sources[0]["path"], *_overrides(tmp_path, tok, sources), "--out", str(tmp_path / "rep")]) == 0
    assert "sft: 300 sft rows" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"report.json", "report.html", "findings.jsonl"}
    assert (tmp_path / "rep" / "report.html").read_text().count("data:image/png;base64,") >= 2  # lengths, categories (findings)


# --- comparisons -----------------------------------------------------------------------------


def test_preference_figures_by_hand(tmp_path, tok):
    pairs = [
        {"prompt": "Q1", "chosen": "a long detailed answer here", "rejected": "short", "labeler": "ann"},
        {"prompt": "Q2", "chosen": "same", "rejected": "same", "labeler": "ann"},  # identical
        {"prompt": "Q3", "chosen": "yes it is indeed so, truly", "rejected": "no", "margin": 0, "labeler": "bob"},  # tie
        {"prompt": "Q4", "chosen": "the chosen one is longer", "rejected": "nope", "labeler": "bob"},
        {"prompt": "Q5", "chosen": "fine", "rejected": "also fine but longer", "labeler": "cy"},
    ]
    path = fx.write_jsonl(pairs, tmp_path / "pairs.jsonl")
    recipe = fx.recipe_for(tmp_path, tok, [], [])
    report, _ = inspect_recipe(recipe, progress=False, files=[str(path)])
    pref = report["datasets"]["preference"]["preference"]
    assert (pref["pairs"], pref["ties"], pref["identical_pairs"]) == (5, 1, 1)
    assert pref["annotators"] == {"ann": 2, "bob": 2, "cy": 1}
    # lengths differ in 4 pairs (not Q2); the chosen one is longer in Q1, Q3, Q4 and shorter in Q5
    assert pref["chosen_longer_rate"] == 3 / 4
    findings = report["datasets"]["preference"]["findings"]
    assert findings["identical_pair"]["rows"] == 1 and findings["tie"]["rows"] == 1


# --- bad input -------------------------------------------------------------------------------


def _inspect_file(tmp_path, tok, path):
    return inspect_recipe(fx.recipe_for(tmp_path, tok, [], []), progress=False, files=[str(path)])


def test_bad_input_names_file_row_and_field(tmp_path, tok):
    good = {"prompt": "p", "completion": "c"}
    mixed = fx.write_jsonl([good, good, {"prompt": "p", "chosen": "a", "rejected": "b"}], tmp_path / "mixed.jsonl")
    with pytest.raises(DataError, match=r"mixed\.jsonl: row 3: mixed schemas"):
        _inspect_file(tmp_path, tok, mixed)
    typed = fx.write_jsonl([good, {"prompt": "p", "completion": 7}], tmp_path / "typed.jsonl")
    with pytest.raises(DataError, match=r"typed\.jsonl: row 2: field 'completion': expected a string, got int"):
        _inspect_file(tmp_path, tok, typed)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(good).encode() + b"\n" + '{"prompt": "caf\xe9", "completion": "x"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin\.jsonl: row 2: not UTF-8"):
        _inspect_file(tmp_path, tok, latin)


def test_unknown_filter_and_bad_predicates(tmp_path, tok, monkeypatch, capsys):
    with pytest.raises(RecipeError, match="unknown key 'data.filters.dedupe'"):
        fx.recipe_for(tmp_path, tok, [], [], "data.filters.dedupe={}")
    with pytest.raises(UserError, match="unknown filter 'dedupe'; known filters: encoding, pii"):
        as_filters_config({"dedupe": {}})
    assert as_filters_config({"near_dedup": {"threshold": 0.9}}).near_dedup.threshold == 0.9
    # the CLI prints one line naming the key and exits 2
    some = fx.write_jsonl([{"prompt": "p", "completion": "c"}], tmp_path / "some.jsonl")
    assert rlhf(["data", "inspect", str(some), "data.filters.dedupe={}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'data.filters.dedupe'" in err
    assert rlhf(["data", "inspect", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err

    (tmp_path / "mypreds.py").write_text(
        "def short(row):\n    return len(row['completion']) < 100\n\ndef broken(row):\n    return 'yes'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="not of the form"):
        import_predicate("mypreds.short")
    with pytest.raises(UserError, match="has no function 'nope'"):
        import_predicate("mypreds:nope")
    rows = [{"prompt": f"q{i}", "completion": "x" * (50 if i % 2 else 150), "id": f"r{i}"} for i in range(10)]
    src = [{"path": str(fx.write_jsonl(rows, tmp_path / "p.jsonl")), "name": "p"}]
    train = run_data_stage(fx.recipe_for(tmp_path, tok, src, [], "data.filters.predicate.function=mypreds:short"), progress=False)
    manifest = fx.read_jsonl(train.parent / "manifest.jsonl")
    assert [(e["row"], e["filter"]) for e in manifest] == [(i + 1, "predicate") for i in range(0, 10, 2)]
    assert [r["id"] for r in fx.read_jsonl(train)] == [f"r{i}" for i in range(1, 10, 2)]
    with pytest.raises(DataError, match=r"p: row 1: predicate mypreds:broken returned str"):
        run_data_stage(fx.recipe_for(tmp_path / "b", tok, src, [], "data.filters.predicate.function=mypreds:broken"), progress=False)


def test_preference_sources_are_cleaned_into_their_own_mixture(tmp_path, tok):
    pairs = [{"prompt": f"Question {i}?", "chosen": f"Answer {i} in full.", "rejected": "", "labeler": "a"} for i in range(20)]
    pairs.append(dict(pairs[3]))  # an exact duplicate
    pairs.append({"prompt": "Q?", "chosen": "", "rejected": "something", "labeler": "b"})  # empty chosen response
    prefs = [{"path": str(fx.write_jsonl(pairs, tmp_path / "pairs.jsonl")), "name": "pairs"}]
    sft = _sources(tmp_path, [50])
    recipe = fx.recipe_for(tmp_path, tok, sft, [], f"data.preference_sources={json.dumps(prefs)}")
    train = run_data_stage(recipe, progress=False)
    out = fx.read_jsonl(train.parent / "preferences.jsonl")
    assert len(out) == 20 and len(fx.read_jsonl(train)) == 50
    manifest = [e for e in fx.read_jsonl(train.parent / "manifest.jsonl") if e["dataset"] == "preference"]
    assert [(e["row"], e["filter"]) for e in manifest] == [(21, "exact_dedup"), (22, "empty")]
    report = json.loads((train.parent / "report.json").read_text())
    assert report["datasets"]["preference"]["preference"]["annotators"] == {"a": 21, "b": 1}
    marker = json.loads((train.parent / "COMPLETE.json").read_text())
    assert marker["rows"] == {"sft": 50, "preference": 20}
