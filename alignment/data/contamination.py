"""Evaluation prompts that leaked into training data, found by word n-gram overlap.

The GPT-3 paper (Brown et al. 2020, appendix C) flags a training document when it shares a
13-gram with an evaluation item. Instruction prompts are short and templated, so two
adjustments make the same idea precise here:

- **Template n-grams are ignored.** An n-gram found in many evaluation prompts ("end your
  answer with the word") is instruction wording, not content; sharing it says nothing. An
  n-gram counts only if it occurs in at most `max(min_df, template_fraction x prompts)`
  evaluation prompts.
- **Overlap is measured per evaluation prompt.** A training row contaminates prompt p when
  it contains at least `min_overlap` of p's counted n-grams; a verbatim copy scores 1.0,
  while a row that shares a phrase or two with p does not count.

The defaults (n = 10, min_overlap = 0.8) were chosen on the offline suite, whose prompts are
short and built from shared constraint sentences: with n = 8 and min_overlap = 0.5, 228 of
its 4,000 demonstrations "overlapped" an evaluation prompt through constraint wording alone;
with the defaults one does, and it really contains a whole evaluation prompt plus one more
constraint. Verbatim copies score 1.0 under any of these settings.

Prompts shorter than n words have a single n-gram, the whole prompt, and match only a
training instruction with exactly the same words (case, spacing and punctuation aside):
"Add 9 and 6." must not be found inside "Add 9 and 61.".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable

from alignment.data.texts import words

Gram = tuple[str, ...]


@dataclass(frozen=True)
class EvalPrompt:
    eval_set: str
    index: int
    """0-based row index in its evaluation set."""
    text: str
    id: str | None = None


@dataclass(frozen=True)
class Overlap:
    prompt: EvalPrompt
    overlap: float
    """Share of the prompt's counted n-grams found in the training row (1.0 = copied whole)."""


def ngrams(tokens: list[str], n: int) -> set[Gram]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class ContaminationIndex:
    """An index of evaluation-prompt n-grams; `find(row_text)` names the prompts a row overlaps."""

    def __init__(
        self,
        prompts: Iterable[EvalPrompt],
        n: int = 10,
        min_overlap: float = 0.8,
        template_fraction: float = 0.02,
        min_df: int = 3,
    ):
        if n < 1 or not 0.0 < min_overlap <= 1.0:
            raise ValueError(f"contamination needs n >= 1 and min_overlap in (0, 1], got n={n}, min_overlap={min_overlap}")
        self.n, self.min_overlap = n, min_overlap
        self.prompts = list(prompts)
        grams = [ngrams(words(p.text), n) for p in self.prompts]
        df = Counter(g for gs in grams for g in gs)
        max_df = max(min_df, int(template_fraction * len(self.prompts)))
        self._long: dict[Gram, list[int]] = defaultdict(list)  # n-gram -> prompts (by position)
        self._short: dict[Gram, list[int]] = defaultdict(list)  # whole short prompt -> prompts
        self._counted = [0] * len(self.prompts)
        self.undetectable = 0
        for i, (p, gs) in enumerate(zip(self.prompts, grams)):
            if not gs:
                continue
            if len(words(p.text)) < n:
                self._short[next(iter(gs))].append(i)
                self._counted[i] = 1
                continue
            kept = [g for g in gs if df[g] <= max_df]
            if not kept:  # all wording, no content: cannot be told apart from its siblings
                self.undetectable += 1
            for g in kept:
                self._long[g].append(i)
            self._counted[i] = len(kept)

    def find(self, text: str, instructions: Iterable[str] = ()) -> list[Overlap]:
        """Evaluation prompts that `text` overlaps, best first.

        The data stage passes a training row's prompt turns: evaluation prompts leak into
        instructions, and leaving the responses out makes the check several times cheaper.

        `instructions` are the row's user turns, compared whole against short prompts.
        """
        hits: Counter[int] = Counter()
        if self._long:
            for g in ngrams(words(text), self.n):
                for i in self._long.get(g, ()):
                    hits[i] += 1
        found = [Overlap(self.prompts[i], c / self._counted[i]) for i, c in hits.items() if c / self._counted[i] >= self.min_overlap]
        if self._short:
            for instruction in instructions:
                for i in self._short.get(tuple(words(instruction)), ()):
                    found.append(Overlap(self.prompts[i], 1.0))
        return sorted(found, key=lambda o: (-o.overlap, o.prompt.eval_set, o.prompt.index))
