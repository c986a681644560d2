"""Where training data comes from, how it is cleaned, and how sources are mixed.

A source path is a file (JSONL, Parquet), a saved `datasets` folder, or `suite:<split>` for
a split of the offline task suite that the run generates (see alignment/suite).

Filters are named sections under `data.filters`; a filter is on when its section is present
(`near_dedup: {}` takes the defaults) and off when it is `null`. They always run in the
order of `FILTER_ORDER` (repair text first, drop bad rows next, deduplicate last, so that the
first copy of a duplicate is the one that survives), whatever their order in the YAML. A
name that is not a filter is an unknown key, reported with the recipe file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from alignment.recipe.base import Section, option

FILTER_ORDER = ["encoding", "pii", "empty", "echo", "length", "decontaminate", "predicate", "exact_dedup", "near_dedup"]
PII_KINDS = ["email", "phone", "card", "api_key"]


@dataclass
class SourceConfig(Section):
    path: str = option(help="File, datasets folder, or suite:<split>.")
    name: Optional[str] = option(None, help="Label used in reports; defaults to the file name.")
    weight: Optional[float] = option(None, help="Mixing weight (mixing.strategy='weights').", ge=0)
    max_rows: Optional[int] = option(None, help="Cap on rows taken from this source.", ge=1)


@dataclass
class MixingConfig(Section):
    strategy: Literal["proportional", "temperature", "weights"] = option(
        "proportional", help="Examples-proportional (with cap), temperature-scaled, or explicit weights."
    )
    cap: Optional[int] = option(None, help="Per-source row cap for examples-proportional mixing.", ge=1)
    temperature: float = option(1.0, help="Temperature for temperature-scaled mixing.", gt=0)
    total_rows: Optional[int] = option(None, help="Rows in the mixture; default: all that the strategy allows.", ge=1)
    curriculum: Optional[str] = option(None, help="Order easy-to-hard by this key ('length' or a metadata column).")
    seed: Optional[int] = option(None, help="Seed for which rows are sampled and how sources interleave; default: the recipe's seed.", ge=0)


@dataclass
class EncodingFilter(Section):
    action: Literal["repair", "drop"] = option(
        "repair", help="'repair': undo mojibake with ftfy and delete control characters; 'drop': remove the row."
    )


@dataclass
class PIIFilter(Section):
    action: Literal["redact", "drop"] = option("redact", help="'redact': replace with [EMAIL], [PHONE]...; 'drop' the row.")
    kinds: list[Literal["email", "phone", "card", "api_key"]] = option(list(PII_KINDS), help="Which kinds of PII.")


@dataclass
class EmptyFilter(Section):
    trivial: bool = option(True, help="Also drop responses with no letter or digit, or a filler such as 'ok'.")
    refusals: bool = option(False, help="Also drop refusal-only responses (keep off when refusals are wanted, e.g. safety data).")


@dataclass
class EchoFilter(Section):
    threshold: float = option(0.9, help="Word-sequence similarity to the instruction at which a response is an echo.", ge=0, le=1)


@dataclass
class LengthFilter(Section):
    min_tokens: int = option(0, help="Drop rows whose templated conversation has fewer tokens.", ge=0)
    max_tokens: Optional[int] = option(None, help="Drop rows with more tokens; default: model.max_length (rows that would be truncated).", ge=1)
    min_response_tokens: int = option(0, help="Drop rows whose response has fewer tokens.", ge=0)


@dataclass
class DecontaminateFilter(Section):
    n: int = option(10, help="Word n-gram size; prompts shorter than n words must match a training instruction exactly.", ge=1)
    min_overlap: float = option(
        0.8, help="Share of an evaluation prompt's n-grams a training row must contain to be contaminated (1.0 = verbatim).", gt=0, le=1,
    )
    template_fraction: float = option(
        0.02, help="n-grams in more than this share of evaluation prompts are instruction wording and ignored.", ge=0, le=1,
    )
    eval_sets: Optional[list[str]] = option(None, help="Prompt sets to check against; default: data.eval_sets plus eval.prompts.")


@dataclass
class PredicateFilter(Section):
    function: str = option(help="Import path 'package.module:function'; called with each row, keeps it when it returns True.")


@dataclass
class ExactDedupFilter(Section):
    normalize: bool = option(False, help="Compare texts ignoring case and whitespace.")


@dataclass
class NearDedupFilter(Section):
    threshold: float = option(0.8, help="Estimated Jaccard similarity of word n-gram shingles at which rows are near-duplicates.", ge=0, le=1)
    ngram: int = option(3, help="Words per shingle.", ge=1)
    num_perm: int = option(128, help="MinHash permutations (accuracy vs speed).", ge=1)
    seed: int = option(1, help="MinHash seed.", ge=0)


@dataclass
class FiltersConfig(Section):
    encoding: Optional[EncodingFilter] = option(EncodingFilter(), help="Mojibake and control characters.")
    pii: Optional[PIIFilter] = option(None, help="E-mails, phone numbers, Luhn-valid card numbers, API-key-like tokens.")
    empty: Optional[EmptyFilter] = option(EmptyFilter(), help="Empty, trivial (and optionally refusal-only) responses.")
    echo: Optional[EchoFilter] = option(EchoFilter(), help="Responses that repeat the instruction.")
    length: Optional[LengthFilter] = option(None, help="Token-length bounds under the policy's tokenizer.")
    decontaminate: Optional[DecontaminateFilter] = option(
        DecontaminateFilter(), help="Rows overlapping an evaluation prompt."
    )
    predicate: Optional[PredicateFilter] = option(None, help="Your own keep/drop function.")
    exact_dedup: Optional[ExactDedupFilter] = option(ExactDedupFilter(), help="Exact duplicates (first copy kept).")
    near_dedup: Optional[NearDedupFilter] = option(None, help="MinHash-LSH near-duplicates (first copy kept).")


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
    filters: FiltersConfig = option(FiltersConfig(), help="Cleaning filters; each is on when present, off when null.")
    mixing: MixingConfig = option(MixingConfig(), help="How sources are combined.")
    eval_fraction: float = option(0.05, help="Share of SFT rows kept for the eval-loss split.", ge=0, lt=1)
    category_key: Optional[str] = option(
        None, help="Row column naming the task category (dotted for nested, e.g. metadata.family); default: the first of category, metadata.category, metadata.family."
    )
    report_near_dedup: bool = option(True, help="Count near-duplicates in the report even when the filter is off.")
    report_examples: int = option(5, help="Example rows shown per finding in the report.", ge=0)
    report_plots: bool = option(True, help="Draw the plots of report.html (length histograms, category and findings bars).")
    num_proc: Optional[int] = option(None, help="Worker processes for the per-row checks of `inspect`; default: one per core (at most 8).", ge=1)
