"""Generating the suite's splits from a seed.

Everything comes from `random.Random` instances seeded from `(seed, split)`, never from
global state, so a seed gives byte-identical files. Evaluation splits are drawn first and
their prompts reserved, so that (a) no training prompt ever equals an evaluation prompt and
(b) the evaluation sets of a seed do not change when `n_sft` or `n_prompts` change.

What is held out, and where it appears:

| split | families | phrasings | constraint pairs |
| --- | --- | --- | --- |
| `sft`, `prompts` | seen | training | not held out |
| `eval_seen` | seen | training | not held out |
| `eval_heldout_family` | held out | all | not held out |
| `eval_heldout_phrasing` | seen | held out | not held out |
| `eval_heldout_constraints` | seen | training | a held-out pair |
| `safety` | safety requests (refuse / comply) | all | none |
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from alignment.errors import UserError
from alignment.recipe.suite import SuiteConfig
from alignment.suite import safety
from alignment.suite.constraints import CONSTRAINTS, complete
from alignment.suite.demos import corrupt
from alignment.suite.families import FAMILIES, Family
from alignment.suite.layout import layout_for, words_of

TRAIN_SPLITS: tuple[str, ...] = ("sft", "prompts")
EVAL_SPLITS: tuple[str, ...] = (
    "eval_seen", "eval_heldout_family", "eval_heldout_phrasing", "eval_heldout_constraints", "safety",
)
SPLITS: tuple[str, ...] = TRAIN_SPLITS + EVAL_SPLITS


@dataclass(frozen=True)
class Plan:
    """What each split may draw from, derived (and validated) from the suite config."""

    seen: tuple[str, ...]
    heldout: tuple[str, ...]
    heldout_phrasings: int
    heldout_pairs: tuple[frozenset[str], ...]

    def train_phrasings(self, family: Family) -> int:
        return len(family.phrasings) - self.heldout_phrasings


def make_plan(config: SuiteConfig) -> Plan:
    for name in config.heldout_families:
        if name not in FAMILIES:
            raise UserError(f"suite.heldout_families: unknown family {name!r} (known: {', '.join(FAMILIES)})")
    seen = tuple(name for name in FAMILIES if name not in config.heldout_families)
    if not seen:
        raise UserError("suite.heldout_families: every family is held out; training needs at least one")
    fewest = min(len(FAMILIES[name].phrasings) for name in seen)
    if not 0 <= config.heldout_phrasings < fewest:
        raise UserError(f"suite.heldout_phrasings: must be between 0 and {fewest - 1}, got {config.heldout_phrasings}")
    pairs = []
    for pair in config.heldout_constraint_pairs:
        if len(set(pair)) != 2 or any(t not in CONSTRAINTS for t in pair):
            raise UserError(
                f"suite.heldout_constraint_pairs: {pair!r} is not a pair of constraint types ({', '.join(CONSTRAINTS)})"
            )
        pairs.append(frozenset(pair))
    if not 0 <= config.demo_error_rate <= 1:
        raise UserError(f"suite.demo_error_rate: must be in [0, 1], got {config.demo_error_rate}")
    if not 0 <= config.safety_fraction <= 1:
        raise UserError(f"suite.safety_fraction: must be in [0, 1], got {config.safety_fraction}")
    return Plan(seen, tuple(config.heldout_families), config.heldout_phrasings, tuple(pairs))


@dataclass
class Item:
    """A prompt with its spec and correct layout, before it becomes a row."""

    prompt: str
    metadata: dict


def _constraints(rng: random.Random, family: Family, plan: Plan, forced: frozenset[str] | None) -> list[dict]:
    types = [name for name, c in CONSTRAINTS.items() if c.applies(family)]
    if forced is not None:
        chosen = rng.sample(sorted(forced), 2)
    else:
        while True:
            chosen = rng.sample(types, min(rng.choice((1, 2)), len(types)))
            if not any(pair <= set(chosen) for pair in plan.heldout_pairs):
                break
    return [CONSTRAINTS[t].sample(rng, family) for t in chosen]


def task_item(
    rng: random.Random, family: Family, phrasing: int, plan: Plan, forced: frozenset[str] | None = None
) -> Item:
    """A task prompt of `family` in `phrasing`, with 1-2 constraints (exactly the `forced` pair if given)."""
    inputs = family.sample_inputs(rng)
    answer = family.answer(inputs)
    constraints = complete(_constraints(rng, family, plan, forced), answer)
    lines = [family.instruction(inputs, phrasing), " ".join(CONSTRAINTS[c["type"]].instruction(c) for c in constraints)]
    metadata = {
        "family": family.name,
        "phrasing": phrasing,
        "constraints": constraints,
        "inputs": inputs,
        "answer": answer,
        "reference": layout_for(answer, constraints).render(),
    }
    return Item("\n".join(lines), metadata)


def safety_item(rng: random.Random, harmful: bool) -> Item:
    prompt, inputs, reference = safety.sample_safety(rng, harmful)
    metadata = {
        "family": safety.REFUSE if harmful else safety.COMPLY,
        "phrasing": inputs.pop("phrasing"),
        "constraints": [],
        "inputs": inputs,
        "answer": words_of(reference),
        "reference": reference,
    }
    return Item(prompt, metadata)


def _draw(n: int, sample: Callable[[], Item], taken: set[str], split: str) -> list[Item]:
    """`n` items whose prompts are new (not in `taken`); reserves them."""
    items: list[Item] = []
    for _ in range(50 * n + 1000):
        if len(items) == n:
            return items
        item = sample()
        if item.prompt not in taken:
            taken.add(item.prompt)
            items.append(item)
    if len(items) < n:
        raise UserError(
            f"suite: could only draw {len(items)} distinct prompts of {n} for split {split!r}; lower the suite.n_* sizes"
        )
    return items


def _sampler(split: str, rng: random.Random, plan: Plan) -> Callable[[], Item] | None:
    """The task-prompt sampler of a split, or None when the config leaves it empty."""

    def seen(phrasings: Callable[[Family], range], pairs: tuple[frozenset[str], ...] = ()) -> Item:
        pair = rng.choice(pairs) if pairs else None
        names = [f for f in plan.seen if pair is None or all(CONSTRAINTS[t].applies(FAMILIES[f]) for t in pair)]
        family = FAMILIES[rng.choice(names)]
        return task_item(rng, family, rng.choice(phrasings(family)), plan, forced=pair)

    def heldout_family() -> Item:
        family = FAMILIES[rng.choice(plan.heldout)]
        return task_item(rng, family, rng.randrange(len(family.phrasings)), plan)

    def training(family: Family) -> range:
        return range(plan.train_phrasings(family))

    def heldout(family: Family) -> range:
        return range(plan.train_phrasings(family), len(family.phrasings))

    if split == "eval_heldout_family":
        return heldout_family if plan.heldout else None
    if split == "eval_heldout_phrasing":
        return (lambda: seen(heldout)) if plan.heldout_phrasings else None
    if split == "eval_heldout_constraints":
        usable = tuple(
            p for p in plan.heldout_pairs if any(all(CONSTRAINTS[t].applies(FAMILIES[f]) for t in p) for f in plan.seen)
        )
        return (lambda: seen(training, usable)) if usable else None
    return lambda: seen(training)


def _rows(split: str, items: list[Item], start: int = 0) -> list[dict]:
    rows = []
    for i, item in enumerate(items):
        metadata = {"id": f"{split}-{start + i:05d}", "split": split, **item.metadata}
        rows.append({"prompt": item.prompt, "metadata": metadata})
    return rows


def generate_suite(config: SuiteConfig, seed: int) -> dict[str, list[dict]]:
    """All splits, as lists of rows (see the module docstring for what each holds)."""
    plan = make_plan(config)
    taken: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split in EVAL_SPLITS:
        rng = random.Random(f"{seed}/{split}")
        if split == "safety":
            items = _draw(config.n_eval, lambda: safety_item(rng, rng.random() < 0.5), taken, split)
        else:
            sample = _sampler(split, rng, plan)
            items = _draw(config.n_eval, sample, taken, split) if sample else []
        splits[split] = _rows(split, items)

    rng = random.Random(f"{seed}/prompts")
    n_safe = round(config.safety_fraction * config.n_prompts)
    items = _draw(config.n_prompts - n_safe, _sampler("prompts", rng, plan), taken, "prompts")
    items += _draw(n_safe, lambda: safety_item(rng, rng.random() < 0.5), taken, "prompts")
    rng.shuffle(items)
    splits["prompts"] = _rows("prompts", items)

    splits["sft"] = _demonstrations(config, seed, plan, taken)
    return {split: splits[split] for split in SPLITS}


def _demonstrations(config: SuiteConfig, seed: int, plan: Plan, taken: set[str]) -> list[dict]:
    """SFT rows: task demonstrations (some corrupted on purpose) and correct safety ones."""
    rng = random.Random(f"{seed}/sft")
    n_safe = round(config.safety_fraction * config.n_sft)
    n_task = config.n_sft - n_safe
    tasks = _draw(n_task, _sampler("sft", rng, plan), taken, "sft")
    corrupted = set(rng.sample(range(n_task), round(config.demo_error_rate * n_task)))
    demos: list[tuple[Item, str, str | None]] = []
    for i, item in enumerate(tasks):
        meta = item.metadata
        layout = layout_for(meta["answer"], meta["constraints"])
        kind = corrupt(layout, FAMILIES[meta["family"]], meta["constraints"], rng) if i in corrupted else None
        demos.append((item, layout.render(), kind))
    for item in _draw(n_safe, lambda: safety_item(rng, rng.random() < 0.5), taken, "sft"):
        demos.append((item, item.metadata["reference"], None))
    rng.shuffle(demos)
    rows = []
    for i, (item, response, kind) in enumerate(demos):
        metadata = {"id": f"sft-{i:05d}", "split": "sft", **item.metadata, "corruption": kind}
        messages = [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": response}]
        rows.append({"messages": messages, "metadata": metadata})
    return rows
