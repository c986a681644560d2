"""Campaign input: candidate rows from a file or sampled from a policy checkpoint.

A row is `{"prompt": str | [{"role", "content"}...], "responses": [str | {"text", "policy",
"checkpoint", "metadata"}...], "metadata": {...}, "gold"?: answer}`. A row with a `gold` key is
a gold (honeypot) item whose expected answer is known: in pairwise mode the index (0 or 1) of
the better response, or "tie" / "both_bad"; in ranking mode a list of response indices, best
first. Sampling imports the policy code lazily, so that the app itself never loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignment.data.rows import ROLES
from alignment.errors import DataError, UserError


def normalize_rows(rows: list[dict], source: str = "items", lines: list[int] | None = None) -> list[dict]:
    """Validate candidate rows and return them in one shape: responses become dicts.

    Errors name the source and the 1-based place of the row, as the data loaders do:
    `line N` when `lines` gives each row's line in a JSONL file (blank lines are skipped, so
    rows and lines can differ), else `row N`.
    """
    out = []
    for i, row in enumerate(rows):
        where = f"{source}: line {lines[i]}" if lines is not None else f"{source}: row {i + 1}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object, got {type(row).__name__}")
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise DataError(f"{where}: field 'prompt': empty")
        elif isinstance(prompt, list) and prompt:
            for j, m in enumerate(prompt):
                if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                    raise DataError(f"{where}: field 'prompt[{j}]': expected {{'role', 'content'}} with role in {sorted(ROLES)}")
        else:
            raise DataError(f"{where}: field 'prompt': expected a string or a non-empty list of chat messages")
        responses = row.get("responses")
        if not isinstance(responses, list) or len(responses) < 2:
            raise DataError(f"{where}: field 'responses': expected a list of at least 2 responses")
        norm = []
        for j, r in enumerate(responses):
            if isinstance(r, str):
                r = {"text": r}
            if not isinstance(r, dict) or not isinstance(r.get("text"), str):
                raise DataError(f"{where}: field 'responses[{j}]': expected a string or an object with 'text'")
            unknown = set(r) - {"text", "policy", "checkpoint", "metadata"}
            if unknown:
                raise DataError(f"{where}: field 'responses[{j}]': unknown keys {sorted(unknown)}")
            norm.append({"text": r["text"], "policy": r.get("policy"), "checkpoint": r.get("checkpoint"),
                         "metadata": r.get("metadata") or {}})
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DataError(f"{where}: field 'metadata': expected an object")
        clean = {"prompt": prompt, "responses": norm, "metadata": metadata}
        if "gold" in row:
            clean["gold"] = row["gold"]
        out.append(clean)
    return out


def read_candidates(path: str | Path, name: str | None = None) -> list[dict]:
    """Read candidate rows from .jsonl, .json (a list), .parquet or a saved `datasets` folder.

    `name` is what errors call the file (default: the path). The app passes the uploaded
    file's own name: the path it reads from is a temporary copy the admin never saw.
    """
    path = Path(path)
    shown = name or str(path)
    if not path.exists():
        raise UserError(f"candidates file not found: {shown}")
    lines: list[int] | None = None
    if path.is_dir():
        from datasets import load_from_disk

        rows = list(load_from_disk(str(path)))
    elif path.suffix == ".jsonl":
        rows, lines = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{shown}: line {n}: invalid JSON: {err.msg}") from None
                lines.append(n)
    elif path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{shown}: line {err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(rows, list):
            raise DataError(f"{shown}: expected a JSON list of rows")
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise UserError(f"{shown}: unknown candidates format (use .jsonl, .json, .parquet or a datasets folder)")
    return normalize_rows(rows, source=shown, lines=lines)


def sample_candidates(
    model_path: str,
    rows: list[dict],
    k: int,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    policy_name: str | None = None,
) -> list[dict]:
    """Sample `k` responses for each row's `prompt` from a policy checkpoint; each row's
    `metadata` is carried into the candidates. Imports torch and transformers lazily."""
    if k < 2:
        raise UserError(f"--samples-per-prompt must be at least 2, got {k}")
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise DataError(f"prompts: row {i + 1}: field 'prompt': missing")
    from alignment.generation import generate
    from alignment.models import load_policy, load_tokenizer
    from alignment.recipe.model import ModelConfig

    model_cfg = ModelConfig(name_or_path=str(model_path))
    tokenizer = load_tokenizer(str(model_path), model_cfg)
    model = load_policy(str(model_path), model_cfg)
    prompts = [row["prompt"] for row in rows]
    outputs = generate(model, tokenizer, prompts, max_new_tokens, temperature, seed, batch_size,
                       num_return_sequences=k)
    policy = policy_name or Path(model_path).name
    return normalize_rows([
        {"prompt": row["prompt"], "metadata": row.get("metadata") or {},
         "responses": [{"text": text, "policy": policy, "checkpoint": str(model_path), "metadata": {"seed": seed}}
                       for text in outputs[i]]}
        for i, row in enumerate(rows)
    ], source="sampled")
