"""Paired bootstrap confidence intervals over prompts.

Every model in a comparison answers the same prompts, so the natural unit of resampling is
the prompt: draw n prompts with replacement, recompute the statistic on *both* models'
scores for those same prompts, and take percentiles of the resampled statistic (Efron &
Tibshirani 1993, ch. 13; Koehn 2004 for its use in comparing systems). Resampling the two
models together keeps the prompt-to-prompt difficulty, which both share, out of the
interval of their difference; that is why a paired CI is much narrower than two separate ones.

A statistic is a function of resampled arrays of shape (B, n) returning (B,) values, so one
vectorised call evaluates all B resamples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile-bootstrap interval [low, high]."""

    value: float
    low: float
    high: float
    n: int

    def covers(self, x: float) -> bool:
        return self.low <= x <= self.high

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Estimate":
        return cls(float(d["value"]), float(d["low"]), float(d["high"]), int(d["n"]))

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@lru_cache(maxsize=32)
def resample_indices(n: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(B, n) prompt indices drawn with replacement; the same draws serve every model.

    Memoised (read-only): a report asks for the same (n, B, seed) draws dozens of times.
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    idx.flags.writeable = False
    return idx


def bootstrap(
    arrays: Sequence[np.ndarray],
    statistic: Statistic,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> Estimate:
    """Percentile bootstrap of `statistic(*arrays)`, resampling all arrays with the same indices.

    `indices` (B, n) replaces the random draws; tests pass every possible resample to compare
    with a distribution worked out by hand.
    """
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"paired arrays differ in length: {[len(a) for a in arrays]}")
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(statistic(*[a[None, :] for a in arrays])[0])
    idx = resample_indices(n, n_resamples, seed) if indices is None else np.asarray(indices)
    dist = statistic(*[a[idx] for a in arrays])
    alpha = 1.0 - confidence
    low, high = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(low), float(high), n)


def mean_stat(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=-1)


def diff_stat(candidate: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    return candidate.mean(axis=-1) - baseline.mean(axis=-1)


def mean_ci(values: np.ndarray, **kwargs) -> Estimate:
    """Mean over prompts with its bootstrap CI (one model on its own)."""
    return bootstrap([values], mean_stat, **kwargs)


def paired_difference(candidate: np.ndarray, baseline: np.ndarray, **kwargs) -> Estimate:
    """mean(candidate) - mean(baseline) over the same prompts, with its paired bootstrap CI."""
    return bootstrap([candidate, baseline], diff_stat, **kwargs)
