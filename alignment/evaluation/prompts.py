"""Evaluation prompts: suite splits or user files, with what each prompt can be checked against.

A prompt set is `suite:<split>` (the offline suite, whose rows carry the `metadata` that the
gold checkers need) or a file of rows with a `prompt` (text or chat messages; SFT rows work
too, their last assistant turn is dropped). Optional fields of a user row:

- `constraints`: IFEval-style checks (see ifeval.py), e.g. `[{"type": "lowercase"}]`;
- `category`: the group it is reported under (default: the suite family, else the set name);
- `safety`: `refuse` or `comply` for the safety probe (suite rows: `metadata.family`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from alignment.data.files import read_rows
from alignment.errors import DataError, UserError
from alignment.evaluation import ifeval
from alignment.evaluation.safety import COMPLY, REFUSE, safety_side
from alignment.run_dir import SUITE_PREFIX, ensure_offline_world, resolve_data_path


@dataclass
class EvalPrompt:
    prompt: str | list[dict]
    set: str
    category: str
    id: str
    metadata: Optional[dict] = None
    """Offline-suite task spec, scored by `alignment.suite.gold_score`."""
    constraints: list[dict] = field(default_factory=list)
    """User IFEval-style constraints, scored by ifeval.py."""
    safety: Optional[str] = None

    @property
    def suite_gold(self) -> bool:
        return isinstance(self.metadata, dict) and "family" in self.metadata and (
            "answer" in self.metadata or self.safety is not None
        )

    def text(self) -> str:
        """The prompt as one string (for reports)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)


def _prompt_of(row: dict, where: str):
    if "messages" in row and "prompt" not in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: field 'messages': expected a non-empty list of chat turns")
        turns = messages[:-1] if messages[-1].get("role") == "assistant" else messages
        if not turns:
            raise DataError(f"{where}: field 'messages': no user turn to use as a prompt")
        return turns
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"{where}: field 'prompt': missing")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: field 'prompt': empty")
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return prompt
    raise DataError(f"{where}: field 'prompt': expected text or a list of {{role, content}} messages")


def prompts_from_rows(rows: list[dict], set_name: str, source: str) -> list[EvalPrompt]:
    out = []
    for i, row in enumerate(rows):
        where = f"{source}: row {i + 1}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object")
        prompt = _prompt_of(row, where)
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else None
        constraints = row.get("constraints") or []
        if not isinstance(constraints, list):
            raise DataError(f"{where}: field 'constraints': expected a list of constraint mappings")
        for j, c in enumerate(constraints):
            ifeval.validate_constraint(c, f"{where}: field 'constraints[{j}]'")
        if row.get("safety") is not None and row["safety"] not in (REFUSE, COMPLY):
            raise DataError(f"{where}: field 'safety': expected 'refuse' or 'comply', got {row['safety']!r}")
        category = str(row.get("category") or (meta or {}).get("family") or set_name)
        pid = str((meta or {}).get("id") or row.get("id") or f"{set_name}:{i + 1}")
        out.append(EvalPrompt(prompt, set_name, category, pid, meta, constraints, safety_side(row)))
    return out


def set_name(spec: str) -> str:
    return spec[len(SUITE_PREFIX) :] if spec.startswith(SUITE_PREFIX) else Path(spec).stem


def load_prompt_sets(specs: list[str], recipe, max_per_set: Optional[int] = None) -> list[EvalPrompt]:
    """Every prompt of every set, in order; `suite:` sets build the offline world first."""
    if not specs:
        raise UserError("no prompt sets given (--prompts FILE or suite:<split>)")
    if any(s.startswith(SUITE_PREFIX) for s in specs):
        ensure_offline_world(recipe)
    names = [set_name(s) for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"prompt sets must have distinct names, got {names}")
    prompts: list[EvalPrompt] = []
    for spec, name in zip(specs, names):
        path = resolve_data_path(recipe, spec)
        if spec.startswith(SUITE_PREFIX) and not Path(path).exists():
            raise UserError(f"{spec}: no such split of the offline suite ({path} not found)")
        rows = read_rows(path)  # DataError for a missing or empty file, naming it
        rows = rows[:max_per_set] if max_per_set else rows
        prompts.extend(prompts_from_rows(rows, name, path))
    return prompts
