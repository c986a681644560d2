"""The offline labeling loop: sample candidates, let simulated annotators judge them in the
label store, export the comparisons. Functions the pipeline (`rlhf run`) calls in order:

    rows = sample_candidates(policy_dir, prompt_rows, k=4, temperature=1.0, ...)   # (1)
    service = LabelService.open(db_url)
    cid = service.create_campaign(name, mode, overlap, items=rows, ...)
    simulate_campaign(service, cid, personas, rows, seed)                           # (2)
    service.export(cid, "labels/comparisons.jsonl", aggregation=...)                # (3)

or the two stage wrappers `run_samples_stage(recipe)` and `run_labels_stage(recipe)`, which
do the same into `runs/<name>/samples/` and `runs/<name>/labels/` and mark them done.

Simulated annotators write through `ui.service.LabelService` exactly as a labeler's vote
does: a user (marked simulated, no password), `next_assignment`, `submit_judgment` with the
shown position ("A"/"B") and the assignment's client token. Only the decision differs: it
comes from the gold checker through reward/simulated.py, and it is made on the candidates
in a canonical order, so the random positions the store shows them in cannot change it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from alignment.data.files import read_rows, write_rows
from alignment.data.texts import field_value
from alignment.errors import DataError, UserError
from alignment.recipe.model import ModelConfig
from alignment.run_dir import RunDir, ensure_offline_world, resolve_data_path
from alignment.suite import gold_score
from reward.comparisons import prompt_key
from reward.simulated import SimulatedAnnotator, judgment_rng, personas

CANDIDATES_FILE = "candidates.jsonl"
COMPARISONS_FILE = "comparisons.jsonl"


def sample_candidates(
    policy_path: str,
    prompt_rows: Sequence[dict],
    k: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 64,
    model_cfg=None,
    policy_name: str = "sft",
    engine: str = "hf",
) -> tuple[list[dict], Counter]:
    """K sampled responses per prompt, as candidate rows `{"prompt", "responses", "metadata"}`.

    Duplicate and empty responses are removed (they would make empty or identical pairs);
    a prompt left with fewer than two distinct responses is dropped. Returns the rows and
    the drop counts. `engine="vllm"` samples with a vLLM engine (`labels.sample_engine`).
    """
    from alignment.generation import generate  # torch and transformers only when a model samples
    from alignment.models import load_policy, load_tokenizer

    if k < 2:
        raise UserError(f"labels.candidates_per_prompt must be at least 2, got {k}")
    tokenizer = load_tokenizer(policy_path, model_cfg)
    prompts = [r["prompt"] for r in prompt_rows]
    if engine == "vllm":
        outputs = _vllm_candidates(policy_path, tokenizer, prompts, k, temperature, max_new_tokens, seed, model_cfg)
    else:
        model = load_policy(policy_path, model_cfg)
        outputs = generate(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens,
            temperature=temperature, seed=seed, batch_size=batch_size, num_return_sequences=k, progress=True,
        )
    rows, dropped = [], Counter()
    for row, responses in zip(prompt_rows, outputs):
        distinct = list(dict.fromkeys(r for r in responses if r.strip()))
        dropped["duplicate or empty responses removed"] += len(responses) - len(distinct)
        if len(distinct) < 2:
            dropped["prompts with fewer than 2 distinct responses"] += 1
            continue
        meta = dict(row.get("metadata") or {})
        meta.update(policy=policy_name, checkpoint=str(policy_path))
        rows.append({"prompt": row["prompt"], "responses": distinct, "metadata": meta})
    return rows, dropped


def _vllm_candidates(policy_path, tokenizer, prompts, k, temperature, max_new_tokens, seed, model_cfg):
    """K responses per prompt from a vLLM engine on the policy's folder, in model.dtype."""
    from alignment.generation import chat_prompts
    from alignment.models import pick_device, pick_dtype
    from alignment.vllm_engine import VLLMSampler, require_vllm

    require_vllm("labels.sample_engine")
    longest = max(len(ids) for ids in tokenizer(chat_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"])
    dtype = pick_dtype((model_cfg or ModelConfig()).dtype, pick_device())
    sampler = VLLMSampler(str(policy_path), dtype, max_model_len=longest + max_new_tokens, seed=seed)
    return sampler.sample_texts(tokenizer, prompts, k, max_new_tokens, temperature, seed)


def _gold_lookup(candidates: Sequence[dict]) -> dict[str, dict]:
    """prompt -> task metadata, which the store's assignments do not carry."""
    lookup = {}
    for i, row in enumerate(candidates):
        meta = row.get("metadata") or {}
        if "family" not in meta or "answer" not in meta:
            raise DataError(
                f"candidates row {i + 1}: metadata has no suite task spec (family, answer, constraints); "
                "simulated annotators need the offline suite's gold checker"
            )
        lookup[prompt_key(row["prompt"])] = meta
    return lookup


def simulated_judgment(annotator: SimulatedAnnotator, assignment, metadata: dict, seed: int) -> dict:
    """The `submit_judgment` arguments this persona gives for this assignment."""
    shown = list(assignment.candidate_ids)
    canonical = sorted(shown)  # decide on candidates in id order, not in the random shown order
    text = dict(zip(shown, assignment.responses))
    golds = [gold_score(metadata, text[c]).score for c in canonical]
    rng = judgment_rng(seed, annotator.name, f"{assignment.campaign_id}:{assignment.item_id}")
    if assignment.mode == "ranking":
        best_first = [canonical[i] for i in annotator.rank(golds, rng)]
        return {"ranking": [shown.index(c) for c in best_first]}
    if annotator.is_tie(golds[0], golds[1]):
        return {"choice": "tie"}
    winner = canonical[0] if annotator.prefer_first(golds[0], golds[1], rng) else canonical[1]
    return {"choice": "A" if shown[0] == winner else "B"}


def simulate_campaign(
    service, campaign_id: int, annotators: Sequence[SimulatedAnnotator], candidates: Sequence[dict], seed: int,
    progress: bool = True,
) -> dict:
    """Let each persona take and judge items in turn until none is left for any of them.

    Resumable: a persona's unfinished assignment is served to it again by the store. Returns
    judgments per persona and how often each agreed with the gold preference.
    """
    if not annotators:
        raise UserError("labels.annotators is empty: simulated labeling needs at least one persona")
    lookup = _gold_lookup(candidates)
    users = {a.name: service.ensure_user(a.name, role="labeler", simulated=True) for a in annotators}
    done: Counter = Counter()
    active = list(annotators)
    total = service.progress(campaign_id)["target_judgments"]
    bar = tqdm(total=total, desc="simulated labels", unit="judgment", disable=not progress)
    started = time.time()
    while active:
        for annotator in list(active):
            uid = users[annotator.name]
            assignment = service.next_assignment(uid, campaign_id)
            if assignment is None:
                active.remove(annotator)
                continue
            metadata = lookup.get(prompt_key(assignment.prompt))
            if metadata is None:
                raise DataError(f"campaign {campaign_id}: item {assignment.item_id}'s prompt is not in the candidate rows")
            judgment = simulated_judgment(annotator, assignment, metadata, seed)
            service.submit_judgment(assignment.id, uid, client_token=assignment.token, time_spent_s=0.0,
                                    rationale=f"simulated ({annotator.name})", **judgment)
            done[annotator.name] += 1
            bar.update(1)
    bar.close()
    return {"judgments": dict(done), "wall_time_s": round(time.time() - started, 1)}


def export_comparisons(service, campaign_id: int, path: str | Path, aggregation: str = "all",
                       include_ties: bool = False) -> int:
    """Preference (or ranking) rows from the store; an error if nothing was judged."""
    progress = service.progress(campaign_id)
    if progress["judgments"] == 0:
        raise UserError(f"label store campaign {progress['campaign']!r} has no judgments yet; nothing to train on")
    return service.export(campaign_id, str(path), aggregation=aggregation, include_ties=include_ties)


def select_label_prompts(rows: Sequence[dict], n: int, balance_by: str | None = None) -> list[dict]:
    """The prompts a labeling round spends its judgments on.

    Without `balance_by`, the first `n` rows. With it, the values of that field (a column, a
    dotted path such as `metadata.family`, or a bare key of the row's `metadata`) take turns, so every value gets an equal share of the `n` and
    a value with fewer rows than its share gives all it has. A category that is rare among the
    prompts (safety requests are 7.5% of the offline suite's) otherwise gets too few
    comparisons for the reward model to learn it, and RL then moves all of it one way.
    Rows keep their file order, so the choice is the same on every run.
    """
    if balance_by is None:
        return list(rows[:n])
    groups: dict[object, list[int]] = {}
    for i, row in enumerate(rows):
        value = field_value(row, balance_by)
        if value is None:
            value = field_value(row, f"metadata.{balance_by}")
        if value is None:
            raise UserError(f"labels.balance_by={balance_by!r}: prompt row {i + 1} has no field {balance_by!r} "
                            "(neither a column nor a key of its metadata)")
        groups.setdefault(value if isinstance(value, (str, int, float, bool)) else repr(value), []).append(i)
    chosen: list[int] = []
    turn = 0
    while len(chosen) < n:  # each value in turn gives its next row, until n are taken or all run out
        this_turn = [ids[turn] for ids in groups.values() if turn < len(ids)]
        if not this_turn:
            break
        chosen.extend(this_turn[: n - len(chosen)])
        turn += 1
    return [rows[i] for i in sorted(chosen)]


# -------------------------------------------------------------------- stages of `rlhf run`


def run_samples_stage(recipe, policy_path: str | None = None, policy_name: str = "sft", force: bool = False) -> Path:
    """`samples/candidates.jsonl`: K samples per prompt of the suite's `prompts` split
    (`labels.prompts` of them, see select_label_prompts) from the SFT policy, or in a later
    round from the last round's policy (`policy_name` is what each row's metadata records, so
    the labels say which policy wrote the responses). Skipped when done."""
    run = RunDir(recipe)
    out = run.stage_dir("samples") / CANDIDATES_FILE
    if run.is_done("samples") and not force:
        return out
    ensure_offline_world(recipe)
    cfg = recipe.labels
    policy_path = policy_path or str(run.stage_dir("sft", create=False))
    if not (Path(policy_path) / "config.json").is_file():
        raise UserError(f"no SFT policy at {policy_path}: run `rlhf sft` first (candidates are its samples)")
    prompts = select_label_prompts(read_rows(resolve_data_path(recipe, "suite:prompts")), cfg.prompts, cfg.balance_by)
    rows, dropped = sample_candidates(
        policy_path, prompts, k=cfg.candidates_per_prompt, temperature=cfg.sample_temperature,
        max_new_tokens=cfg.max_new_tokens, seed=recipe.seed, model_cfg=recipe.model, engine=cfg.sample_engine,
        policy_name=policy_name,
    )
    if not rows:
        raise UserError(f"samples: every prompt had fewer than 2 distinct responses ({dict(dropped)})")
    write_rows(rows, out)
    info = {"prompts": len(prompts), "rows": len(rows), "dropped": dict(dropped)}
    run.write_metrics("samples", info)
    run.mark_done("samples", info)
    print(f"samples: {len(rows)} prompts x up to {cfg.candidates_per_prompt} responses -> {out}"
          + (f" ({', '.join(f'{n} {k}' for k, n in dropped.items())})" if dropped else ""))
    return out


def run_labels_stage(recipe, round: int = 1, force: bool = False) -> Path:
    """`labels/comparisons.jsonl`: simulated annotators, the AI annotator (`labels.source:
    ai`), or both (`simulated+ai`: the AI judges first and takes one overlap slot of every
    item, the personas fill the rest) judge the candidates in the label store (`labels.db`),
    then the campaign is exported. Resumes an interrupted campaign."""
    from ui.service import LabelService

    run = RunDir(recipe)
    cfg = recipe.labels
    out = run.stage_dir("labels") / COMPARISONS_FILE
    if run.is_done("labels") and not force:
        return out
    if cfg.source not in ("simulated", "ai", "simulated+ai"):
        raise UserError(f"labels.source={cfg.source!r}: only simulated and AI labels are produced by this stage")
    candidates = read_rows(run.stage_dir("samples", create=False) / CANDIDATES_FILE)
    # synchronous=NORMAL: several times cheaper per judgment, and a killed run still resumes
    # from every committed judgment (only a power cut could lose the last few)
    service = LabelService.open(cfg.db, durable=False)
    try:
        name = cfg.campaign.replace("{round}", str(round))
        existing = {c["name"]: c["id"] for c in service.list_campaigns()}
        if name in existing:
            campaign_id = existing[name]
            print(f"labels: resuming campaign {name!r}")
        else:
            campaign_id = service.create_campaign(
                name, mode=cfg.mode, overlap=cfg.overlap, guidelines=cfg.guidelines, items=candidates,
                pairs_per_prompt=cfg.pairs_per_prompt, seed=recipe.seed,
            )
        stats: dict = {"judgments": {}}
        if "ai" in cfg.source:  # first, so that with overlap >= 2 it takes one slot of every item
            from reward.ai_labeling import ai_judge, ai_label_campaign

            stats["ai"] = ai_label_campaign(service, campaign_id, ai_judge(recipe), cfg.ai)
            stats["judgments"][cfg.ai.name] = stats["ai"]["judgments"]
        if "simulated" in cfg.source:
            sim = simulate_campaign(service, campaign_id, personas(cfg.annotators), candidates, recipe.seed)
            stats["judgments"].update(sim.pop("judgments"))
            stats.update(sim)
        n = export_comparisons(service, campaign_id, out, aggregation=cfg.aggregation,
                               include_ties=recipe.reward.ties == "half")
        info = {"campaign": name, "rows": n, **stats, "progress": service.progress(campaign_id),
                "agreement": service.agreement(campaign_id)}
    finally:
        service.close()
    run.write_metrics("labels", info)
    run.mark_done("labels", {"campaign": name, "rows": n})
    print(f"labels: {sum(stats['judgments'].values())} {cfg.source} judgments, {n} rows -> {out}")
    return out
