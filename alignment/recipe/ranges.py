"""Valid ranges of numeric recipe options, and the check that refuses a value outside them.

A range is declared next to the option's help (`option(0.1, help=..., ge=0)`) and stored in
the field's metadata, so the schema says what a value may be, and a bad value is refused when
the recipe is loaded, naming key, value and range, instead of reaching torch or a trainer
after a model has loaded. Rules that tie several options of one section together (PPO's
divisibility of batch sizes) are a section's `cross_checks()`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Iterator, Optional


@dataclass(frozen=True)
class Range:
    """Bounds on a number (each optional), plus sentinel values allowed outside them (`-1`: off)."""

    gt: Optional[float] = None
    ge: Optional[float] = None
    lt: Optional[float] = None
    le: Optional[float] = None
    also: tuple = ()

    def allows(self, value: float) -> bool:
        if value in self.also:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def __str__(self) -> str:
        low = f"> {_num(self.gt)}" if self.gt is not None else f">= {_num(self.ge)}" if self.ge is not None else ""
        high = f"< {_num(self.lt)}" if self.lt is not None else f"<= {_num(self.le)}" if self.le is not None else ""
        if low and high:
            left = "(" if self.gt is not None else "["
            right = ")" if self.lt is not None else "]"
            lo = self.gt if self.gt is not None else self.ge
            hi = self.lt if self.lt is not None else self.le
            text = f"in {left}{_num(lo)}, {_num(hi)}{right}"
        else:
            text = low or high or "any finite number"
        return text + "".join(f" or {_num(v)}" for v in self.also)


ANY = Range()  # a number with no natural bound (a score, a penalty): declared, so it is not an oversight


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def numeric_kind(annotation: Any) -> bool:
    """True for int/float options, also inside Optional[...] and list[...] (never for bool)."""
    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is dict:  # {round: overrides}: keys are checked where they are read
        return False
    return any(numeric_kind(arg) for arg in typing.get_args(annotation))


def numeric_fields(section: type) -> Iterator[dataclasses.Field]:
    """The fields of a section class whose values are numbers."""
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):
        if numeric_kind(hints[f.name]):
            yield f


def out_of_range(section: Any, prefix: str = "") -> list[tuple[tuple[str, ...], str]]:
    """(dotted keys, what is wrong) for every value of a validated recipe outside its range.

    The first key is the one to name; the others are the options a cross-section rule also
    involves (so that the error can say a command-line override caused it).
    """
    problems: list[tuple[tuple[str, ...], str]] = []
    numeric = {f.name for f in numeric_fields(type(section))}
    for f in dataclasses.fields(section):
        key, value = prefix + f.name, getattr(section, f.name)
        if f.name in numeric:
            declared = f.metadata.get("range")
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                if v is not None and declared is not None and not declared.allows(v):
                    where = f"{key}.{i}" if isinstance(value, list) else key
                    problems.append(((where,), f"{v!r} is out of range (allowed: {declared})"))
            continue
        for i, child in enumerate(value if isinstance(value, list) else [value]):
            if dataclasses.is_dataclass(child):
                problems += out_of_range(child, f"{key}.{i}." if isinstance(value, list) else key + ".")
    if not problems and hasattr(section, "cross_checks"):
        problems += [(tuple(prefix + k for k in keys), message) for keys, message in section.cross_checks()]
    return problems
