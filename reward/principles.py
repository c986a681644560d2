"""Principles: what an AI annotator judges by and what critique-and-revise asks for.

A principles file is a YAML list; each entry names one principle and carries the three
texts the two AI-feedback methods need (Constitutional AI, Bai et al. 2022):

    - name: correct
      description: Prefer the response that does the task correctly.        # the judge's prompt
      critique: Is the answer to the request above correct? ...             # critique request
      revision: Rewrite the answer so that it is correct. ...               # revision request

`configs/principles/helpful_harmless.yaml` is the one the recipes use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from alignment.data.files import read_yaml
from alignment.errors import UserError

FIELDS = ("name", "description", "critique", "revision")


@dataclass(frozen=True)
class Principle:
    name: str
    description: str
    critique: str
    revision: str

    def as_dict(self) -> dict:
        return asdict(self)


def load_principles(path: str | Path) -> list[Principle]:
    """Every principle of the file; a missing file, a missing field or an unknown one is an error
    that names the file and the entry."""
    entries = read_yaml(path, "principles file")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: expected a non-empty YAML list of principles")
    out, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: principle {i + 1}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a mapping with {', '.join(FIELDS)}")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
        for field in FIELDS:
            if not isinstance(entry.get(field), str) or not entry[field].strip():
                raise UserError(f"{where}: field {field!r}: missing or empty")
        if entry["name"] in names:
            raise UserError(f"{where}: name {entry['name']!r} is used twice")
        names.add(entry["name"])
        out.append(Principle(**{f: entry[f].strip() for f in FIELDS}))
    return out


def sample_principles(principles: Sequence[Principle], k: int, rng: np.random.Generator) -> list[Principle]:
    """k distinct principles (all of them when k >= their number), in a seeded random order."""
    order = rng.permutation(len(principles))[: min(k, len(principles))]
    return [principles[int(i)] for i in order]
