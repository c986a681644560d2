"""The shape every recipe section shares.

Sections are plain dataclasses, like TRL's `*Config` classes, so that Python users can build
them directly. Each field carries its help text in `metadata["help"]`. Validation (types,
unknown keys) is done by pydantic when a recipe is loaded; `extra="forbid"` is what turns a
typo in a YAML key into an error instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pydantic import ConfigDict


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with its help text; mutable defaults are copied per instance."""
    metadata = {"help": help}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class Section:
    """Base of every recipe section: unknown keys are errors, types are checked strictly."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=False, validate_default=True)
