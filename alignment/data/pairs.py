"""Preference pairs that can be trained on: one check for every stage that reads them.

A pair whose chosen or rejected response is empty, or whose two responses are the same text,
orders nothing: the reward model's Bradley–Terry loss and DPO's loss are both a function of
the difference between the two sides, which is zero (or meaningless) there. Such rows are
dropped, never silently: each stage that reads pairs (reward, DPO, and any later one) goes
through `usable_pairs` and prints the same line per file, `<stage>: <file>: dropped N of M
pairs: <count> <reason>, ...`, and keeps the counts in its metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

EMPTY_CHOSEN = "empty chosen"
EMPTY_REJECTED = "empty rejected"
IDENTICAL = "identical chosen and rejected"


def pair_problem(row: dict) -> str | None:
    """Why a preference row cannot be trained on, or None when it can."""
    chosen, rejected = str(row.get("chosen") or "").strip(), str(row.get("rejected") or "").strip()
    if not chosen:
        return EMPTY_CHOSEN
    if not rejected:
        return EMPTY_REJECTED
    if chosen == rejected:
        return IDENTICAL
    return None


@dataclass
class PairDrops:
    """Pairs read and pairs dropped (by reason), per source file."""

    read: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)

    def add(self, source: str, reason: str) -> None:
        self.dropped.setdefault(source, Counter())[reason] += 1

    def total(self) -> Counter:
        """Drops by reason over every source."""
        return sum(self.dropped.values(), Counter())

    def lines(self, stage: str) -> list[str]:
        """One line per source that lost pairs: `<stage>: <file>: dropped N of M pairs: 2 empty chosen, ...`."""
        out = []
        for source, reasons in self.dropped.items():
            parts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
            out.append(f"{stage}: {source}: dropped {sum(reasons.values())} of {self.read[source]} pairs: {parts}")
        return out

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {source: dict(reasons) for source, reasons in self.dropped.items()}


def usable_pairs(rows: Iterable[dict], source: str, drops: PairDrops | None = None) -> tuple[list[dict], PairDrops]:
    """The rows of `source` that can be trained on; the others are counted in `drops` by reason."""
    drops = drops if drops is not None else PairDrops()
    kept = []
    for row in rows:
        drops.read[source] += 1
        problem = pair_problem(row)
        if problem is None:
            kept.append(row)
        else:
            drops.add(source, problem)
    return kept, drops
