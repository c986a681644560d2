"""The recipe's data sources and evaluation sets, resolved, named and read row by row.

Rows are streamed (`iter_rows`) and validated one at a time, so a source never has to fit
in memory, and the first bad row stops the run with its file, row and field named. A row
whose fields belong to another format than the source's first row is a *mixed schema*
error, not a confusing "field missing" further down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from alignment.data.contamination import EvalPrompt
from alignment.data.files import iter_rows
from alignment.data.rows import Kind, detect_kind, detect_kind_safe, validate_row
from alignment.data.texts import field_value
from alignment.errors import DataError, UserError
from alignment.recipe import Recipe
from alignment.run_dir import resolve_data_path

CATEGORY_KEYS = ("category", "metadata.category", "metadata.family", "family", "task")


@dataclass(frozen=True)
class Source:
    name: str
    path: str
    """Resolved file path (suite:<split> already turned into the run's file)."""
    weight: Optional[float] = None
    max_rows: Optional[int] = None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def recipe_sources(recipe: Recipe, group: str = "sources") -> list[Source]:
    """`data.sources` (or `data.preference_sources`) with display names made unique."""
    configs = getattr(recipe.data, group)
    names = _unique([c.name or (c.path if c.path.startswith(("suite:", "self_instruct:")) else Path(c.path).stem)
                     for c in configs])
    for c in configs:
        if c.path.startswith("self_instruct:") and not Path(resolve_data_path(recipe, c.path)).exists():
            raise UserError(f"data.{group}: {c.path} does not exist yet: run `rlhf data generate` with this recipe first")
    return [
        Source(name, resolve_data_path(recipe, c.path), c.weight, c.max_rows) for name, c in zip(names, configs)
    ]


def file_source(path: str, name: Optional[str] = None) -> Source:
    return Source(name or Path(path).stem or str(path), str(path))


def source_kind(source: Source) -> Kind:
    """The format of a source, from its first row."""
    for row in iter_rows(source.path):
        try:
            return detect_kind(row)
        except DataError as err:
            raise DataError(f"{source.path}: row 1: {err}") from None
    raise DataError(f"{source.path}: no rows (empty dataset)")


def iter_source(source: Source, kind: Kind) -> Iterator[tuple[int, dict]]:
    """(0-based index, validated row) for each row, stopping at `max_rows`."""
    for i, row in enumerate(iter_rows(source.path)):
        if source.max_rows is not None and i >= source.max_rows:
            return
        found = detect_kind_safe(row)
        if found is not None and found != kind:
            raise DataError(f"{source.path}: row {i + 1}: mixed schemas: a {found} row in a {kind} source")
        validate_structure(row, kind, source.path, i)
        yield i, row


def validate_structure(row: dict, kind: Kind, source: str, i: int) -> None:
    """`validate_row`, except that an empty prompt or completion passes: finding and counting
    those is the data stage's job, so they must reach the report instead of stopping the run."""
    probe = row
    for key in ("prompt", "completion"):
        value = row.get(key)
        if isinstance(value, str) and not value.strip():
            probe = {**probe, key: "-"}
    validate_row(probe, kind, source, i)


def row_id(row: dict) -> Optional[str]:
    meta = row.get("metadata")
    value = row.get("id", meta.get("id") if isinstance(meta, dict) else None)
    return None if value is None else str(value)


def eval_set_paths(recipe: Recipe) -> list[tuple[str, str]]:
    """(name, path) of every evaluation prompt set: `data.eval_sets` then `eval.prompts`, once each."""
    seen, out = set(), []
    for name in list(recipe.data.eval_sets) + list(recipe.eval.prompts):
        if name not in seen:
            seen.add(name)
            out.append((name, resolve_data_path(recipe, name)))
    return out


def _prompt_text(row: dict, path: str, i: int) -> str:
    prompt = row.get("prompt")
    if prompt is None and "messages" in row:
        prompt = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "assistant"]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in prompt):
        return "\n".join(m["content"] for m in prompt if m.get("role") != "assistant")
    if prompt is None:
        raise DataError(f"{path}: row {i + 1}: field 'prompt': missing (an evaluation set needs prompts)")
    raise DataError(f"{path}: row {i + 1}: field 'prompt': expected a string or chat messages, got {type(prompt).__name__}")


def load_eval_prompts(sets: list[tuple[str, str]]) -> list[EvalPrompt]:
    """Every prompt of every evaluation set; a missing set is an error, never skipped silently."""
    prompts = []
    for name, path in sets:
        if not Path(path).exists():
            raise DataError(f"evaluation set {name}: file not found: {path}")
        for i, row in enumerate(iter_rows(path)):
            prompts.append(EvalPrompt(name, i, _prompt_text(row, path, i), row_id(row)))
    return prompts


def category_of(row: dict, key: Optional[str]) -> str:
    """The row's task category: `key` if given (dotted for nested), else the first known column."""
    for k in (key,) if key else CATEGORY_KEYS:
        value = field_value(row, k)
        if value is not None:
            return str(value)
    return "(none)"
