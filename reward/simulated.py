"""Simulated annotators (AlpacaFarm-style, Dubois et al. 2023) for the offline default and tests.

A persona judges two responses by their gold scores g_a, g_b from the suite's checkers:

    P(a ≻ b) = σ((g_a − g_b) / temperature)        (Bradley–Terry on gold utility)

and then, with probability `flip_prob`, reports the opposite (AlpacaFarm used 0.25): the
label noise of a careless or disagreeing human. A ranking of K is Plackett–Luce on the same
utilities (the K-wise generalisation of Bradley–Terry, sampled with the Gumbel-max trick),
reversed whole with probability `flip_prob` (which is the pairwise flip when K = 2).

In a pairwise judgment a persona says "tie" when the two gold scores are within
`tie_margin` of each other (equal, by default), as a careful person does when two responses
are equally right or equally wrong; a tie is never flipped. Without that, the many pairs of
equal gold (two samples that both met every constraint, say) would be labelled by a coin and
train the reward model on pure noise. A ranking has no tie outcome: equal gold there is
ordered by the Gumbel draw, as a person forced to rank would.

Every judgment draws from its own generator seeded by (seed, persona, item key), never from
shared state, so a seed gives the same labels whatever order items are served in, however
many personas run, and on any machine.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def judgment_rng(seed: int, persona: str, key: str) -> np.random.Generator:
    """A generator for one judgment, independent of every other judgment."""
    digest = hashlib.sha256(f"{seed}\x1f{persona}\x1f{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One persona: Bradley–Terry temperature on gold differences and a label-flip rate."""

    name: str
    temperature: float = 0.1
    flip_prob: float = 0.25
    tie_margin: float = 0.0

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"annotator {self.name!r}: temperature must be > 0, got {self.temperature}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"annotator {self.name!r}: needs 0 <= flip_prob <= 1, got {self.flip_prob}")
        if self.tie_margin < 0:
            raise ValueError(f"annotator {self.name!r}: tie_margin must be >= 0, got {self.tie_margin}")

    def is_tie(self, gold_a: float, gold_b: float) -> bool:
        """Whether the persona calls the pair a tie (checked before `prefer_first`)."""
        return abs(gold_a - gold_b) <= self.tie_margin + 1e-9

    def prefer_first(self, gold_a: float, gold_b: float, rng: np.random.Generator) -> bool:
        """Whether the persona reports a ≻ b."""
        first = rng.random() < sigmoid((gold_a - gold_b) / self.temperature)
        flipped = rng.random() < self.flip_prob
        return first != flipped

    def rank(self, golds: Sequence[float], rng: np.random.Generator) -> list[int]:
        """Indices best first: Plackett–Luce on gold / temperature, reversed with flip_prob."""
        utility = np.asarray(golds, dtype=float) / self.temperature + rng.gumbel(size=len(golds))
        order = [int(i) for i in np.argsort(-utility, kind="stable")]
        return order[::-1] if rng.random() < self.flip_prob else order


def personas(configs) -> list[SimulatedAnnotator]:
    """Personas from the recipe's `labels.annotators` (objects with name/temperature/flip_prob)."""
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"labels.annotators: persona names must be distinct, got {names}")
    return [SimulatedAnnotator(c.name, c.temperature, c.flip_prob, c.tie_margin) for c in configs]
