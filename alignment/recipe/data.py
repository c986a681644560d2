"""Where training data comes from, how it is cleaned, and how sources are mixed.

A source path is a file (JSONL, Parquet), a saved `datasets` folder, or `suite:<split>` for
a split of the offline task suite that the run generates (see alignment/suite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from alignment.recipe.base import Section, option


@dataclass
class SourceConfig(Section):
    path: str = option(help="File, datasets folder, or suite:<split>.")
    name: Optional[str] = option(None, help="Label used in reports; defaults to the file name.")
    weight: Optional[float] = option(None, help="Mixing weight (mixing.strategy='weights').")
    max_rows: Optional[int] = option(None, help="Cap on rows taken from this source.")


@dataclass
class MixingConfig(Section):
    strategy: Literal["proportional", "temperature", "weights"] = option(
        "proportional", help="Examples-proportional (with cap), temperature-scaled, or explicit weights."
    )
    cap: Optional[int] = option(None, help="Per-source row cap for examples-proportional mixing.")
    temperature: float = option(1.0, help="Temperature for temperature-scaled mixing.")
    total_rows: Optional[int] = option(None, help="Rows in the mixture; default: all that the strategy allows.")
    curriculum: Optional[str] = option(None, help="Order easy-to-hard by this key ('length' or a metadata column).")


@dataclass
class DataConfig(Section):
    sources: list[SourceConfig] = option(
        [SourceConfig(path="suite:sft")], help="SFT demonstration sources."
    )
    preference_sources: list[SourceConfig] = option(
        [], help="Extra preference or ranking files for the reward model and DPO."
    )
    eval_sets: list[str] = option(
        ["suite:eval_seen", "suite:eval_heldout_family", "suite:eval_heldout_phrasing"],
        help="Evaluation prompt sets; training rows overlapping them are contamination.",
    )
    filters: dict[str, Any] = option({}, help="Cleaning filters by name with their settings.")
    mixing: MixingConfig = option(MixingConfig(), help="How sources are combined.")
    eval_fraction: float = option(0.05, help="Share of SFT rows kept for the eval-loss split.")
