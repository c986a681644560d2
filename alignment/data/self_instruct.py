"""Self-Instruct (Wang et al. 2023): grow an instruction set from a seed pool with a model.

Each of `rounds` rounds:

1. propose: `per_round` times, show the generator `in_context` instructions sampled from the
   pool (after the first round, `machine_in_context` of them from earlier generated ones) and
   ask for one new task;
2. filter each proposal, in this order, counting what each filter removes:
   `format` (empty, starts with punctuation or a non-letter, names something a text model
   cannot do such as an image, or contains chat-template markup), `length` (`min_words` to
   `max_words` words), `near_duplicate` (ROUGE-L F1 >= `rouge_threshold`, Self-Instruct's 0.7,
   with any pool instruction, the ones kept earlier in this round included), and
   `decontaminate` (the data stage's own filter against the recipe's evaluation sets: a
   contaminated instruction would otherwise also seed the next rounds with evaluation-like
   tasks);
3. answer the survivors with the generator, drop empty answers (`empty_response`);
4. add the kept instructions to the pool.

`run_self_instruct(recipe)` writes `runs/<name>/self_instruct/`:

| file | what |
| --- | --- |
| `train.jsonl` | kept rows, `{"messages", "metadata": {"id", "category": "self_instruct", "provenance"}}` |
| `manifest.jsonl` | every proposal: round, instruction, `kept` or the filter and reason, its provenance |
| `report.json` | proposals, kept, and per filter the count and share of proposals removed, per round and in all |
| `COMPLETE.json` | written last |

provenance = `{"method": "self-instruct", "generator", "round", "seed_examples": [ids]}`; the
data stage copies it into its own manifest for every row it drops or changes. A recipe uses
the output as a source like any other: `data.sources: [{path: suite:sft}, {path: self_instruct:train}]`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm.auto import tqdm

from alignment.data.files import iter_rows, write_rows
from alignment.data.filters import Decontaminate, Item
from alignment.data.rouge import RougeIndex
from alignment.data.sources import row_id
from alignment.data.stage import contamination_index
from alignment.data.texts import words
from alignment.errors import DataError, UserError
from alignment.recipe.model import ModelConfig
from alignment.recipe.self_instruct import SelfInstructConfig
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path, resolve_named_model, write_json_atomic

STAGE = "self_instruct"
FILTERS = ("format", "length", "near_duplicate", "decontaminate", "empty_response")

Generate = Callable[[list, int, float, float, int], list[str]]
"""(prompts, max_new_tokens, temperature, top_p, seed) -> one completion per prompt."""


@dataclass(frozen=True)
class PoolEntry:
    id: str
    text: str
    generated: bool = False


def instruction_of(row: dict) -> Optional[str]:
    """The last user turn of an SFT or prompt row (a plain prompt string as is)."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    turns = row.get("messages") if "messages" in row else prompt
    if isinstance(turns, list):
        users = [m.get("content") for m in turns if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    return None


def seed_pool(path: str, max_seeds: Optional[int] = None) -> list[PoolEntry]:
    """The seed instructions of a file of SFT or prompt rows."""
    if not Path(path).exists():
        raise UserError(f"self_instruct.seeds: file not found: {path}")
    pool = []
    for i, row in enumerate(iter_rows(path)):
        if max_seeds is not None and i >= max_seeds:
            break
        text = instruction_of(row)
        if text is None:
            raise DataError(f"{path}: row {i + 1}: no user turn or prompt to use as a seed instruction")
        pool.append(PoolEntry(row_id(row) or f"seed-{i + 1}", text))
    if not pool:
        raise UserError(f"self_instruct.seeds: {path} has no rows")
    return pool


_LEAD = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•]|(?:new\s+)?task\s*\d*\s*[:.)-])\s*", re.IGNORECASE)


def clean_instruction(raw: str) -> str:
    """The first non-empty line of a proposal, without list numbering, a "Task:" label or quotes."""
    line = next((l for l in raw.splitlines() if l.strip()), "")
    for _ in range(2):
        line = _LEAD.sub("", line)
    return line.strip().strip('"\'*`').strip()


def format_problem(text: str, cfg: SelfInstructConfig) -> Optional[str]:
    """Why an instruction breaks the format rules, or None."""
    if not text:
        return "empty instruction"
    if "<|" in text or "|>" in text or "<im_" in text:
        return "contains chat-template markup"
    if not text[0].isalpha():
        return f"starts with {text[0]!r}, not a letter"
    banned = sorted(set(words(text)) & {w.lower() for w in cfg.banned_words})
    if banned:
        return f"names {banned[0]!r}, which a text-only model cannot do"
    return None


def proposal_prompt(examples: Sequence[PoolEntry], template: str) -> str:
    return template.replace("{examples}", "\n".join(f"{i + 1}. {e.text}" for i, e in enumerate(examples)))


def sample_examples(pool: Sequence[PoolEntry], cfg: SelfInstructConfig, rng: random.Random) -> list[PoolEntry]:
    """`in_context` distinct pool entries, `machine_in_context` of them generated when there are some."""
    seeds = [e for e in pool if not e.generated]
    made = [e for e in pool if e.generated]
    k_made = min(cfg.machine_in_context, len(made), cfg.in_context)
    chosen = rng.sample(made, k_made) + rng.sample(seeds, min(cfg.in_context - k_made, len(seeds)))
    rng.shuffle(chosen)
    return chosen


def grow(pool: list[PoolEntry], generate: Generate, cfg: SelfInstructConfig, decontaminate: Optional[Decontaminate],
         generator: str, seed: int = 0, progress: bool = False) -> tuple[list[dict], list[dict]]:
    """Run every round; returns (kept SFT rows, manifest entries of every proposal)."""
    index = RougeIndex()
    for e in pool:
        index.add(e.id, words(e.text))
    pool = list(pool)
    kept_rows, manifest = [], []
    for r in tqdm(range(1, cfg.rounds + 1), desc="self-instruct rounds", unit="round", disable=not progress):
        rng = random.Random(f"{seed}:self-instruct:{r}")
        shown = [sample_examples(pool, cfg, rng) for _ in range(cfg.per_round)]
        raw = generate([proposal_prompt(ex, cfg.template) for ex in shown], cfg.max_new_tokens, cfg.temperature,
                       cfg.top_p, seed * 1000 + r)
        survivors = []
        for k, (examples, text) in enumerate(zip(shown, raw)):
            instruction = clean_instruction(text)
            provenance = {"method": "self-instruct", "generator": generator, "round": r,
                          "seed_examples": [e.id for e in examples]}
            entry = {"round": r, "proposal": k + 1, "instruction": instruction, "provenance": provenance}
            n = len(words(instruction))
            match = index.most_similar(words(instruction), cfg.rouge_threshold) if instruction else None
            if (why := format_problem(instruction, cfg)) is not None:
                manifest.append({**entry, "filter": "format", "reason": why})
            elif not cfg.min_words <= n <= cfg.max_words:
                manifest.append({**entry, "filter": "length",
                                 "reason": f"{n} words, outside {cfg.min_words}-{cfg.max_words}"})
            elif match is not None:
                manifest.append({**entry, "filter": "near_duplicate",
                                 "reason": f"ROUGE-L {match[1]:.2f} >= {cfg.rouge_threshold} with {match[0]}"})
            elif decontaminate is not None and (hit := decontaminate.one(
                    Item("sft", STAGE, k + 1, None, {"messages": [{"role": "user", "content": instruction},
                                                                 {"role": "assistant", "content": "-"}]}), "sft")):
                manifest.append({**entry, "filter": "decontaminate", "reason": hit["reason"]})
            else:
                rid = f"si-r{r}-{k + 1}"
                index.add(rid, words(instruction))  # later proposals of this round are compared with it too
                survivors.append((rid, instruction, entry))
        answers = generate([s[1] for s in survivors], cfg.response_max_new_tokens, cfg.response_temperature, 1.0,
                           seed * 1000 + r) if survivors else []
        for (rid, instruction, entry), answer in zip(survivors, answers):
            if not answer.strip():
                manifest.append({**entry, "id": rid, "filter": "empty_response", "reason": "the generator's answer is empty"})
                continue
            manifest.append({**entry, "id": rid, "filter": None, "reason": "kept"})
            pool.append(PoolEntry(rid, instruction, generated=True))
            kept_rows.append({"messages": [{"role": "user", "content": instruction},
                                           {"role": "assistant", "content": answer.strip()}],
                              "metadata": {"id": rid, "category": "self_instruct", "provenance": entry["provenance"]}})
    return kept_rows, manifest


def filter_report(manifest: Sequence[dict]) -> dict:
    """Proposals, kept, and per filter the count and share of all proposals it removed (also per round)."""
    def summary(entries):
        counts = Counter(e["filter"] for e in entries if e["filter"] is not None)
        n = len(entries)
        return {"proposals": n, "kept": sum(1 for e in entries if e["filter"] is None),
                "removed": {f: {"count": counts[f], "share": counts[f] / n if n else 0.0} for f in FILTERS}}
    rounds = sorted({e["round"] for e in manifest})
    return {**summary(manifest), "rounds": {str(r): summary([e for e in manifest if e["round"] == r]) for r in rounds}}


def model_generate(model, tokenizer, batch_size: int) -> Generate:
    """A `Generate` through the toolkit's one generation path."""
    from alignment.generation import generate

    def run(prompts, max_new_tokens, temperature, top_p, seed):
        return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, seed=seed, batch_size=batch_size)

    return run


def run_self_instruct(recipe, generate: Optional[Generate] = None, force: bool = False, progress: bool = True) -> Path:
    """`rlhf data generate`: grow, filter and write the Self-Instruct source; returns train.jsonl."""
    from alignment.models import load_policy, load_tokenizer  # torch only when a model is loaded

    cfg = recipe.self_instruct
    run = RunDir(recipe)
    out = run.stage_dir(STAGE, create=False)
    if run.is_done(STAGE) and not force:
        return out / "train.jsonl"
    run.clear(STAGE)
    out = run.stage_dir(STAGE)
    ensure_offline_world(recipe)
    pool = seed_pool(resolve_data_path(recipe, cfg.seeds), cfg.max_seeds)
    generator = resolve_named_model(recipe, cfg.generator)
    if generate is None:
        mcfg = ModelConfig(name_or_path=generator, dtype=cfg.dtype)
        generate = model_generate(load_policy(generator, mcfg), load_tokenizer(generator, mcfg), cfg.batch_size)
    decontaminate = Decontaminate(contamination_index(recipe)) if recipe.data.filters.decontaminate is not None else None
    if decontaminate is None:  # said, not silent: the user turned the data stage's filter off
        print("self-instruct: data.filters.decontaminate is off, so proposals are not checked against the evaluation sets")
    rows, manifest = grow(pool, generate, cfg, decontaminate, cfg.generator or recipe.model.name_or_path,
                          recipe.seed, progress)
    if not rows:
        raise UserError(f"self-instruct kept no instruction ({filter_report(manifest)['removed']}); "
                        "see the thresholds under self_instruct")
    write_rows(rows, out / "train.jsonl")
    write_rows(manifest, out / "manifest.jsonl")
    report = {"seeds": len(pool), "generator": generator, "settings": {k: v for k, v in vars(cfg).items()},
              **filter_report(manifest)}
    write_json_atomic(out / "report.json", report)
    run.mark_done(STAGE, {"rows": len(rows), "proposals": len(manifest)})
    return out / "train.jsonl"
