"""The cleaning filters of `data.filters`, and the manifest entry each decision leaves.

A filter sees batches of rows in source order and either leaves a row alone, changes it
(repair, redaction) or drops it; every change and every drop becomes one manifest entry
naming the source, the row, the filter and the reason. Filters run in the fixed order of
`FILTER_ORDER`: repairs first (so that a repaired row can still be recognised as a
duplicate), deduplication last (so that the copy that survives is the first one that passed
every other filter).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

from alignment.data.contamination import ContaminationIndex
from alignment.data.dedup import ExactDeduper, NearDeduper
from alignment.data.defects import (
    has_control_chars,
    has_mojibake,
    pii_spans,
    redact_pii,
    repair_encoding,
    row_response_defects,
)
from alignment.data.lengths import TokenCounter
from alignment.data.rows import Kind
from alignment.data.sources import validate_structure
from alignment.data.texts import content_key, joined_text, map_text_fields, normalize, row_text, text_fields
from alignment.errors import DataError, UserError
from alignment.recipe.data import (
    FILTER_ORDER,
    EchoFilter,
    EmptyFilter,
    EncodingFilter,
    ExactDedupFilter,
    FiltersConfig,
    LengthFilter,
    NearDedupFilter,
    PIIFilter,
    PredicateFilter,
)


@dataclass
class Item:
    """One row on its way through the filters."""

    dataset: str
    """'sft' or 'preference'."""
    source: str
    row_number: int
    """1-based position in its source."""
    id: Optional[str]
    row: dict
    dropped: bool = False

    def entry(self, filter_name: str, action: str, reason: str, fields_: list[str] | None = None) -> dict:
        out = {"dataset": self.dataset, "source": self.source, "row": self.row_number}
        if self.id is not None:
            out["id"] = self.id
        out.update({"filter": filter_name, "action": action, "reason": reason})
        if fields_:
            out["fields"] = fields_
        meta = self.row.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("provenance"), dict):
            out["provenance"] = meta["provenance"]  # generated rows (Self-Instruct) say where they came from
        return out


class Filter:
    """Base: `apply(items, kind)` drops or changes items in place and returns manifest entries."""

    name = ""

    def apply(self, items: list[Item], kind: Kind) -> list[dict]:
        out = []
        for item in items:
            if not item.dropped:
                entry = self.one(item, kind)
                if entry is not None:
                    out.append(entry)
        return out

    def one(self, item: Item, kind: Kind) -> Optional[dict]:
        raise NotImplementedError

    def drop(self, item: Item, reason: str) -> dict:
        item.dropped = True
        return item.entry(self.name, "drop", reason)


class Encoding(Filter):
    name = "encoding"

    def __init__(self, cfg: EncodingFilter):
        self.cfg = cfg

    def one(self, item, kind):
        damaged = [f for f, t in text_fields(item.row, kind) if has_mojibake(t) or has_control_chars(t)]
        if not damaged:
            return None
        if self.cfg.action == "drop":
            return self.drop(item, f"mojibake or control characters in {', '.join(damaged)}")
        if any("\ufffd" in t for _, t in text_fields(item.row, kind)):
            return self.drop(item, "U+FFFD replacement characters: the original bytes were lost and cannot be repaired")
        item.row, changed = map_text_fields(item.row, kind, repair_encoding)
        return item.entry(self.name, "change", "mojibake undone (ftfy) and control characters removed", changed)


class PII(Filter):
    name = "pii"

    def __init__(self, cfg: PIIFilter):
        self.cfg, self.kinds = cfg, tuple(cfg.kinds)

    def one(self, item, kind):
        found = sorted({k for _, t in text_fields(item.row, kind) for _, _, k in pii_spans(t, self.kinds)})
        if not found:
            return None
        if self.cfg.action == "drop":
            return self.drop(item, f"PII: {', '.join(found)}")
        item.row, changed = map_text_fields(item.row, kind, lambda t: redact_pii(t, self.kinds))
        return item.entry(self.name, "change", f"PII redacted: {', '.join(found)}", changed)


class Empty(Filter):
    name = "empty"

    def __init__(self, cfg: EmptyFilter):
        self.kinds = {"empty"} | ({"trivial"} if cfg.trivial else set()) | ({"refusal"} if cfg.refusals else set())

    def one(self, item, kind):
        bad = [f for f in row_response_defects(item.row, kind, echo_threshold=2.0) if f.kind in self.kinds]
        if bad:
            return self.drop(item, f"{bad[0].kind} response in {bad[0].field}")
        return None


class Echo(Filter):
    name = "echo"

    def __init__(self, cfg: EchoFilter):
        self.threshold = cfg.threshold

    def one(self, item, kind):
        bad = [f for f in row_response_defects(item.row, kind, self.threshold) if f.kind == "echo"]
        return self.drop(item, f"{bad[0].field} echoes the instruction ({bad[0].detail})") if bad else None


class Length(Filter):
    name = "length"

    def __init__(self, cfg: LengthFilter, counter: TokenCounter):
        self.cfg, self.counter = cfg, counter
        self.max_tokens = cfg.max_tokens if cfg.max_tokens is not None else counter.max_length

    def apply(self, items, kind):
        alive = [it for it in items if not it.dropped]
        out = []
        for item, n in zip(alive, self.counter.count([it.row for it in alive], kind) if alive else []):
            if n.total > self.max_tokens:
                out.append(self.drop(item, f"{n.total} tokens > max {self.max_tokens}"))
            elif n.total < self.cfg.min_tokens:
                out.append(self.drop(item, f"{n.total} tokens < min {self.cfg.min_tokens}"))
            elif n.response < self.cfg.min_response_tokens:
                out.append(self.drop(item, f"response of {n.response} tokens < min {self.cfg.min_response_tokens}"))
        return out


class Decontaminate(Filter):
    name = "decontaminate"

    def __init__(self, index: ContaminationIndex):
        self.index = index

    def one(self, item, kind):
        text = row_text(item.row, kind)
        instructions = [m["content"] for m in text.prompt_messages if m["role"] == "user"]
        hits = self.index.find("\n".join(m["content"] for m in text.prompt_messages), instructions)
        if not hits:
            return None
        p = hits[0].prompt
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        named = f"{p.eval_set} row {p.index + 1}" + (f" ({p.id})" if p.id else "")
        return self.drop(item, f"overlaps {hits[0].overlap:.2f} of the n-grams of {named}{more}")


def import_predicate(path: str) -> Callable[[dict], Any]:
    """`package.module:function` -> the function, or a UserError saying what is wrong with the path."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"data.filters.predicate.function: {path!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"data.filters.predicate.function: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"data.filters.predicate.function: module {module_name!r} has no function {attr!r}")
    return fn


class Predicate(Filter):
    name = "predicate"

    def __init__(self, cfg: PredicateFilter):
        self.path, self.fn = cfg.function, import_predicate(cfg.function)

    def one(self, item, kind):
        try:
            keep = self.fn(item.row)
        except Exception as err:  # the user's code: name the row it failed on
            raise DataError(f"{item.source}: row {item.row_number}: predicate {self.path} raised {type(err).__name__}: {err}") from None
        if not isinstance(keep, bool):
            raise DataError(
                f"{item.source}: row {item.row_number}: predicate {self.path} returned {type(keep).__name__}, expected True (keep) or False (drop)"
            )
        return None if keep else self.drop(item, f"{self.path} returned False")


class ExactDedup(Filter):
    name = "exact_dedup"

    def __init__(self, cfg: ExactDedupFilter):
        self.normalize = cfg.normalize
        self.seen = ExactDeduper()

    def one(self, item, kind):
        key = content_key(item.row, kind)
        earlier = self.seen.check((item.source, item.row_number), normalize(key) if self.normalize else key)
        return None if earlier is None else self.drop(item, f"exact duplicate of {earlier[0]} row {earlier[1]}")


class NearDedup(Filter):
    name = "near_dedup"

    def __init__(self, cfg: NearDedupFilter):
        self.index = NearDeduper(cfg.threshold, cfg.num_perm, cfg.ngram, cfg.seed)

    def one(self, item, kind):
        match = self.index.check((item.source, item.row_number), joined_text(item.row, kind))
        if match is None:
            return None
        (source, row), similarity = match
        return self.drop(item, f"near duplicate ({similarity:.2f} estimated Jaccard) of {source} row {row}")


def as_filters_config(filters: FiltersConfig | dict) -> FiltersConfig:
    """A FiltersConfig from a config or a plain dict (Python users); unknown names are errors."""
    if isinstance(filters, FiltersConfig):
        return filters
    known = {f.name: f.type for f in fields(FiltersConfig)}
    unknown = [name for name in filters if name not in known]
    if unknown:
        raise UserError(f"data.filters: unknown filter {unknown[0]!r}; known filters: {', '.join(FILTER_ORDER)}")
    from pydantic import TypeAdapter, ValidationError

    merged = {name: None for name in known} | dict(filters)
    try:
        return TypeAdapter(FiltersConfig).validate_python(merged)
    except ValidationError as err:
        e = err.errors()[0]
        raise UserError(f"data.filters.{'.'.join(map(str, e['loc']))}: {e['msg']}") from None


def build_filters(
    filters: FiltersConfig | dict,
    counter: Optional[TokenCounter] = None,
    contamination: Optional[ContaminationIndex] = None,
) -> list[Filter]:
    """The enabled filters, in FILTER_ORDER, each with its settings."""
    cfg = as_filters_config(filters)
    out: list[Filter] = []
    for name in FILTER_ORDER:
        settings = getattr(cfg, name)
        if settings is None:
            continue
        if name == "encoding":
            out.append(Encoding(settings))
        elif name == "pii":
            out.append(PII(settings))
        elif name == "empty":
            out.append(Empty(settings))
        elif name == "echo":
            out.append(Echo(settings))
        elif name == "length":
            if counter is None:
                raise UserError("data.filters.length needs the policy's tokenizer")
            out.append(Length(settings, counter))
        elif name == "decontaminate":
            if contamination is None:
                raise UserError("data.filters.decontaminate needs the evaluation prompt sets")
            out.append(Decontaminate(contamination))
        elif name == "predicate":
            out.append(Predicate(settings))
        elif name == "exact_dedup":
            out.append(ExactDedup(settings))
        elif name == "near_dedup":
            out.append(NearDedup(settings))
    return out


def run_filters(filters: list[Filter], items: list[Item], kind: Kind) -> list[dict]:
    """Pass one batch through every filter; returns the manifest entries, in filter order per row."""
    entries = []
    for f in filters:
        entries += f.apply(items, kind)
    for item in items:
        if not item.dropped:  # a repair must never produce an invalid row
            validate_structure(item.row, kind, item.source, item.row_number - 1)
    entries.sort(key=lambda e: (e["row"], FILTER_ORDER.index(e["filter"])))
    return entries
