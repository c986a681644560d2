"""IFEval-style verifiable constraints (Zhou et al. 2023), written for offline use.

A constraint is a small dict, `{"type": "word_count", "at_most": 20}`, that a rule can check
without a judge. Prompt rows may carry a `constraints` list (top level or in `metadata`);
`rlhf eval` reports the prompt-level pass rate (every constraint of a prompt holds) and the
constraint-level pass rate (share of all constraints that hold), as IFEval does with its
"prompt-level" and "instruction-level" accuracy. `regex` is the hook for user-supplied rules.

Matching follows IFEval's checkers where they exist: start and end phrases compare
case-insensitively after stripping whitespace; counts accept `at_least`, `at_most` or
`exactly`.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Callable, Optional

from alignment.errors import DataError

_WORD = re.compile(r"\b\w+(?:'\w+)?\b")


def _within(count: int, at_least: Optional[int], at_most: Optional[int], exactly: Optional[int]) -> bool:
    if exactly is not None and count != exactly:
        return False
    if at_least is not None and count < at_least:
        return False
    if at_most is not None and count > at_most:
        return False
    return True


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def lowercase(response: str) -> bool:
    """Every letter is lower case (and there is at least one letter)."""
    return any(c.isalpha() for c in response) and response == response.lower()


def uppercase(response: str) -> bool:
    """Every letter is upper case (and there is at least one letter)."""
    return any(c.isalpha() for c in response) and response == response.upper()


def starts_with(response: str, phrase: str) -> bool:
    return response.strip().lower().startswith(phrase.strip().lower())


def ends_with(response: str, phrase: str) -> bool:
    """The response's last words are `phrase` (IFEval's `startend:end_checker`)."""
    return response.strip().strip('"').lower().endswith(phrase.strip().lower())


def _count_word(response: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", response, flags=re.IGNORECASE))


def include_words(response: str, words: list[str]) -> bool:
    return all(_count_word(response, w) > 0 for w in words)


def exclude_words(response: str, words: list[str]) -> bool:
    return all(_count_word(response, w) == 0 for w in words)


def keyword_frequency(
    response: str, word: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    return _within(_count_word(response, word), at_least, at_most, exactly)


def word_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    return _within(len(_words(response)), at_least, at_most, exactly)


def char_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    return _within(len(response.strip()), at_least, at_most, exactly)


def sentence_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", response.strip()) if _words(s)]
    return _within(len(sentences), at_least, at_most, exactly)


def paragraph_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    """Paragraphs are separated by blank lines or IFEval's `***` divider."""
    paragraphs = [p for p in re.split(r"\n\s*\n|\n?\s*\*\*\*\s*\n?", response.strip()) if p.strip()]
    return _within(len(paragraphs), at_least, at_most, exactly)


def bullet_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    """Markdown bullets: lines starting with `* ` or `- `."""
    bullets = re.findall(r"^\s*[*-]\s+\S", response, flags=re.MULTILINE)
    return _within(len(bullets), at_least, at_most, exactly)


def no_commas(response: str) -> bool:
    return "," not in response


def json_format(response: str) -> bool:
    """The whole response parses as JSON (a ```json fence around it is allowed, as in IFEval)."""
    text = response.strip()
    text = re.sub(r"^```(?:json|JSON|Json)?\s*", "", text)
    text = re.sub(r"\s*```$", "", text)
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def quoted(response: str) -> bool:
    """The whole response is wrapped in double quotes."""
    text = response.strip()
    return len(text) > 1 and text.startswith('"') and text.endswith('"')


def title(response: str) -> bool:
    """A title in double angular brackets, like <<poem of joy>>."""
    return re.search(r"<<[^\n<>]+>>", response) is not None


def highlight_count(response: str, at_least: int = 1) -> bool:
    """At least N *highlighted* sections (markdown italics or bold)."""
    spans = re.findall(r"\*[^\n*]+\*", response) + re.findall(r"\*\*[^\n*]+\*\*", response)
    return len([s for s in spans if s.strip("*").strip()]) >= at_least


def placeholder_count(response: str, at_least: int = 1) -> bool:
    """At least N [placeholders] in square brackets."""
    return len(re.findall(r"\[[^\[\]\n]+\]", response)) >= at_least


def postscript(response: str, marker: str = "P.S.") -> bool:
    """A postscript: a line starting with the marker, followed by some text."""
    pattern = rf"^\s*{re.escape(marker)}\s*\S"
    return re.search(pattern, response, flags=re.MULTILINE | re.IGNORECASE) is not None


def letter_frequency(
    response: str, letter: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    return _within(response.lower().count(letter.lower()), at_least, at_most, exactly)


def capital_word_count(
    response: str, at_least: Optional[int] = None, at_most: Optional[int] = None, exactly: Optional[int] = None
) -> bool:
    """Words written entirely in capitals (IFEval's `change_case:capital_word_frequency`)."""
    capitals = [w for w in _words(response) if w.isupper()]
    return _within(len(capitals), at_least, at_most, exactly)


def regex(response: str, pattern: str, match: bool = True) -> bool:
    """A user rule: the pattern is found (`match: true`) or must not be found (`match: false`)."""
    return (re.search(pattern, response, flags=re.MULTILINE) is not None) == match


CHECKERS: dict[str, Callable[..., bool]] = {
    f.__name__: f
    for f in (
        lowercase,
        uppercase,
        starts_with,
        ends_with,
        include_words,
        exclude_words,
        keyword_frequency,
        word_count,
        char_count,
        sentence_count,
        paragraph_count,
        bullet_count,
        no_commas,
        json_format,
        quoted,
        title,
        highlight_count,
        placeholder_count,
        postscript,
        letter_frequency,
        capital_word_count,
        regex,
    )
}


def validate_constraint(constraint: object, where: str) -> None:
    """Raise a DataError naming `where` if the constraint's type or arguments are wrong."""
    if not isinstance(constraint, dict) or "type" not in constraint:
        raise DataError(f"{where}: a constraint is a mapping with a 'type' (one of {', '.join(CHECKERS)})")
    kind = constraint["type"]
    if kind not in CHECKERS:
        raise DataError(f"{where}: unknown constraint type {kind!r}; known: {', '.join(CHECKERS)}")
    signature = inspect.signature(CHECKERS[kind])
    args = {k: v for k, v in constraint.items() if k != "type"}
    try:
        signature.bind("", **args)
    except TypeError as err:
        raise DataError(f"{where}: constraint {kind!r}: {err}") from None
    if kind == "regex":
        try:
            re.compile(args.get("pattern", ""))
        except re.error as err:
            raise DataError(f"{where}: constraint 'regex': bad pattern ({err})") from None


def check(constraint: dict, response: str) -> bool:
    """Whether `response` satisfies one constraint (validate it first for a clear error)."""
    args = {k: v for k, v in constraint.items() if k != "type"}
    return bool(CHECKERS[constraint["type"]](response, **args))


def check_all(constraints: list[dict], response: str) -> list[bool]:
    return [check(c, response) for c in constraints]
