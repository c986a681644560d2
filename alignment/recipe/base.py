"""The shape every recipe section shares.

Sections are plain dataclasses, like TRL's `*Config` classes, so that Python users can build
them directly. Each field carries its help text in `metadata["help"]`, and a numeric field its
valid range in `metadata["range"]` (alignment/recipe/ranges.py). Validation (types, unknown
keys) is done by pydantic when a recipe is loaded, ranges right after; `extra="forbid"` is
what turns a typo in a YAML key into an error instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pydantic import ConfigDict

from alignment.recipe.ranges import ANY, Range


def option(default: Any = dataclasses.MISSING, help: str = "", *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, also: tuple = (), unbounded: bool = False,
           **kwargs: Any) -> Any:
    """A dataclass field with its help text and, for a number, its valid range.

    `gt/ge/lt/le` bound the value, `also` lists sentinel values allowed outside the bounds
    (`max_steps=-1`: use epochs), and `unbounded=True` says on purpose that any finite number
    is valid. Mutable defaults are copied per instance.
    """
    metadata: dict[str, Any] = {"help": help}
    if unbounded:
        metadata["range"] = ANY
    elif any(b is not None for b in (gt, ge, lt, le)) or also:
        metadata["range"] = Range(gt=gt, ge=ge, lt=lt, le=le, also=tuple(also))
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class Section:
    """Base of every recipe section: unknown keys are errors, types are checked strictly."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=False, validate_default=True)

    def cross_checks(self) -> list[tuple[tuple[str, ...], str]]:
        """((fields involved, the one to name first), what is wrong) for rules that tie several of
        this section's options together."""
        return []
