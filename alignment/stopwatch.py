"""Where a stage's wall time goes: the seconds between named laps.

A stage's total wall time says how long it took, not why. The reward stage, for one, spends
about half its time outside training (scoring the normalisation set and the held-out pairs,
sampling and scoring the gold test, saving), and which of those costs the most decides what
to make cheaper. Its `metrics.json` carries each phase's seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Stopwatch:
    """`lap(name)` books the seconds since the previous lap (or the start) under `name`;
    a name booked twice accumulates."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = {}
        self._now = now
        self._last = now()

    def lap(self, name: str) -> float:
        now = self._now()
        elapsed, self._last = now - self._last, now
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        return elapsed

    @property
    def total(self) -> float:
        """Seconds from the start to the last lap."""
        return sum(self.seconds.values())

    def rounded(self, digits: int = 1) -> dict[str, float]:
        return {name: round(s, digits) for name, s in self.seconds.items()}
