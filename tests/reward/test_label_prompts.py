"""Which prompts a labeling round spends its judgments on (labels.balance_by)."""

import collections

import pytest

from alignment.errors import UserError
from reward.labeling import select_label_prompts


def _rows(counts: dict[str, int]) -> list[dict]:
    """Rows interleaved the way a generated file mixes families, with a running id."""
    rows, left = [], dict(counts)
    while any(left.values()):
        for family in counts:
            if left[family]:
                rows.append({"prompt": f"p{len(rows)}", "metadata": {"family": family}})
                left[family] -= 1
    return rows


def test_without_balance_the_first_rows_are_taken():
    rows = _rows({"task": 8, "safety": 2})
    assert select_label_prompts(rows, 4) == rows[:4]


def test_values_share_equally_and_a_small_one_gives_all_it_has():
    rows = _rows({"a": 40, "b": 40, "safety": 3})
    chosen = select_label_prompts(rows, 21, "family")
    counts = collections.Counter(r["metadata"]["family"] for r in chosen)
    assert counts == {"a": 9, "b": 9, "safety": 3}
    assert [r["prompt"] for r in chosen] == sorted((r["prompt"] for r in chosen), key=lambda p: int(p[1:]))  # file order
    # the first-n selection would have taken only 3 of a rare value's rows at a share of 1/27
    assert collections.Counter(r["metadata"]["family"] for r in select_label_prompts(rows, 21))["safety"] == 3


def test_rare_value_is_oversampled_relative_to_its_share_of_the_file():
    # one row in 16 is a safety request, scattered through the file as in the offline suite
    rows = [{"prompt": str(i), "metadata": {"family": "safety" if i % 16 == 0 else f"t{i % 3}"}} for i in range(320)]
    first = collections.Counter(r["metadata"]["family"] for r in select_label_prompts(rows, 100))
    balanced = collections.Counter(r["metadata"]["family"] for r in select_label_prompts(rows, 100, "family"))
    assert first["safety"] == 7
    assert balanced["safety"] == 20  # all there are: under its equal share of 25
    assert sum(balanced.values()) == 100 and min(balanced[f"t{k}"] for k in range(3)) >= 26


def test_a_top_level_column_works_and_asking_for_more_than_exists_returns_everything():
    rows = [{"prompt": str(i), "topic": "x" if i % 3 else "y"} for i in range(7)]
    assert select_label_prompts(rows, 50, "topic") == rows


def test_a_row_without_the_field_is_named():
    rows = [{"prompt": "a", "metadata": {"family": "t"}}, {"prompt": "b", "metadata": {}}]
    with pytest.raises(UserError, match="row 2 has no field 'family'"):
        select_label_prompts(rows, 2, "family")


def test_a_dotted_path_reads_the_same_field_as_the_bare_metadata_key():
    rows = [{"prompt": str(i), "metadata": {"family": "safety" if i % 5 == 0 else "task"}} for i in range(40)]
    assert select_label_prompts(rows, 10, "metadata.family") == select_label_prompts(rows, 10, "family")
    assert sum(r["metadata"]["family"] == "safety" for r in select_label_prompts(rows, 10, "metadata.family")) == 5
