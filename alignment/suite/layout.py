"""How a response is laid out: the answer words plus the decorations constraints ask for.

A correct response is `[start] body [end]`, where the body is the answer words joined by
spaces (or `", "` for the comma format) and optionally wrapped in square brackets, and the
whole text is then upper- or lower-cased. Demonstrations are rendered from a `Layout`, and
corrupted by editing one (dropping the end word, padding the words...), so that what the
gold checker parses is exactly what the generator wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9]+")


def words_of(text: str) -> list[str]:
    """The lowercase words (letters and digits) of a text, punctuation dropped."""
    return [w.lower() for w in _WORD.findall(text)]


@dataclass
class Layout:
    """A response before rendering; corruptions edit it."""

    words: list[str]
    start: str | None = None
    end: str | None = None
    brackets: bool = False
    commas: bool = False
    case: str | None = None
    """'upper' or 'lower' applies to the whole text; None leaves it as written."""

    def render(self) -> str:
        body = (", " if self.commas else " ").join(self.words)
        if self.brackets:
            body = f"[{body}]"
        text = " ".join(part for part in (self.start, body, self.end) if part)
        if self.case == "upper":
            return text.upper()
        if self.case == "lower":
            return text.lower()
        return text


def layout_for(answer: list[str], constraints: list[dict]) -> Layout:
    """The correct layout of `answer` under `constraints`."""
    layout = Layout(words=list(answer))
    for c in constraints:
        kind = c["type"]
        if kind == "case":
            layout.case = c["mode"]
        elif kind == "start_word":
            layout.start = c["word"]
        elif kind == "end_phrase":
            layout.end = c["word"]
        elif kind == "format":
            layout.brackets = c["style"] == "brackets"
            layout.commas = c["style"] == "commas"
    return layout


def decoration_words(constraints: list[dict]) -> tuple[str | None, str | None]:
    """The required start and end words, if the constraints ask for them."""
    start = next((c["word"] for c in constraints if c["type"] == "start_word"), None)
    end = next((c["word"] for c in constraints if c["type"] == "end_phrase"), None)
    return start, end


def answer_words(response: str, constraints: list[dict]) -> list[str]:
    """The words of a response with its required start/end words removed, if present.

    Task correctness is scored on these, so that a missing decoration costs its constraint
    and nothing else (task and constraints are scored independently).
    """
    words = words_of(response)
    start, end = decoration_words(constraints)
    if start and words and words[0] == start:
        words = words[1:]
    if end and words and words[-1] == end:
        words = words[:-1]
    return words


def body_text(response: str, constraints: list[dict]) -> str:
    """The response text with brackets and the required start/end words stripped."""
    text = response.replace("[", " ").replace("]", " ").strip()
    start, end = decoration_words(constraints)
    if start:
        text = re.sub(rf"^{re.escape(start)}\b[\s:,.]*", "", text, flags=re.IGNORECASE)
    if end:
        text = re.sub(rf"[\s,:]*\b{re.escape(end)}\W*$", "", text, flags=re.IGNORECASE)
    return text.strip()
