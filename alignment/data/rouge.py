"""ROUGE-L (Lin 2004) between two word sequences: the F1 of their longest common subsequence.

Self-Instruct (Wang et al. 2023) keeps a generated instruction only when its ROUGE-L with
every instruction already in the pool is below 0.7. Words are the data stage's (lower-cased,
punctuation split off: alignment.data.texts.words), so "Add 2 and 3." and "add 2 and 3"
are identical.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # row[j - 1] of the previous line
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 = 2 * LCS / (|a| + |b|) (precision and recall weighted equally)."""
    if not a or not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


class RougeIndex:
    """The instructions kept so far; `most_similar` finds the closest one by ROUGE-L.

    The LCS is at most the size of the two bags' intersection, so a candidate whose bag
    overlap cannot reach the threshold is skipped without the quadratic LCS.
    """

    def __init__(self) -> None:
        self.texts: list[tuple[str, ...]] = []
        self.bags: list[Counter] = []
        self.keys: list[str] = []

    def add(self, key: str, tokens: Sequence[str]) -> None:
        self.keys.append(key)
        self.texts.append(tuple(tokens))
        self.bags.append(Counter(tokens))

    def most_similar(self, tokens: Sequence[str], threshold: float) -> tuple[str, float] | None:
        """(key, score) of the best pool instruction scoring >= threshold, or None."""
        bag, n = Counter(tokens), len(tokens)
        best: tuple[str, float] | None = None
        for key, text, other in zip(self.keys, self.texts, self.bags):
            bound = 2.0 * sum((bag & other).values()) / (n + len(text)) if n + len(text) else 0.0
            if bound < threshold or (best is not None and bound <= best[1]):
                continue
            score = rouge_l(tokens, text)
            if score >= threshold and (best is None or score > best[1]):
                best = (key, score)
        return best
