"""IFEval-style verifiable constraints, crossed with the task families.

Each constraint has an instruction sentence appended to the prompt and a 0/1 checker. They
are chosen for *surface* features that a small reward model can see in a response (its
case, its first and last word, brackets or commas, its length, a filler word), because
FEASIBILITY.md measured that word-order correctness alone is not learnable by a tiny reward
model from noisy pairs: the gold signal has to be visible.

Constraint dicts are JSON-serialisable and carry their arguments:
`{"type": "case", "mode": "upper"|"lower"}`, `{"type": "end_phrase", "word": w}`,
`{"type": "start_word", "word": w}`, `{"type": "format", "style": "brackets"|"commas"}`,
`{"type": "max_words", "n": n}`, `{"type": "forbidden_word", "word": w}`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from alignment.suite.families import Family
from alignment.suite.layout import body_text, decoration_words, layout_for, words_of

START_WORDS: tuple[str, ...] = ("result", "reply", "output", "note")
END_WORDS: tuple[str, ...] = ("done", "over", "end", "stop")
FILLERS: tuple[str, ...] = ("really", "very", "just", "quite")
"""Filler words: padded demonstrations add one, and `forbidden_word` forbids one."""


@dataclass(frozen=True)
class Constraint:
    """One constraint type: when it applies, how to sample and state it, how to check it."""

    name: str
    applies: Callable[[Family], bool]
    sample: Callable[[random.Random, Family], dict]
    instruction: Callable[[dict], str]
    check: Callable[[dict, str, list[dict]], bool]
    """check(constraint, response, all constraints of the prompt) -> satisfied?"""


def _check_case(c: dict, response: str, _: list[dict]) -> bool:
    letters = [ch for ch in response if ch.isalpha()]
    if not letters:
        return False
    return all(ch.isupper() for ch in letters) if c["mode"] == "upper" else all(ch.islower() for ch in letters)


def _check_end(c: dict, response: str, _: list[dict]) -> bool:
    words = words_of(response)
    return bool(words) and words[-1] == c["word"]


def _check_start(c: dict, response: str, _: list[dict]) -> bool:
    words = words_of(response)
    return bool(words) and words[0] == c["word"]


_COMMA_LIST = re.compile(r"[A-Za-z0-9]+(\s*,\s*[A-Za-z0-9]+)+[.!]?")


def _check_format(c: dict, response: str, constraints: list[dict]) -> bool:
    if c["style"] == "commas":
        return _COMMA_LIST.fullmatch(body_text(response, constraints)) is not None
    # brackets: one [...] pair holding the answer; outside it only the start/end words
    if response.count("[") != 1 or response.count("]") != 1:
        return False
    left, right = response.index("["), response.index("]")
    if right < left or not words_of(response[left + 1 : right]):
        return False
    allowed = {w for w in decoration_words(constraints) if w}
    outside = words_of(response[:left]) + words_of(response[right + 1 :])
    return all(w in allowed for w in outside)


def _check_max_words(c: dict, response: str, _: list[dict]) -> bool:
    return len(words_of(response)) <= c["n"]


def _check_forbidden(c: dict, response: str, _: list[dict]) -> bool:
    return c["word"] not in words_of(response)


def _always(_: Family) -> bool:
    return True


_CONSTRAINTS = (
    Constraint(
        "case",
        lambda f: not f.numeric,
        lambda rng, f: {"type": "case", "mode": rng.choice(("upper", "lower"))},
        lambda c: "Answer in capital letters only." if c["mode"] == "upper" else "Answer in lowercase letters only.",
        _check_case,
    ),
    Constraint(
        "end_phrase",
        _always,
        lambda rng, f: {"type": "end_phrase", "word": rng.choice(END_WORDS)},
        lambda c: f"End your answer with the word '{c['word']}'.",
        _check_end,
    ),
    Constraint(
        "start_word",
        _always,
        lambda rng, f: {"type": "start_word", "word": rng.choice(START_WORDS)},
        lambda c: f"Start your answer with the word '{c['word']}'.",
        _check_start,
    ),
    Constraint(
        "format",
        _always,
        lambda rng, f: {"type": "format", "style": rng.choice(("brackets", "commas") if f.multiword else ("brackets",))},
        lambda c: {"brackets": "Wrap your answer in square brackets.", "commas": "Separate the words with commas."}[
            c["style"]
        ],
        _check_format,
    ),
    Constraint(
        "max_words",
        _always,
        lambda rng, f: {"type": "max_words", "n": 0},  # n is set by `complete` from the answer
        lambda c: f"Answer in at most {c['n']} words.",
        _check_max_words,
    ),
    Constraint(
        "forbidden_word",
        _always,
        lambda rng, f: {"type": "forbidden_word", "word": rng.choice(FILLERS)},
        lambda c: f"Do not use the word '{c['word']}'.",
        _check_forbidden,
    ),
)

CONSTRAINTS: Mapping[str, Constraint] = MappingProxyType({c.name: c for c in _CONSTRAINTS})
"""All constraint types by name (read-only)."""


def complete(constraints: list[dict], answer: list[str]) -> list[dict]:
    """Fill in arguments that depend on the answer: `max_words` is the correct response's length."""
    others = [c for c in constraints if c["type"] != "max_words"]
    n = len(words_of(layout_for(answer, others).render()))
    return [{**c, "n": n} if c["type"] == "max_words" else c for c in constraints]


def check(constraint: dict, response: str, constraints: list[dict]) -> bool:
    """Whether `response` satisfies `constraint` (one of the prompt's `constraints`)."""
    return CONSTRAINTS[constraint["type"]].check(constraint, response, constraints)
