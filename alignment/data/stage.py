"""The data stage: inspect the recipe's sources, clean them, mix them, and say what happened.

`run_data_stage(recipe)` writes `runs/<name>/data/`:

| file | what |
| --- | --- |
| `train.jsonl` | the cleaned SFT mixture (what `rlhf sft` trains on) |
| `preferences.jsonl` | the cleaned comparison mixture, when `data.preference_sources` is set |
| `manifest.jsonl` | one line per dropped or changed row: dataset, source, row, id, filter, action, reason |
| `report.json`, `report.html`, `findings.jsonl` | the quality report of the raw sources, filter counts, the mixture |
| `cleaned/` | each source after filtering, before mixing (what `rlhf data mix` re-mixes) |
| `COMPLETE.json` | written last: row counts and paths |

Every input row ends up in the output or in the manifest: `clean` removes exactly what the
manifest lists (mixing left-outs included, as filter `mixing`), and a second run over the
same recipe writes the same files.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Optional

from tqdm.auto import tqdm

from alignment.data.contamination import ContaminationIndex
from alignment.data.filters import Item, build_filters, run_filters
from alignment.data.files import iter_rows
from alignment.data.inspection import Inspection, InspectSettings, inspect_sources, sources_kind
from alignment.data.lengths import TokenCounter
from alignment.data.mixture import achieved, curriculum_sort, interleave, pick_indices, plan_mixture
from alignment.data.report import summarize, write_report
from alignment.data.sources import (
    Source,
    category_of,
    eval_set_paths,
    file_source,
    iter_source,
    load_eval_prompts,
    recipe_sources,
    row_id,
)
from alignment.data.texts import field_value
from alignment.errors import DataError, UserError
from alignment.recipe import Recipe
from alignment.recipe.data import DecontaminateFilter, NearDedupFilter
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path, resolve_model_path

STAGE = "data"
OUTPUTS = {"sft": "train.jsonl", "preference": "preferences.jsonl"}
GROUPS = {"sft": "sources", "preference": "preference_sources"}


class JsonlWriter:
    """Append rows to a temporary file; `commit()` renames it into place (atomic)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.f = os.fdopen(fd, "w", encoding="utf-8")
        self.rows = 0

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def commit(self) -> int:
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.rows


# --- what every part of the stage needs ------------------------------------------------------


def policy_token_counter(recipe: Recipe) -> TokenCounter:
    """Token lengths under the policy's own tokenizer and chat template."""
    from alignment.models import load_tokenizer  # torch and transformers only when lengths are counted in tokens

    return TokenCounter(load_tokenizer(resolve_model_path(recipe), recipe.model), recipe.model.max_length)


def contamination_index(recipe: Recipe) -> ContaminationIndex:
    """The n-gram index of every evaluation prompt set the recipe names (empty when it names none;
    the report then shows 0 evaluation prompts, so an unchecked run is visible)."""
    cfg = recipe.data.filters.decontaminate or DecontaminateFilter()
    if cfg.eval_sets is not None:
        sets = [(name, resolve_data_path(recipe, name)) for name in cfg.eval_sets]
    else:
        sets = eval_set_paths(recipe)
    return ContaminationIndex(load_eval_prompts(sets), cfg.n, cfg.min_overlap, cfg.template_fraction)


def inspect_settings(recipe: Recipe, index: Optional[ContaminationIndex], progress: bool = True) -> InspectSettings:
    f = recipe.data.filters
    near = f.near_dedup or (NearDedupFilter() if recipe.data.report_near_dedup else None)
    return InspectSettings(
        echo_threshold=f.echo.threshold if f.echo else 0.9,
        near=near,
        contamination=index,
        category_key=recipe.data.category_key,
        exact_normalize=bool(f.exact_dedup and f.exact_dedup.normalize),
        num_proc=recipe.data.num_proc,
        progress=progress,
    )


def inspect_recipe(
    recipe: Recipe,
    progress: bool = True,
    files: Optional[list[str]] = None,
    counter: Optional[TokenCounter] = None,
    index: Optional[ContaminationIndex] = None,
) -> tuple[dict, dict[str, Inspection]]:
    """Report sections for the recipe's SFT and preference sources, or for `files` instead."""
    ensure_offline_world(recipe)
    counter = counter or policy_token_counter(recipe)
    settings = inspect_settings(recipe, index if index is not None else contamination_index(recipe), progress)
    groups: dict[str, list[Source]] = {}
    if files:
        for path in files:
            source = file_source(resolve_data_path(recipe, path), name=path if path.startswith("suite:") else None)
            group = "sft" if sources_kind([source]) == "sft" else "preference"
            groups.setdefault(group, []).append(source)
    else:
        groups = {g: recipe_sources(recipe, key) for g, key in GROUPS.items() if getattr(recipe.data, key)}
    inspections = {group: inspect_sources(sources, counter, settings) for group, sources in groups.items()}
    report = {
        "recipe": recipe.name,
        "datasets": {g: summarize(i, recipe.data.report_examples) for g, i in inspections.items()},
    }
    return report, inspections


# --- cleaning ------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def clean_sources(
    group: str,
    sources: list[Source],
    filters: list,
    out_dir: Path,
    batch_size: int = 1024,
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Filter every source into `out_dir/<i>-<name>.jsonl`; returns (per-source index, manifest entries).

    The index records, per source, the cleaned file and the source row number and id of each
    of its lines, so that mixing can name the rows it leaves out.
    """
    kind = sources_kind(sources)
    index, manifest = [], []
    bar = tqdm(desc=f"clean {group}", unit="row", disable=not progress)
    for s, source in enumerate(sources):
        path = out_dir / f"{group}-{s}-{_safe(source.name)}.jsonl"
        writer = JsonlWriter(path)
        kept_rows: list[int] = []
        kept_ids: list[Optional[str]] = []
        batch: list[Item] = []

        def flush() -> None:
            manifest.extend(run_filters(filters, batch, kind))
            for item in batch:
                if not item.dropped:
                    writer.write(item.row)
                    kept_rows.append(item.row_number)
                    kept_ids.append(item.id)
            bar.update(len(batch))
            batch.clear()

        for i, row in iter_source(source, kind):
            batch.append(Item(group, source.name, i + 1, row_id(row), row))
            if len(batch) == batch_size:
                flush()
        flush()
        writer.commit()
        index.append({"name": source.name, "path": source.path, "kind": kind, "file": path.name,
                      "weight": source.weight, "rows": kept_rows, "ids": kept_ids})
    bar.close()
    return index, manifest


def filter_counts(manifest: list[dict], filters: list) -> dict:
    """Per filter: rows dropped and changed, overall and by source."""
    out: dict = {}
    for f in filters:
        out[f.name] = {"dropped": 0, "changed": 0, "by_source": {}}
    for e in manifest:
        entry = out.setdefault(e["filter"], {"dropped": 0, "changed": 0, "by_source": {}})
        key = "dropped" if e["action"] == "drop" else "changed"
        entry[key] += 1
        per = entry["by_source"].setdefault(e["source"], {"dropped": 0, "changed": 0})
        per[key] += 1
    return out


# --- mixing --------------------------------------------------------------------------------------


def _stream(path: Path, indices: list[int]) -> Iterator[dict]:
    """Rows of a cleaned file at `indices` (sorted within each pass; passes repeat the file)."""
    want = Counter(indices)
    passes = max(want.values(), default=0)
    for p in range(passes):
        for j, row in enumerate(iter_rows(path)):
            if want[j] > p:
                yield row


def mix_group(recipe: Recipe, group: str, index: list[dict], work: Path, out_path: Path, counter: Optional[TokenCounter]) -> tuple[dict, list[dict]]:
    """Write the mixture of one group; returns (mixture report, manifest entries for rows left out)."""
    cfg = recipe.data.mixing
    seed = cfg.seed if cfg.seed is not None else recipe.seed
    rng = random.Random(seed)
    available = {src["name"]: len(src["rows"]) for src in index}
    plans = plan_mixture(available, cfg, {src["name"]: src["weight"] for src in index})
    picks = {p.name: pick_indices(p.available, p.rows, rng) for p in plans}
    manifest = []
    for src in index:
        used = set(picks[src["name"]])
        for j, (n, rid) in enumerate(zip(src["rows"], src["ids"])):
            if j not in used:
                entry = {"dataset": group, "source": src["name"], "row": n}
                if rid is not None:
                    entry["id"] = rid
                plan = next(p for p in plans if p.name == src["name"])
                entry.update({"filter": "mixing", "action": "drop",
                              "reason": f"not sampled: the {cfg.strategy} mixture takes {plan.rows} of this source's {plan.available} clean rows"})
                manifest.append(entry)
    streams = {src["name"]: _stream(work / src["file"], picks[src["name"]]) for src in index}
    counts = {p.name: p.rows for p in plans}
    if len(index) == 1:
        merged: Iterable[tuple[str, dict]] = ((index[0]["name"], r) for r in streams[index[0]["name"]])
    else:
        merged = interleave(streams, counts, rng)
    categories: Counter[str] = Counter()
    writer = JsonlWriter(out_path)
    if cfg.curriculum:
        rows = [row for _, row in merged]
        rows = curriculum_sort(rows, _difficulty(cfg.curriculum, counter, index[0]["kind"]))
        merged = ((None, r) for r in rows)
    for _, row in merged:
        categories[category_of(row, recipe.data.category_key)] += 1
        writer.write(row)
    total = writer.commit()
    report = {
        "strategy": cfg.strategy, "cap": cfg.cap, "temperature": cfg.temperature, "total_rows": total,
        "seed": seed, "curriculum": cfg.curriculum, "sources": achieved(plans),
        "categories": {k: {"rows": v, "share": round(v / total, 4)} for k, v in categories.most_common()} if total else {},
        "output": str(out_path),
    }
    return report, manifest


def _difficulty(key: str, counter: Optional[TokenCounter], kind):
    """A row -> difficulty function: 'length' is total tokens; anything else a (dotted) column."""
    if key == "length":
        if counter is None:
            raise UserError("data.mixing.curriculum='length' needs the policy's tokenizer")

        def by_length(row: dict, i: int) -> float:
            return counter.count([row], kind)[0].total

        return by_length

    def by_column(row: dict, i: int) -> float:
        value = field_value(row, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise DataError(
                f"mixture row {i + 1}: field '{key}' (data.mixing.curriculum): expected a number, got "
                f"{'nothing' if value is None else type(value).__name__}"
            )
        return float(value)

    return by_column


# --- the stage -----------------------------------------------------------------------------------


def _mixture_html(report: dict) -> str:
    import html

    parts = []
    for group, mix in report.get("mixture", {}).items():
        parts.append(f"<h2>Mixture ({html.escape(group)}): {mix['total_rows']} rows, {html.escape(mix['strategy'])}</h2><table>")
        parts.append("<tr><th>source</th><th>clean rows</th><th>requested</th><th>achieved</th><th>rows</th><th>repeats</th><th>left out</th></tr>")
        for name, s in mix["sources"].items():
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td>{s['available']}</td><td>{s['requested_share']:.2%}</td>"
                f"<td>{s['achieved_share']:.2%}</td><td>{s['rows']}</td><td>{s['repeated_rows']}</td><td>{s['left_out_rows']}</td></tr>"
            )
        parts.append("</table>")
    for group, counts in report.get("filters", {}).items():
        parts.append(f"<h2>Filters ({html.escape(group)})</h2><table><tr><th>filter</th><th>dropped</th><th>changed</th><th>by source</th></tr>")
        for name, c in counts.items():
            by = ", ".join(f"{s}: -{v['dropped']} ~{v['changed']}" for s, v in c["by_source"].items())
            parts.append(f"<tr><td>{html.escape(name)}</td><td>{c['dropped']}</td><td>{c['changed']}</td><td>{html.escape(by)}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _write_manifest(path: Path, entries: list[dict]) -> None:
    writer = JsonlWriter(path)
    for e in entries:
        writer.write(e)
    writer.commit()


def run_data_stage(recipe: Recipe, force: bool = False, progress: bool = True) -> Path:
    """Inspect, clean and mix; returns the path of the cleaned SFT mixture (data/train.jsonl).

    A finished stage is skipped unless `force`; an unfinished one is redone from scratch.
    """
    run = RunDir(recipe)
    out = run.stage_dir(STAGE, create=False)
    if run.is_done(STAGE) and not force:
        return out / OUTPUTS["sft"]
    run.clear(STAGE)
    out = run.stage_dir(STAGE)
    ensure_offline_world(recipe)
    counter = policy_token_counter(recipe)
    index = contamination_index(recipe)
    report, inspections = inspect_recipe(recipe, progress, counter=counter, index=index)
    work = out / "cleaned"
    report["filters"], report["mixture"] = {}, {}
    manifest: list[dict] = []
    cleaned: dict[str, list[dict]] = {}
    for group, key in GROUPS.items():
        sources = recipe_sources(recipe, key)
        if not sources:
            continue
        filters = build_filters(recipe.data.filters, counter, index)
        cleaned[group], entries = clean_sources(group, sources, filters, work, progress=progress)
        manifest += entries
        report["filters"][group] = filter_counts(entries, filters)
    with open(work / "index.json", "w", encoding="utf-8") as f:
        json.dump({"cleaned": cleaned, "manifest": manifest}, f)
    return _mix_and_finish(recipe, run, report, inspections, cleaned, manifest, counter)


def _mix_and_finish(recipe, run: RunDir, report: dict, inspections, cleaned: dict, manifest: list[dict], counter) -> Path:
    out = run.stage_dir(STAGE)
    work = out / "cleaned"
    mix_manifest: list[dict] = []
    for group, index in cleaned.items():
        report["mixture"][group], left_out = mix_group(recipe, group, index, work, out / OUTPUTS[group], counter)
        mix_manifest += left_out
    _write_manifest(out / "manifest.jsonl", manifest + mix_manifest)
    write_report(report, inspections, out, extra_html=_mixture_html(report), plots=recipe.data.report_plots)
    info = {
        "outputs": {g: str(out / OUTPUTS[g]) for g in cleaned},
        "rows": {g: report["mixture"][g]["total_rows"] for g in cleaned},
        "manifest_entries": len(manifest) + len(mix_manifest),
    }
    run.mark_done(STAGE, info)
    return out / OUTPUTS["sft"]


def remix(recipe: Recipe) -> Path:
    """Redo only the mixing step over the cleaned sources of a finished `clean` (for `rlhf data mix`)."""
    run = RunDir(recipe)
    out = run.stage_dir(STAGE, create=False)
    index_path = out / "cleaned" / "index.json"
    if not index_path.is_file():
        raise UserError(f"{out} has no cleaned sources yet: run `rlhf data clean` with this recipe first")
    saved = json.loads(index_path.read_text(encoding="utf-8"))
    report = json.loads((out / "report.json").read_text(encoding="utf-8")) if (out / "report.json").is_file() else {}
    report["mixture"] = {}
    marker = out / "COMPLETE.json"
    if marker.exists():
        marker.unlink()  # the stage is not done while its outputs are being rewritten
    counter = policy_token_counter(recipe) if recipe.data.mixing.curriculum == "length" else None
    return _mix_and_finish(recipe, run, report, None, saved["cleaned"], saved["manifest"], counter)
