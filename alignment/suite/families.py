"""Task families: small, exactly checkable instructions over a tiny word list.

Each family maps sampled inputs (a few words, or two small numbers) to a short reference
answer, a list of words. The families are chosen so that a ~1M-parameter Llama learns them
from a few thousand demonstrations on a CPU in about a minute, yet not perfectly: reversing
and sorting need position bookkeeping, counting and adding need a little arithmetic. That
leaves room between imitation and perfect, which is where preference learning must show
its worth.

Every family has several instruction phrasings (FLAN-style). The last
`suite.heldout_phrasings` of them are kept out of training, to measure robustness to
wording; whole families named in `suite.heldout_families` are kept out to measure
generalisation to an unseen task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

# Short, lowercase, distinct words. None of them is an instruction, decoration or filler word
# (see constraints.py), so that gold scoring can tell the answer from its decorations.
WORDS: tuple[str, ...] = (
    "cat", "dog", "sun", "red", "box", "cup", "map", "pen", "hat", "egg", "fox", "owl",
    "bee", "ant", "jam", "key", "log", "net", "pig", "rat", "toy", "van", "web", "yak",
)


@dataclass(frozen=True)
class Family:
    """One task: how to phrase it, how to sample its inputs, and its exact answer."""

    name: str
    phrasings: tuple[str, ...]
    """Instruction templates with `{words}` or `{a}`/`{b}` placeholders."""
    sample_inputs: Callable[[random.Random], dict]
    answer: Callable[[dict], list[str]]
    numeric: bool = False
    """The answer is a number: case constraints do not apply to it."""
    multiword: bool = True
    """The answer has several words (the comma format only makes sense then)."""

    def instruction(self, inputs: dict, phrasing: int) -> str:
        words = " ".join(inputs.get("words", []))
        return self.phrasings[phrasing].format(words=words, a=inputs.get("a"), b=inputs.get("b"))



def _words(low: int, high: int) -> Callable[[random.Random], dict]:
    def sample(rng: random.Random) -> dict:
        return {"words": rng.sample(WORDS, rng.randint(low, high))}

    return sample


def _numbers(rng: random.Random) -> dict:
    return {"a": rng.randint(1, 9), "b": rng.randint(1, 9)}


_FAMILIES = (
    Family(
        "reverse",
        (
            "Reverse the order of these words: {words}",
            "Write these words in reverse order: {words}",
            "List the words from last to first: {words}",
            "Say these words backwards, keeping each word intact: {words}",
        ),
        _words(3, 5),
        lambda x: list(reversed(x["words"])),
    ),
    Family(
        "sort",
        (
            "Sort these words alphabetically: {words}",
            "Put these words in alphabetical order: {words}",
            "Arrange the words from A to Z: {words}",
            "Order these words as they would appear in a dictionary: {words}",
        ),
        _words(3, 5),
        lambda x: sorted(x["words"]),
    ),
    Family(
        "copy",
        (
            "Repeat these words exactly: {words}",
            "Copy the following words: {words}",
            "Write the same words again: {words}",
            "Echo back these words unchanged: {words}",
        ),
        _words(3, 5),
        lambda x: list(x["words"]),
    ),
    Family(
        "count",
        (
            "How many words are there? {words}",
            "Count the words: {words}",
            "Give the number of words in this list: {words}",
            "Tell me how many words this list contains: {words}",
        ),
        _words(2, 7),
        lambda x: [str(len(x["words"]))],
        numeric=True,
        multiword=False,
    ),
    Family(
        "add",
        (
            "Add {a} and {b}.",
            "What is {a} plus {b}?",
            "Compute the sum of {a} and {b}.",
            "Give the total of {a} and {b}.",
        ),
        _numbers,
        lambda x: [str(x["a"] + x["b"])],
        numeric=True,
        multiword=False,
    ),
    Family(
        "first_word",
        (
            "What is the first word? {words}",
            "Give only the first word: {words}",
            "Which word comes first in this list? {words}",
            "Name the word at the start of this list: {words}",
        ),
        _words(3, 5),
        lambda x: [x["words"][0]],
        multiword=False,
    ),
    Family(
        "last_word",
        (
            "What is the last word? {words}",
            "Give only the last word: {words}",
            "Which word comes last in this list? {words}",
            "Name the word at the end of this list: {words}",
        ),
        _words(3, 5),
        lambda x: [x["words"][-1]],
        multiword=False,
    ),
)

FAMILIES: Mapping[str, Family] = MappingProxyType({f.name: f for f in _FAMILIES})
"""All task families by name (read-only)."""
