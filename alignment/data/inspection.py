"""One streaming pass over a dataset that finds everything the quality report shows.

For every row, in source order: token lengths (batched), response and text defects,
exact and near duplicates of earlier rows, overlap with evaluation prompts, and, for
comparisons, ties, identical pairs, length bias and annotators. The pass keeps a few
numbers per row and the details of flagged rows only, so its memory grows with the number
of rows, not with their text. `report.py` turns the result into report.json and HTML.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

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
    batch_size: int = 512
    num_proc: Optional[int] = None
    """Worker processes for the per-row checks; None: one per core (at most 8)."""
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
        out["findings"] = [
            {"kind": f.kind, "field": f.field, "detail": f.detail, **({"against": f.against} if f.against else {})}
            for f in self.findings
        ]
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


def pair_stats(row: dict, kind: Kind, response_tokens: tuple[int, ...]) -> tuple[list[Finding], dict]:
    """Findings and counts of one comparison row (a ranking counts each pair it implies)."""
    findings: list[Finding] = []
    delta = {"pairs": 0, "ties": 0, "identical": 0, "chosen_longer": 0, "chosen_shorter": 0, "annotators": [], "ranked": None}
    if kind == "ranking":
        delta["ranked"] = len(row["responses"])
        pairs = expand_ranking(row)
        lengths = dict(zip(row["responses"], response_tokens))
        token_pairs = [(lengths[p["chosen"]], lengths[p["rejected"]]) for p in pairs]
    else:
        pairs = [row]
        token_pairs = [(response_tokens[0], response_tokens[1])]
    for pair, (nc, nr) in zip(pairs, token_pairs):
        delta["pairs"] += 1
        if normalize(pair["chosen"]) == normalize(pair["rejected"]):
            delta["identical"] += 1
            findings.append(Finding("identical_pair", "chosen", "chosen and rejected are the same text"))
        elif pair.get("tie") is True or pair.get("margin") == 0:
            delta["ties"] += 1
            findings.append(Finding("tie", "margin", "labelled as a tie"))
        delta["chosen_longer"] += nc > nr
        delta["chosen_shorter"] += nc < nr
    for key in ANNOTATOR_KEYS:
        value = field_value(row, key)
        if value is not None:
            delta["annotators"] = [str(v) for v in (value if isinstance(value, list) else [value])]
            break
    return findings, delta


class _PreferenceStats:
    """Ties, identical pairs, the chosen-is-longer rate and annotator counts over comparison pairs."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.annotators: Counter[str] = Counter()
        self.responses_per_ranking: Counter[int] = Counter()

    def merge(self, delta: dict) -> None:
        for key in ("pairs", "ties", "identical", "chosen_longer", "chosen_shorter"):
            self.counts[key] += delta[key]
        self.annotators.update(delta["annotators"])
        if delta["ranked"] is not None:
            self.responses_per_ranking[delta["ranked"]] += 1

    def summary(self) -> dict:
        c = self.counts
        decided = c["chosen_longer"] + c["chosen_shorter"]
        return {
            "pairs": c["pairs"],
            "ties": c["ties"],
            "identical_pairs": c["identical"],
            "chosen_longer_rate": c["chosen_longer"] / decided if decided else None,
            "chosen_longer_note": "share of pairs (of those whose lengths differ) where the chosen response has more tokens; far from 0.5 means a length bias a reward model will learn",
            "annotators": dict(self.annotators.most_common()),
            "responses_per_ranking": {str(k): v for k, v in sorted(self.responses_per_ranking.items())},
        }


@dataclass
class RowResult:
    """What one row contributes, computed without looking at any other row."""

    source: int
    index: int
    id: Optional[str]
    category: str
    lengths: tuple[int, int, int]
    findings: list[Finding]
    digest: bytes
    signature: Optional[np.ndarray]
    pair_delta: Optional[dict]


class RowChecker:
    """The per-row half of the inspection: token lengths, defects, contamination, signatures.

    It holds no state that depends on other rows, so several processes can run it on
    different batches; deduplication, which does depend on earlier rows, stays in the parent.
    """

    def __init__(self, kind: Kind, counter: TokenCounter, settings: InspectSettings):
        self.kind, self.counter, self.settings = kind, counter, settings
        near = settings.near
        self.near = NearDeduper(near.threshold, near.num_perm, near.ngram, near.seed) if near else None

    def __call__(self, batch: list[tuple[int, int, dict]]) -> list[RowResult]:
        kind, settings = self.kind, self.settings
        counted = self.counter.count([row for _, _, row in batch], kind)
        out = []
        for (s, i, row), n in zip(batch, counted):
            findings = row_defects(row, kind, settings.echo_threshold)
            if n.total > self.counter.max_length:
                findings.append(Finding("truncated", "*", f"{n.total} tokens > max_length {self.counter.max_length}"))
            text = joined_text(row, kind)
            if settings.contamination is not None:
                prompt = row_text(row, kind).prompt_messages
                instructions = [m["content"] for m in prompt if m["role"] == "user"]
                for hit in settings.contamination.find("\n".join(m["content"] for m in prompt), instructions):
                    p = hit.prompt
                    named = f"{p.eval_set} row {p.index + 1}" + (f" ({p.id})" if p.id else "")
                    findings.append(Finding("contaminated", "prompt", f"{hit.overlap:.2f} of the n-grams of {named}", p.eval_set))
            delta = None
            if kind in ("preference", "ranking"):
                more, delta = pair_stats(row, kind, n.responses)
                findings += more
            key = content_key(row, kind)
            out.append(
                RowResult(
                    s, i, row_id(row), category_of(row, settings.category_key), (n.instruction, n.response, n.total),
                    findings, ExactDeduper.digest(normalize(key) if settings.exact_normalize else key),
                    self.near.signature(text) if self.near else None, delta,
                )
            )
        return out


_WORKER: dict = {}  # the RowChecker of a worker process (set once by the pool initializer)


def _init_worker(checker: RowChecker) -> None:
    # one process per core already: the Rust tokenizer's own thread pool would only oversubscribe
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER["checker"] = checker


def _work(batch: list[tuple[int, int, dict]]) -> list[RowResult]:
    return _WORKER["checker"](batch)


def _checked(checker: RowChecker, batches: Iterable[list], num_proc: int) -> Iterator[list[RowResult]]:
    """Checker results batch by batch, in order; with num_proc > 1, from a pool of processes.

    At most 2 x num_proc batches are in flight, so a large file is streamed, not queued whole
    (Pool.imap would read the entire input ahead of the workers).
    """
    if num_proc <= 1:
        yield from (checker(batch) for batch in batches)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(checker,)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_work, (batch,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


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


def default_num_proc() -> int:
    """One worker per core the process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def inspect_sources(sources: list[Source], counter: TokenCounter, settings: InspectSettings) -> Inspection:
    """Run every check over the rows of `sources`, in order, in one pass."""
    start = time.perf_counter()
    kind = sources_kind(sources)
    checker = RowChecker(kind, counter, settings)
    exact = ExactDeduper()
    near = checker.near
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

    num_proc = settings.num_proc or default_num_proc()
    bar = tqdm(desc="inspect", unit="row", disable=not settings.progress)
    for results in _checked(checker, _batches(sources, kind, settings.batch_size), num_proc):
        for r in results:
            pos = len(categories)
            starts.setdefault(r.source, pos)
            source_index.append(r.source)
            categories.append(r.category)
            lengths.append(r.lengths)
            per_source[r.source] += 1
            findings = r.findings
            earlier = exact.check_digest(pos, r.digest)
            if earlier is not None:
                findings.append(Finding("exact_duplicate", "*", f"same text as {name(earlier)}"))
            elif near is not None:
                match = near.check_signature(pos, r.signature)
                if match is not None:
                    findings.append(Finding("near_duplicate", "*", f"{match[1]:.2f} similar to {name(match[0])}"))
            if preference is not None:
                preference.merge(r.pair_delta)
            if findings:
                flagged[pos] = Flagged(sources[r.source].name, r.index + 1, r.id, findings)
        bar.update(len(results))
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
            "num_proc": num_proc,
        },
        seconds=time.perf_counter() - start,
    )
