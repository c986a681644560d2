"""One streaming pass over a dataset that finds everything the quality report shows.

For every row, in source order: token lengths (batched), response and text defects,
exact and near duplicates of earlier rows, overlap with evaluation prompts, and, for
comparisons, ties, identical pairs, length bias and annotators. The pass keeps a few
numbers per row and the details of flagged rows only, so its memory grows with the number
of rows, not with their text. `report.py` turns the result into report.json and HTML.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
from tqdm.auto import tqdm

from alignment.data.contamination import ContaminationIndex
from alignment.data.dedup import ExactDeduper, NearDeduper
from alignment.data.defects import Finding, row_defects
from alignment.data.lengths import TokenCounter
from alignment.data.rows import Kind, expand_ranking
from alignment.data.sources import Source, category_of, iter_source, row_id, source_kind
from alignment.data.texts import content_key, field_value, joined_text, normalize, row_text
from alignment.errors import DataError
from alignment.recipe.data import EchoFilter, NearDedupFilter

ANNOTATOR_KEYS = ("labeler", "annotator", "labelers", "metadata.labeler", "metadata.annotator")


@dataclass
class InspectSettings:
    """What the pass looks for; filled from the recipe's filter settings where they are set."""

    echo_threshold: float = EchoFilter().threshold
    near: Optional[NearDedupFilter] = field(default_factory=NearDedupFilter)
    """None: skip near-duplicate detection (the slowest check)."""
    contamination: Optional[ContaminationIndex] = None
    category_key: Optional[str] = None
    exact_normalize: bool = False
    batch_size: int = 1024
    progress: bool = True


@dataclass
class Flagged:
    """A row with at least one finding, named so that a person can find it."""

    source: str
    row: int
    """1-based row number in its source."""
    id: Optional[str]
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"source": self.source, "row": self.row}
        if self.id is not None:
            out["id"] = self.id
        out["findings"] = [{"kind": f.kind, "field": f.field, "detail": f.detail} for f in self.findings]
        return out


@dataclass
class Inspection:
    kind: Kind
    sources: list[dict]
    """name, path, kind and rows of each source."""
    source_index: np.ndarray
    """Per row: index into `sources`."""
    categories: list[str]
    lengths: np.ndarray
    """Per row: instruction, response, total tokens (int32, shape [rows, 3])."""
    max_length: int
    tokenizer: str
    flagged: dict[int, Flagged]
    """Global row position -> its findings (only rows with findings)."""
    preference: Optional[dict]
    settings: dict
    seconds: float = 0.0

    @property
    def n_rows(self) -> int:
        return len(self.categories)

    def rows_with(self, kind: str) -> list[int]:
        """Global positions of the rows that have a finding of `kind`."""
        return [i for i, f in self.flagged.items() if any(x.kind == kind for x in f.findings)]


class _PreferenceStats:
    """Ties, identical pairs, the chosen-is-longer rate and annotator counts over comparison pairs."""

    def __init__(self) -> None:
        self.pairs = self.ties = self.identical = self.chosen_longer = self.chosen_shorter = 0
        self.annotators: Counter[str] = Counter()
        self.responses_per_ranking: Counter[int] = Counter()

    def add(self, row: dict, kind: Kind, response_tokens: tuple[int, ...]) -> list[Finding]:
        findings = []
        if kind == "ranking":
            self.responses_per_ranking[len(row["responses"])] += 1
            pairs = expand_ranking(row)
            lengths = {r: n for r, n in zip(row["responses"], response_tokens)}
            token_pairs = [(lengths[p["chosen"]], lengths[p["rejected"]]) for p in pairs]
        else:
            pairs = [row]
            token_pairs = [(response_tokens[0], response_tokens[1])]
        for pair, (nc, nr) in zip(pairs, token_pairs):
            self.pairs += 1
            if normalize(pair["chosen"]) == normalize(pair["rejected"]):
                self.identical += 1
                findings.append(Finding("identical_pair", "chosen", "chosen and rejected are the same text"))
            elif pair.get("tie") is True or pair.get("margin") == 0:
                self.ties += 1
                findings.append(Finding("tie", "margin", "labelled as a tie"))
            self.chosen_longer += nc > nr
            self.chosen_shorter += nc < nr
        for key in ANNOTATOR_KEYS:
            value = field_value(row, key)
            if value is not None:
                for name in value if isinstance(value, list) else [value]:
                    self.annotators[str(name)] += 1
                break
        return findings

    def summary(self) -> dict:
        decided = self.chosen_longer + self.chosen_shorter
        return {
            "pairs": self.pairs,
            "ties": self.ties,
            "identical_pairs": self.identical,
            "chosen_longer_rate": self.chosen_longer / decided if decided else None,
            "chosen_longer_note": "share of pairs (of those whose lengths differ) where the chosen response has more tokens; far from 0.5 means a length bias a reward model will learn",
            "annotators": dict(self.annotators.most_common()),
            "responses_per_ranking": {str(k): v for k, v in sorted(self.responses_per_ranking.items())},
        }


def _batches(sources: list[Source], kind: Kind, size: int) -> Iterable[list[tuple[int, int, dict]]]:
    batch: list[tuple[int, int, dict]] = []
    for s, source in enumerate(sources):
        for i, row in iter_source(source, kind):
            batch.append((s, i, row))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def sources_kind(sources: list[Source]) -> Kind:
    """The one format shared by all sources; sources of different formats are an error."""
    kinds = {source.name: source_kind(source) for source in sources}
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{name} ({k})" for name, k in kinds.items())
        raise DataError(f"sources of different formats cannot be inspected or mixed together: {listing}")
    return next(iter(kinds.values()))


def inspect_sources(sources: list[Source], counter: TokenCounter, settings: InspectSettings) -> Inspection:
    """Run every check over the rows of `sources`, in order, in one pass."""
    start = time.perf_counter()
    kind = sources_kind(sources)
    exact = ExactDeduper()
    near = (
        NearDeduper(settings.near.threshold, settings.near.num_perm, settings.near.ngram, settings.near.seed)
        if settings.near
        else None
    )
    preference = _PreferenceStats() if kind in ("preference", "ranking") else None
    source_index: list[int] = []
    categories: list[str] = []
    lengths: list[tuple[int, int, int]] = []
    flagged: dict[int, Flagged] = {}
    per_source: Counter[int] = Counter()
    starts: dict[int, int] = {}  # source -> global position of its first row

    def name(pos: int) -> str:
        s = source_index[pos]
        return f"{sources[s].name} row {pos - starts[s] + 1}"

    bar = tqdm(desc="inspect", unit="row", disable=not settings.progress)
    for batch in _batches(sources, kind, settings.batch_size):
        counted = counter.count([row for _, _, row in batch], kind)
        for (s, i, row), n in zip(batch, counted):
            pos = len(categories)
            starts.setdefault(s, pos)
            source_index.append(s)
            categories.append(category_of(row, settings.category_key))
            lengths.append((n.instruction, n.response, n.total))
            per_source[s] += 1
            findings = row_defects(row, kind, settings.echo_threshold)
            if n.total > counter.max_length:
                findings.append(Finding("truncated", "*", f"{n.total} tokens > max_length {counter.max_length}"))
            key = content_key(row, kind)
            earlier = exact.check(pos, normalize(key) if settings.exact_normalize else key)
            if earlier is not None:
                findings.append(Finding("exact_duplicate", "*", f"same text as {name(earlier)}"))
            elif near is not None:
                match = near.check(pos, joined_text(row, kind))
                if match is not None:
                    other, similarity = match
                    findings.append(
                        Finding("near_duplicate", "*", f"{similarity:.2f} similar to {name(other)}")
                    )
            if settings.contamination is not None:
                text = row_text(row, kind)
                instructions = [m["content"] for m in text.prompt_messages if m["role"] == "user"]
                for hit in settings.contamination.find(joined_text(row, kind), instructions):
                    p = hit.prompt
                    named = f"{p.eval_set} row {p.index + 1}" + (f" ({p.id})" if p.id else "")
                    findings.append(Finding("contaminated", "prompt", f"{hit.overlap:.2f} of the n-grams of {named}"))
            if preference is not None:
                findings += preference.add(row, kind, n.responses)
            if findings:
                flagged[pos] = Flagged(sources[s].name, i + 1, row_id(row), findings)
        bar.update(len(batch))
    bar.close()
    if not categories:
        raise DataError(f"no rows in {', '.join(s.path for s in sources)}")
    return Inspection(
        kind=kind,
        sources=[
            {"name": src.name, "path": src.path, "kind": kind, "rows": per_source[s]} for s, src in enumerate(sources)
        ],
        source_index=np.asarray(source_index, dtype=np.int32),
        categories=categories,
        lengths=np.asarray(lengths, dtype=np.int32).reshape(-1, 3),
        max_length=counter.max_length,
        tokenizer=counter.name,
        flagged=flagged,
        preference=preference.summary() if preference else None,
        settings={
            "echo_threshold": settings.echo_threshold,
            "near_dedup": None if settings.near is None else vars(settings.near).copy(),
            "contamination": None
            if settings.contamination is None
            else {"n": settings.contamination.n, "min_overlap": settings.contamination.min_overlap,
                  "eval_prompts": len(settings.contamination.prompts),
                  "undetectable_prompts": settings.contamination.undetectable},
            "category_key": settings.category_key,
        },
        seconds=time.perf_counter() - start,
    )
