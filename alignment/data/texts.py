"""The texts inside a row, whatever its format, as the quality checks see them.

Every check in the data stage asks the same two questions of a row: what was the
instruction, and what are the responses? SFT rows come as chat `messages` or
`prompt`/`completion`; preference rows carry `chosen` and `rejected`; ranking rows carry a
list of `responses`. This module answers those questions once, names each text by the
field it came from (so a finding or a manifest entry can say `messages[3].content`), and
rewrites text fields in place for the filters that repair or redact.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable

from alignment.data.rows import Kind

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class RowText:
    """The instruction and the responses of one row, each response named by its field."""

    instruction: str
    """The last user turn before the response (what an echo would repeat)."""
    prompt_messages: list[dict]
    """Every turn before the response, as chat messages (what the policy is conditioned on)."""
    responses: list[tuple[str, str]]
    """(field, text) for each response: the final assistant turn, `completion`, `chosen`/`rejected`, `responses[j]`."""


def _prompt_as_messages(prompt) -> tuple[list[dict], str]:
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return prompt, users[-1] if users else ""
    return [{"role": "user", "content": prompt}], prompt


def row_text(row: dict, kind: Kind) -> RowText:
    """Split a validated row into instruction and responses."""
    if kind == "sft" and "messages" in row:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        before = messages[:last]
        users = [m["content"] for m in before if m["role"] == "user"]
        return RowText(users[-1] if users else "", before, [(f"messages[{last}].content", messages[last]["content"])])
    prompt_messages, instruction = _prompt_as_messages(row["prompt"])
    if kind == "sft":
        responses = [("completion", row["completion"])]
    elif kind == "preference":
        responses = [("chosen", row["chosen"]), ("rejected", row["rejected"])]
    else:
        responses = [(f"responses[{j}]", r) for j, r in enumerate(row["responses"])]
    return RowText(instruction, prompt_messages, responses)


def text_fields(row: dict, kind: Kind) -> list[tuple[str, str]]:
    """Every free-text field of a row as (field, text), prompt turns included, in a fixed order."""
    out: list[tuple[str, str]] = []
    if kind == "sft" and "messages" in row:
        return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(row["messages"])]
    prompt = row["prompt"]
    if isinstance(prompt, list):
        out += [(f"prompt[{i}].content", m["content"]) for i, m in enumerate(prompt)]
    else:
        out.append(("prompt", prompt))
    if kind == "sft":
        out.append(("completion", row["completion"]))
    elif kind == "preference":
        out += [("chosen", row["chosen"]), ("rejected", row["rejected"])]
    else:
        out += [(f"responses[{j}]", r) for j, r in enumerate(row["responses"])]
    return out


def map_text_fields(row: dict, kind: Kind, fn: Callable[[str], str]) -> tuple[dict, list[str]]:
    """A copy of `row` with `fn` applied to every text field, and the fields that changed.

    The row itself is never mutated, so a caller can keep the original for the manifest.
    """
    changed: list[str] = []

    def apply(field: str, text: str) -> str:
        new = fn(text)
        if new != text:
            changed.append(field)
        return new

    out = copy.deepcopy(row)
    if kind == "sft" and "messages" in out:
        for i, m in enumerate(out["messages"]):
            m["content"] = apply(f"messages[{i}].content", m["content"])
        return out, changed
    if isinstance(out["prompt"], list):
        for i, m in enumerate(out["prompt"]):
            m["content"] = apply(f"prompt[{i}].content", m["content"])
    else:
        out["prompt"] = apply("prompt", out["prompt"])
    if kind == "sft":
        out["completion"] = apply("completion", out["completion"])
    elif kind == "preference":
        out["chosen"] = apply("chosen", out["chosen"])
        out["rejected"] = apply("rejected", out["rejected"])
    else:
        out["responses"] = [apply(f"responses[{j}]", r) for j, r in enumerate(out["responses"])]
    return out, changed


def content_key(row: dict, kind: Kind) -> str:
    """The row's texts joined with separators that cannot occur in text: equal keys = exact duplicates.

    Metadata (ids, labeler names) is left out on purpose: two rows that teach the same
    thing are duplicates even when their ids differ.
    """
    return "\x1e".join(f"{field}\x1f{text}" for field, text in text_fields(row, kind))


def joined_text(row: dict, kind: Kind) -> str:
    """All the row's text as one string, for near-duplicate shingles and n-gram overlap."""
    return "\n".join(text for _, text in text_fields(row, kind))


def normalize(text: str) -> str:
    """Lower case with collapsed whitespace: the form in which echoes and prompts are compared."""
    return _SPACE.sub(" ", text).strip().lower()


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore): punctuation and spacing ignored."""
    return _WORD.findall(text.lower())


def field_value(row: dict, key: str):
    """`row['a']['b']` for the dotted key 'a.b', or None when any part is missing."""
    node = row
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
