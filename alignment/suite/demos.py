"""Deliberately imperfect demonstrations.

A fraction `suite.demo_error_rate` of the task demonstrations is corrupted, in one of three
ways, recorded as `metadata.corruption`:

- `break_<type>` (half of them): one of the prompt's constraints is violated: the wrong
  case, no or the wrong end word, no start word, no brackets or commas, a padding word
  over the word limit, the forbidden word used;
- `pad` (35%): a filler word is appended to the answer, the kind of rambling a reward
  model can see (it is the forbidden word when the prompt forbids one);
- `task_error` (15%): two answer words swapped, a word replaced, or a number off by one.

Imitation learns these mistakes along with the task; preferences can teach the model to
drop them. That gap is what the later stages must demonstrate.
"""

from __future__ import annotations

import random

from alignment.suite.constraints import END_WORDS, FILLERS
from alignment.suite.families import WORDS, Family
from alignment.suite.layout import Layout

KINDS: tuple[tuple[str, float], ...] = (("break", 0.5), ("pad", 0.35), ("task_error", 0.15))


def _filler(constraints: list[dict], rng: random.Random) -> str:
    forbidden = next((c["word"] for c in constraints if c["type"] == "forbidden_word"), None)
    return forbidden or rng.choice(FILLERS)


def _task_error(layout: Layout, family: Family, rng: random.Random) -> None:
    words = layout.words
    if family.numeric:
        n = int(words[0])
        words[0] = str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    elif len(words) >= 2:
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    else:
        words[0] = rng.choice([w for w in WORDS if w != words[0]])


def _break(layout: Layout, constraint: dict, constraints: list[dict], rng: random.Random) -> None:
    kind = constraint["type"]
    if kind == "case":
        layout.case = "lower" if constraint["mode"] == "upper" else "upper"
    elif kind == "end_phrase":
        layout.end = None if rng.random() < 0.5 else rng.choice([w for w in END_WORDS if w != constraint["word"]])
    elif kind == "start_word":
        layout.start = None
    elif kind == "format":
        layout.brackets = layout.commas = False
    elif kind in ("max_words", "forbidden_word"):
        layout.words.append(_filler(constraints, rng))
    else:  # a new constraint type must say how a demonstration breaks it
        raise ValueError(f"no corruption defined for constraint type {kind!r}")


def corrupt(layout: Layout, family: Family, constraints: list[dict], rng: random.Random) -> str:
    """Corrupt `layout` in place; return the kind of corruption, as stored in metadata."""
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    if kind == "break" and constraints:
        constraint = rng.choice(constraints)
        _break(layout, constraint, constraints, rng)
        return f"break_{constraint['type']}"
    if kind == "task_error":
        _task_error(layout, family, rng)
        return "task_error"
    layout.words.append(_filler(constraints, rng))
    return "pad"
