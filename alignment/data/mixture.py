"""How several sources become one training set: the share each gets, and which rows fill it.

Three ways to set the shares r_i of sources with n_i rows (T5, Raffel et al. 2020, sec. 3.5.2;
FLAN, Chung et al. 2022):
- examples-proportional: r_i proportional to min(n_i, K), K the per-source cap, so that one
  huge source cannot crowd out the others;
- temperature-scaled: r_i proportional to min(n_i, K)^(1/T); T = 1 is proportional, larger T
  moves towards equal shares;
- explicit weights: r_i proportional to w_i.

The mixture has N rows (`total_rows`, default the sum of the capped sizes). Counts are
N r_i rounded by largest remainder, so the achieved shares equal the requested ones to
within 1/N rather than only in expectation. A source asked for fewer rows than it has gives
a seeded random subset (its order kept); one asked for more repeats whole passes and then a
random subset, and the report says how many rows were repeats.

Rows from several sources are interleaved by a seeded random merge that draws the next row
from a source with probability proportional to the rows it has left: every prefix of the
file is close to the requested mixture, and nothing needs to be held in memory. A curriculum
instead sorts the whole mixture by a difficulty key, easy first (stable, so ties keep the
merge order); that sort is the one step that holds the mixture in memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from alignment.errors import RecipeError
from alignment.recipe.data import MixingConfig


@dataclass
class SourcePlan:
    name: str
    available: int
    requested_share: float
    rows: int
    """Rows this source contributes to the mixture (repeats included)."""

    @property
    def repeats(self) -> int:
        return max(0, self.rows - self.available)


def largest_remainder(shares: list[float], total: int) -> list[int]:
    """Integer counts summing to `total` that are closest to shares x total (Hamilton's method)."""
    raw = [s * total for s in shares]
    counts = [int(x) for x in raw]
    order = sorted(range(len(shares)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def requested_shares(available: dict[str, int], cfg: MixingConfig, weights: dict[str, Optional[float]]) -> list[float]:
    sizes = [min(n, cfg.cap) if cfg.cap is not None else n for n in available.values()]
    if cfg.strategy == "proportional":
        mass = [float(s) for s in sizes]
    elif cfg.strategy == "temperature":
        if cfg.temperature <= 0:
            raise RecipeError(f"data.mixing.temperature must be > 0, got {cfg.temperature}")
        mass = [s ** (1.0 / cfg.temperature) for s in sizes]
    else:
        missing = [name for name, w in weights.items() if w is None]
        if missing:
            raise RecipeError(f"data.mixing.strategy is 'weights' but source {missing[0]!r} has no weight (data.sources.*.weight)")
        if any(w < 0 for w in weights.values()):
            raise RecipeError("data.sources.*.weight must be >= 0")
        mass = [float(weights[name]) for name in available]
    total = sum(mass)
    if total <= 0:
        raise RecipeError("the mixture is empty: every source has no rows (after cleaning) or weight 0")
    return [m / total for m in mass]


def plan_mixture(available: dict[str, int], cfg: MixingConfig, weights: dict[str, Optional[float]]) -> list[SourcePlan]:
    """How many rows each source contributes."""
    shares = requested_shares(available, cfg, weights)
    sizes = [min(n, cfg.cap) if cfg.cap is not None else n for n in available.values()]
    total = cfg.total_rows if cfg.total_rows is not None else sum(sizes)
    counts = largest_remainder(shares, total)
    for (name, n), k in zip(available.items(), counts):
        if k and not n:
            raise RecipeError(f"source {name!r} has no rows left after cleaning but the mixture asks for {k}")
    return [SourcePlan(name, n, s, k) for (name, n), s, k in zip(available.items(), shares, counts)]


def pick_indices(available: int, rows: int, rng: random.Random) -> list[int]:
    """Which rows of a source fill `rows` slots: whole passes, then a sorted random subset."""
    if available == 0:
        return []
    passes, rest = divmod(rows, available)
    return list(range(available)) * passes + sorted(rng.sample(range(available), rest))


def interleave(streams: dict[str, Iterator[dict]], counts: dict[str, int], rng: random.Random) -> Iterator[tuple[str, dict]]:
    """Merge streams, drawing each next row from a source with probability proportional to its rows left."""
    left = dict(counts)
    names = [n for n in counts if left[n] > 0]
    while names:
        weights = [left[n] for n in names]
        name = rng.choices(names, weights=weights)[0]
        yield name, next(streams[name])
        left[name] -= 1
        if not left[name]:
            names.remove(name)


def achieved(plans: list[SourcePlan]) -> dict:
    """Requested vs achieved share of each source, for the report."""
    total = sum(p.rows for p in plans)
    return {
        p.name: {
            "available": p.available,
            "requested_share": round(p.requested_share, 6),
            "rows": p.rows,
            "achieved_share": round(p.rows / total, 6) if total else 0.0,
            "repeated_rows": p.repeats,
            "left_out_rows": max(0, p.available - p.rows) if p.rows < p.available else 0,
        }
        for p in plans
    }


def curriculum_sort(rows: list[dict], key: Callable[[dict, int], float]) -> list[dict]:
    """Stable sort, easiest first."""
    return [row for _, _, row in sorted(((key(row, i), i, row) for i, row in enumerate(rows)), key=lambda t: (t[0], t[1]))]
