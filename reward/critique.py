"""Critique-and-revise (Constitutional AI's supervised phase, Bai et al. 2022) as AI feedback.

For each prompt the model answers, then for K rounds, with principles sampled per item and
round (seeded by the item, so a rerun draws the same ones):

    critique = model(prompt, answer, principle.critique)
    revision = model(prompt, answer, principle.critique, critique, principle.revision)
    answer   = revision

A revision that is empty, or identical to the answer it revises, is dropped and counted (the
answer stays as it was). An item whose final answer still equals its original gives no
pair. Every other item gives the pair (revision > original), stored in the label store as a
judgment of an AI annotator (user kind "ai") with the critiques as its rationale, so it is
exported, filtered and counted like any other judgment (`run_critique`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from alignment.data.files import read_rows
from alignment.errors import UserError
from alignment.recipe.model import ModelConfig
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path, resolve_named_model, write_json_atomic
from reward.comparisons import prompt_key
from reward.labeling import select_label_prompts
from reward.principles import Principle, load_principles, sample_principles
from reward.simulated import judgment_rng

Generate = Callable[[list[list[dict]], int], list[str]]
"""(conversations, max_new_tokens) -> the assistant's next turn for each."""

CRITIQUE_FILE = "critique.jsonl"


@dataclass
class Revision:
    prompt: object
    original: str
    revised: str = ""
    critiques: list[str] = field(default_factory=list)
    principles: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.revised = self.revised or self.original

    @property
    def changed(self) -> bool:
        return _norm(self.revised) != _norm(self.original)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _turns(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def critique_and_revise(generate: Generate, prompts: Sequence, originals: Sequence[str],
                        principles: Sequence[Principle], rounds: int = 1, per_item: int = 1, seed: int = 0,
                        max_new_tokens: int = 48, critique_max_new_tokens: int = 48,
                        progress: bool = False) -> tuple[list[Revision], Counter]:
    """Every item after K rounds, and the counts of dropped revisions and unchanged items."""
    items = [Revision(p, o) for p, o in zip(prompts, originals, strict=True)]
    counts: Counter = Counter()
    steps = [(r, k) for r in range(rounds) for k in range(per_item)]
    for r, k in tqdm(steps, desc="critique-and-revise", unit="step", disable=not progress):
        chosen = [sample_principles(principles, per_item, judgment_rng(seed, f"critique-round{r}", str(i)))
                  for i in range(len(items))]
        active = [i for i in range(len(items)) if k < len(chosen[i])]
        convs = [_turns(items[i].prompt) + [{"role": "assistant", "content": items[i].revised},
                                            {"role": "user", "content": chosen[i][k].critique}] for i in active]
        critiques = generate(convs, critique_max_new_tokens)
        revise = [c + [{"role": "assistant", "content": crit}, {"role": "user", "content": chosen[i][k].revision}]
                  for c, crit, i in zip(convs, critiques, active)]
        revisions = generate(revise, max_new_tokens)
        for i, crit, rev in zip(active, critiques, revisions):
            item, principle = items[i], chosen[i][k]
            if not rev.strip():
                counts["empty revision dropped"] += 1
            elif _norm(rev) == _norm(item.revised):
                counts["revision identical to its original dropped"] += 1
            else:
                item.revised = rev.strip()
                item.critiques.append(f"[{principle.name}] {crit.strip()}")
                item.principles.append(principle.name)
    kept = [it for it in items if it.changed]
    counts["items without a changed revision"] = len(items) - len(kept)
    return kept, counts


def model_generate(model, tokenizer, temperature: float, seed: int, batch_size: int) -> Generate:
    """A `Generate` through the toolkit's one generation path."""
    from alignment.generation import generate

    def run(convs: list[list[dict]], max_new_tokens: int) -> list[str]:
        return generate(model, tokenizer, convs, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                        batch_size=batch_size)

    return run


def store_revisions(service, revisions: Sequence[Revision], campaign: str, annotator: str, profile: dict,
                    metadata: Sequence[dict] | None = None, seed: int = 0) -> int:
    """A campaign of (original, revision) items, each judged "revision better" by the AI
    annotator with its critiques as the rationale; returns the campaign id."""
    if not revisions:
        raise UserError("critique-and-revise changed no answer: no pairs to store")
    metadata = metadata or [{} for _ in revisions]
    rows = [{"prompt": r.prompt, "responses": [r.original, r.revised],
             "metadata": {**m, "principles": r.principles, "method": "critique-and-revise"}}
            for r, m in zip(revisions, metadata)]
    existing = {c["name"]: c["id"] for c in service.list_campaigns()}
    if campaign in existing:
        raise UserError(f"campaign {campaign!r} already exists in the label store: choose labels.critique.campaign")
    cid = service.create_campaign(campaign, mode="pairwise", overlap=1, items=rows, seed=seed,
                                  guidelines="Critique-and-revise pairs: the revision is preferred to the original.")
    by_key = {(prompt_key(r.prompt), r.revised, r.original): r for r in revisions}
    uid = service.ensure_user(annotator, role="labeler", kind="ai", profile=profile)
    while batch := service.next_assignments(uid, cid, 64):
        for a in batch:
            x, y = a.responses
            rev = by_key.get((prompt_key(a.prompt), x, y)) or by_key.get((prompt_key(a.prompt), y, x))
            if rev is None:
                raise UserError(f"campaign {campaign!r}: item {a.item_id} is not one of the revisions")
            service.submit_judgment(a.id, uid, choice="A" if x == rev.revised else "B", client_token=a.token,
                                    time_spent_s=0.0, rationale="\n".join(rev.critiques))
    return cid


def run_critique(recipe, progress: bool = True) -> dict:
    """`rlhf label critique`: answer, critique, revise; store and export the pairs.

    Writes `<output_dir>/labels/critique.jsonl` (the export: preference rows whose labeler is
    the AI annotator, rationale the critiques) and `critique_metrics.json`.
    """
    from alignment.models import load_policy, load_tokenizer  # torch only when a model is loaded
    from ui.service import LabelService

    cfg, labels = recipe.labels.critique, recipe.labels
    principles = load_principles(cfg.principles)
    ensure_offline_world(recipe)
    source = cfg.prompts_file or resolve_data_path(recipe, "suite:prompts")
    if not Path(source).exists():
        raise UserError(f"labels.critique: prompt file not found: {source}")
    rows = select_label_prompts(read_rows(source), cfg.prompts, labels.balance_by)
    path = resolve_named_model(recipe, cfg.model)
    mcfg = ModelConfig(name_or_path=path, dtype=cfg.dtype)
    model, tokenizer = load_policy(path, mcfg), load_tokenizer(path, mcfg)
    gen = model_generate(model, tokenizer, cfg.temperature, recipe.seed, cfg.batch_size)
    prompts = [r["prompt"] for r in rows]
    originals = gen([_turns(p) for p in prompts], cfg.max_new_tokens)
    kept, counts = critique_and_revise(gen, prompts, originals, principles, cfg.rounds, cfg.principles_per_item,
                                       recipe.seed, cfg.max_new_tokens, cfg.critique_max_new_tokens, progress)
    meta_of = {prompt_key(r["prompt"]): r.get("metadata") or {} for r in rows}
    profile = {"method": "critique-and-revise", "model": path, "principles": [p.as_dict() for p in principles],
               "rounds": cfg.rounds, "principles_per_item": cfg.principles_per_item}
    run = RunDir(recipe)
    out = run.stage_dir("labels") / CRITIQUE_FILE
    campaign = cfg.campaign.replace("{name}", recipe.name)
    service = LabelService.open(labels.db, durable=False)
    try:
        cid = store_revisions(service, kept, campaign, cfg.annotator, profile,
                              [meta_of.get(prompt_key(r.prompt), {}) for r in kept], recipe.seed)
        n = service.export(cid, str(out))
    finally:
        service.close()
    metrics = {"prompts": len(rows), "pairs": len(kept), "rows": n, "campaign": campaign, "counts": dict(counts),
               "export": str(out)}
    write_json_atomic(out.parent / "critique_metrics.json", metrics)
    return metrics
