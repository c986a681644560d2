"""Row formats and loaders: every error names the file, the row and the field."""

import json

import pytest

from alignment.data.files import read_rows, write_rows
from alignment.data.loading import load_rows
from alignment.data.rows import expand_ranking, to_preference_rows
from alignment.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ""])
def test_formats_round_trip(tmp_path, suffix):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.0}, {"prompt": "q", "chosen": "c", "rejected": "d", "margin": 0.0}]
    path = tmp_path / f"pairs{suffix}"
    write_rows(rows, path)
    loaded, kind = load_rows(str(path))
    assert kind == "preference" and loaded == rows


def test_sft_formats_both_accepted(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"prompt": "hi", "completion": "yo"},
    ])
    rows, kind = load_rows(str(path), "sft")
    assert kind == "sft" and len(rows) == 2


@pytest.mark.parametrize(
    "rows, kind, expected",
    [
        ([{"prompt": "p", "chosen": "a"}], "preference", "row 1: field 'rejected': missing"),
        ([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": 3, "chosen": "a", "rejected": "b"}], "preference", "row 2: field 'prompt': expected a string"),
        ([{"prompt": "p", "chosen": "a", "rejected": "b", "margin": "x"}], "preference", "field 'margin'"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "sft", "row 1: field 'messages': no assistant turn"),
        ([{"messages": [{"role": "robot", "content": "hi"}]}], "sft", "field 'messages[0].role'"),
        ([{"prompt": "p", "completion": ""}], "sft", "field 'completion': empty"),
        ([{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 5]}], "ranking", "field 'ranking'"),
        ([{"prompt": "p", "responses": ["a"], "ranking": [0]}], "ranking", "field 'responses'"),
        ([{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}], "ranking", "appears twice"),
        ([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1]}], None, "row 2: mixed schemas"),
    ],
)
def test_validation_names_file_row_and_field(tmp_path, rows, kind, expected):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_rows(str(path), kind)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: malformed JSON"):
        read_rows(path)


def test_non_utf8_and_empty_and_missing(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="row 1: not UTF-8"):
        read_rows(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty dataset"):
        read_rows(empty)
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "missing.jsonl")


def test_ranking_expands_to_all_pairs_weighted_as_one_example():
    row = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, 0, 3, 1], "labeler": "ann"}
    pairs = expand_ranking(row)
    assert len(pairs) == 6
    assert sum(p["weight"] for p in pairs) == pytest.approx(1.0)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {
        ("c", "a"), ("c", "d"), ("c", "b"), ("a", "d"), ("a", "b"), ("d", "b")
    }
    assert all(p["labeler"] == "ann" for p in pairs)


def test_partial_ranking_compares_only_ranked_responses():
    pairs = to_preference_rows([{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [1, 0]}], "ranking")
    assert [(p["chosen"], p["rejected"], p["weight"]) for p in pairs] == [("b", "a", 1.0)]
