"""The three row formats every stage exchanges, and their validation.

- SFT: `messages` (chat turns) or `prompt`/`completion`.
- Preference: `prompt`, `chosen`, `rejected`, optional `margin` and `weight`; any other key is
  metadata and travels with the row (labeler ids, agreement, category...).
- Ranking: `prompt`, `responses`, `ranking` (indices into `responses`, best first; indices
  left out are unranked). A ranking of K expands to its C(K,2) implied pairs, each weighted
  1/C(K,2) so that one ranking counts as one example, as in InstructGPT (Ouyang et al. 2022).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal

from alignment.errors import DataError

Kind = Literal["sft", "preference", "ranking"]
ROLES = ("system", "user", "assistant")


def _fail(source: str, index: int, field: str, problem: str) -> DataError:
    return DataError(f"{source}: row {index + 1}: field '{field}': {problem}")


def _check_text(row: dict, field: str, source: str, i: int, allow_empty: bool = False) -> None:
    if field not in row or row[field] is None:
        raise _fail(source, i, field, "missing")
    if not isinstance(row[field], str):
        raise _fail(source, i, field, f"expected a string, got {type(row[field]).__name__}")
    if not allow_empty and not row[field].strip():
        raise _fail(source, i, field, "empty")


def _check_messages(messages: Any, field: str, source: str, i: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail(source, i, field, "expected a non-empty list of {role, content} messages")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise _fail(source, i, f"{field}[{j}]", "expected {role, content}")
        if m["role"] not in ROLES:
            raise _fail(source, i, f"{field}[{j}].role", f"unknown role {m['role']!r} (use {', '.join(ROLES)})")
        if not isinstance(m["content"], str):
            raise _fail(source, i, f"{field}[{j}].content", f"expected a string, got {type(m['content']).__name__}")


def _check_prompt(row: dict, source: str, i: int) -> None:
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        _check_messages(prompt, "prompt", source, i)
    else:
        _check_text(row, "prompt", source, i)


def detect_kind(row: dict) -> Kind:
    if "messages" in row or "completion" in row:
        return "sft"
    if "chosen" in row or "rejected" in row:
        return "preference"
    if "responses" in row or "ranking" in row:
        return "ranking"
    raise DataError(
        "cannot tell the row format: expected 'messages' or 'prompt'/'completion' (SFT), "
        "'prompt'/'chosen'/'rejected' (preference) or 'prompt'/'responses'/'ranking' (ranking); "
        f"got fields {sorted(row)}"
    )


def validate_row(row: dict, kind: Kind, source: str, i: int) -> None:
    if kind == "sft":
        if "messages" in row:
            _check_messages(row["messages"], "messages", source, i)
            if not any(m["role"] == "assistant" for m in row["messages"]):
                raise _fail(source, i, "messages", "no assistant turn to learn from")
        else:
            _check_prompt(row, source, i)
            _check_text(row, "completion", source, i)
    elif kind == "preference":
        _check_prompt(row, source, i)
        _check_text(row, "chosen", source, i, allow_empty=True)
        _check_text(row, "rejected", source, i, allow_empty=True)
        for field in ("margin", "weight"):
            if row.get(field) is not None and not isinstance(row[field], (int, float)):
                raise _fail(source, i, field, f"expected a number, got {type(row[field]).__name__}")
    elif kind == "ranking":
        _check_prompt(row, source, i)
        responses, ranking = row.get("responses"), row.get("ranking")
        if not isinstance(responses, list) or len(responses) < 2:
            raise _fail(source, i, "responses", "expected a list of at least 2 responses")
        for j, r in enumerate(responses):
            if not isinstance(r, str):
                raise _fail(source, i, f"responses[{j}]", f"expected a string, got {type(r).__name__}")
        if not isinstance(ranking, list) or len(ranking) < 2:
            raise _fail(source, i, "ranking", "expected a list of at least 2 response indices, best first")
        if any(not isinstance(k, int) or not 0 <= k < len(responses) for k in ranking):
            raise _fail(source, i, "ranking", f"indices must be integers in [0, {len(responses) - 1}]")
        if len(set(ranking)) != len(ranking):
            raise _fail(source, i, "ranking", "an index appears twice")
    else:
        raise ValueError(kind)


def validate_rows(rows: list[dict], kind: Kind | None, source: str) -> Kind:
    """Validate every row against one format (detected from the first row if not given)."""
    if not rows:
        raise DataError(f"{source}: no rows (empty dataset)")
    if kind is None:
        try:
            kind = detect_kind(rows[0])
        except DataError as err:
            raise DataError(f"{source}: row 1: {err}") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source}: row {i + 1}: expected an object")
        if i and kind != "sft" and detect_kind_safe(row) not in (kind, None):
            raise DataError(f"{source}: row {i + 1}: mixed schemas: a {detect_kind_safe(row)} row in a {kind} file")
        validate_row(row, kind, source, i)
    return kind


def detect_kind_safe(row: dict) -> Kind | None:
    try:
        return detect_kind(row)
    except DataError:
        return None


def expand_ranking(row: dict) -> list[dict]:
    """All pairs implied by a ranking, each weighted 1/C(K,2) (one ranking = one example)."""
    ranking = row["ranking"]
    pairs = list(combinations(ranking, 2))  # (better, worse) since ranking is best first
    weight = row.get("weight", 1.0) / len(pairs)
    meta = {k: v for k, v in row.items() if k not in ("prompt", "responses", "ranking", "weight")}
    return [
        {
            "prompt": row["prompt"],
            "chosen": row["responses"][better],
            "rejected": row["responses"][worse],
            "weight": weight,
            **meta,
        }
        for better, worse in pairs
    ]


def to_preference_rows(rows: list[dict], kind: Kind) -> list[dict]:
    """Preference rows from preference or ranking rows (rankings expanded)."""
    if kind == "preference":
        return rows
    if kind == "ranking":
        return [pair for row in rows for pair in expand_ranking(row)]
    raise DataError(f"expected preference or ranking rows, got {kind} rows")


def prompt_messages(prompt: str | list[dict]) -> list[dict]:
    """A prompt as chat messages (a plain string is one user turn)."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def sft_messages(row: dict) -> list[dict]:
    """An SFT row as chat messages, whichever of the two formats it uses."""
    if "messages" in row:
        return row["messages"]
    return prompt_messages(row["prompt"]) + [{"role": "assistant", "content": row["completion"]}]
