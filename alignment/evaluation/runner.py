"""Orchestration: generate (cached), score, compare, gate, and write the report.

`evaluate_models` is the one entry point: `rlhf eval` calls it with a baseline and one or
more candidates, and the pipeline (`evaluate_arms`) with every arm of a run. Models are
loaded lazily and one at a time, so a re-evaluation whose generations are all cached loads
no policy at all (only the reference, if KL samples are missing, and the reward model).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from alignment.errors import UserError
from alignment.evaluation import compare
from alignment.evaluation.bootstrap import Estimate
from alignment.evaluation.gates import Gate, GateResult, evaluate_gates, verdict
from alignment.evaluation.generation_cache import GenerationCache
from alignment.evaluation.kl import KLEstimates, PolicySamples, kl_from_reference, sample_with_ids
from alignment.evaluation.prompts import EvalPrompt
from alignment.evaluation.report import write_reports
from alignment.evaluation.scoring import add_rewards, score_responses
from alignment.generation import generate
from alignment.models import load_policy, load_tokenizer, pick_device
from alignment.recipe.model import ModelConfig
from alignment.run_dir import write_json_atomic
from reward.scoring import RewardScorer


@dataclass
class EvalSettings:
    """How responses are drawn and how the statistics are computed (see EvalConfig)."""

    temperature: float = 0.0
    max_new_tokens: int = 32
    samples_per_prompt: int = 1
    seed: int = 0
    bootstrap_samples: int = 2000
    kl_prompts: int = 64
    batch_size: int = 64
    retention_set: str = "eval_seen"
    examples: int = 5

    @classmethod
    def from_recipe(cls, recipe) -> "EvalSettings":
        e = recipe.eval
        return cls(temperature=e.temperature, max_new_tokens=e.max_new_tokens, samples_per_prompt=e.samples_per_prompt,
                   seed=recipe.seed, bootstrap_samples=e.bootstrap_samples, kl_prompts=e.kl_prompts,
                   batch_size=e.batch_size, retention_set=e.retention_set, examples=e.report_examples)

    def generation_key(self) -> dict:
        return {"temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "samples": self.samples, "seed": self.seed}

    @property
    def samples(self) -> int:
        return 1 if self.temperature == 0 else self.samples_per_prompt


@dataclass
class ModelResult:
    name: str
    path: str
    responses: list[list[str]]
    scores: dict[str, np.ndarray]
    kl_notes: list[str] = field(default_factory=list)


class _Lazy:
    """A policy and its tokenizer, loaded on first use."""

    def __init__(self, path: str, cfg: ModelConfig, device):
        self.path, self.cfg, self.device = path, cfg, device
        self._pair = None

    def get(self):
        if self._pair is None:
            tokenizer = load_tokenizer(self.path, self.cfg, padding_side="left")
            self._pair = (load_policy(self.path, self.cfg, device=self.device), tokenizer)
        return self._pair

    def release(self) -> None:
        self._pair = None


def check_checkpoint(path: str, flag: str) -> None:
    p = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or p.exists()
    if looks_local and not (p / "config.json").is_file():
        what = "not found" if not p.exists() else "is not a save_pretrained model folder (no config.json)"
        raise UserError(f"{flag} checkpoint {path} {what}")


def kl_indices(n: int, k: int) -> np.ndarray:
    """k prompt indices spread evenly over all prompts (every set gets its share)."""
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _same_checkpoint(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def run_models(
    models: dict[str, str],
    prompts: list[EvalPrompt],
    settings: EvalSettings,
    reward: Optional[str] = None,
    reference: Optional[str] = None,
    cache: Optional[GenerationCache] = None,
    model_cfg: Optional[ModelConfig] = None,
    device=None,
) -> dict[str, ModelResult]:
    """Responses, per-prompt scores and KL samples for every model (generations cached)."""
    cache = cache or GenerationCache(None)
    # every checkpoint carries its own tokenizer: a recipe-level tokenizer override must not leak in
    cfg = dataclasses.replace(model_cfg or ModelConfig(), tokenizer_name_or_path=None)
    device = pick_device(str(device) if device else None)
    texts = [p.prompt for p in prompts]
    kl_idx = kl_indices(len(prompts), settings.kl_prompts if reference else 0)
    kl_texts = [texts[i] for i in kl_idx]
    ref = _Lazy(reference, cfg, device) if reference else None
    results: dict[str, ModelResult] = {}
    for name, path in models.items():
        policy = _Lazy(path, cfg, device)
        key = cache.key(path, texts, {"kind": "responses", **settings.generation_key()})
        entry = cache.get(key)
        if entry is None:
            model, tok = policy.get()
            print(f"eval: generating {len(texts)} x {settings.samples} responses with {name} ({path})")
            out = generate(model, tok, texts, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                           seed=settings.seed, batch_size=settings.batch_size,
                           num_return_sequences=settings.samples, progress=True)
            responses = [[r] for r in out] if settings.samples == 1 else out
            cache.put(key, {"model": path, "responses": responses})
        else:
            responses = entry["responses"]
        scores = score_responses(prompts, responses)
        notes: list[str] = []
        if ref is not None and len(kl_idx):
            kl, notes = _kl_for(name, path, policy, ref, reference, kl_texts, settings, cache)
            for key_name, values in kl.as_dict().items():
                full = np.full(len(prompts), np.nan)
                full[kl_idx] = values
                scores[f"kl.{key_name}"] = full
        results[name] = ModelResult(name, path, responses, scores, notes)
        policy.release()  # free it before the next model
    if reward:
        scorer = RewardScorer.from_pretrained(reward, device=device, dtype=cfg.dtype)  # as PPO and DPO score
        for result in results.values():
            add_rewards(result.scores, prompts, result.responses, scorer, settings.batch_size)
    return results


def _kl_for(name, path, policy: _Lazy, ref: _Lazy, reference: str, kl_texts, settings: EvalSettings, cache) -> tuple[KLEstimates, list[str]]:
    n = len(kl_texts)
    if _same_checkpoint(path, reference):
        zeros = np.zeros(n)
        return KLEstimates(zeros, zeros, zeros, zeros), [f"{name} is the reference: KL is 0 by definition"]
    key = cache.key(path, kl_texts, {"kind": "kl", "reference": cache.key(reference, [], {}),
                                     "max_new_tokens": settings.max_new_tokens, "seed": settings.seed})
    entry = cache.get(key)
    if entry is not None:
        est = entry["kl"]
        return KLEstimates(*(np.array(est[k]) for k in ("k1_seq", "k3_seq", "k1_token", "k3_token")),
                           token_level=est["token_level"], notes=est["notes"]), est["notes"]
    model, tok = policy.get()
    ref_model, ref_tok = ref.get()
    print(f"eval: KL of {name} from the reference on {n} temperature-1 samples")
    samples: PolicySamples = sample_with_ids(model, tok, kl_texts, settings.max_new_tokens, settings.seed, settings.batch_size)
    kl = kl_from_reference(model, tok, ref_model, ref_tok, kl_texts, samples, settings.batch_size)
    cache.put(key, {"model": path, "reference": reference, "samples": samples.texts,
                    "kl": {**{k: v.tolist() for k, v in kl.as_dict().items()}, "token_level": kl.token_level, "notes": kl.notes}})
    return kl, kl.notes


MISSING_REASONS = {
    "reward": "no reward model given (--reward)",
    "win_rate": "no reward model given (--reward)",
    "lc_win_rate": "no reward model given (--reward)",
    "gold": "no prompt has a gold checker or constraints",
    "task": "no offline-suite prompts",
    "gold_win_rate": "no prompt has a gold checker or constraints",
    "retention": "the retention set is not among the prompts",
    "heldout": "no prompts outside the retention set",
    "prompt_pass": "no prompt carries constraints",
    "constraint_pass": "no prompt carries constraints",
    "refusal_rate": "no harmful (safety_refuse) prompts",
    "over_refusal_rate": "no benign look-alike (safety_comply) prompts",
    **{f"kl.{k}": "no reference model, or kl_prompts = 0" for k in ("k1_seq", "k3_seq", "k1_token", "k3_token")},
}


def summarize(
    results: dict[str, ModelResult],
    baseline: str,
    prompts: list[EvalPrompt],
    settings: EvalSettings,
    gates: list[Gate],
    context: dict,
) -> dict:
    """metrics.json: per-model metrics, per-candidate comparisons with gates, breakdowns."""
    specs = compare.metric_specs(settings.retention_set)
    boot = {"n_resamples": settings.bootstrap_samples, "seed": settings.seed}
    dump = lambda d: {k: v.to_dict() for k, v in d.items()}
    models = {}
    for name, r in results.items():
        models[name] = {"path": r.path, "role": "baseline" if name == baseline else "candidate",
                        "metrics": dump(compare.model_metrics(r.scores, prompts, specs, boot)), "notes": r.kl_notes}
    comparisons = {}
    base = results[baseline]
    for name, r in results.items():
        if name == baseline:
            continue
        paired = compare.paired_metrics(r.scores, base.scores, prompts, specs, boot)
        flat: dict[str, Estimate] = {k: Estimate.from_dict(v) for k, v in models[name]["metrics"].items()}
        flat.update({f"{k}.baseline": Estimate.from_dict(v) for k, v in models[baseline]["metrics"].items()})
        flat.update(paired)
        gate_results: list[GateResult] = evaluate_gates(gates, flat, MISSING_REASONS)
        improved, regressed = compare.significance(paired, specs)
        warnings = [w for w in [compare.lc_disagreement(paired)] if w]
        buckets = {s: compare.length_buckets(r.scores, base.scores, s) for s in ("reward", "gold")}
        comparisons[name] = {
            "metrics": dump(paired),
            "significant_improvements": improved,
            "significant_regressions": regressed,
            "gates": [g.to_dict() for g in gate_results],
            "passed": verdict(gate_results),
            "warnings": warnings,
            "length_buckets": {k: v for k, v in buckets.items() if v},
            **compare.biggest_changes(r.scores, base.scores, prompts, r.responses, base.responses, settings.examples),
        }
    by_category = {
        metric: {group: {"models": dump(d["models"]), "diff": dump(d["diff"])} for group, d in table.items()}
        for metric, table in compare.breakdown({n: r.scores for n, r in results.items()}, baseline, prompts, specs, boot).items()
    }
    lengths = {name: r.scores["length"].tolist() for name, r in results.items()}
    sets = {}
    for p in prompts:
        sets[p.set] = sets.get(p.set, 0) + 1
    return {
        **context,
        "baseline": baseline,
        "settings": dataclasses.asdict(settings),
        "prompts": {"n": len(prompts), "sets": sets},
        "metric_descriptions": compare.known_metrics(specs),
        "models": models,
        "comparisons": comparisons,
        "by_category": by_category,
        "lengths": lengths,
        "passed": all(c["passed"] for c in comparisons.values()),
    }


def evaluate_models(
    models: dict[str, str],
    baseline: str,
    prompts: list[EvalPrompt],
    settings: EvalSettings,
    out_dir: str | Path,
    reward: Optional[str] = None,
    reference: Optional[str] = None,
    gates: Optional[list[Gate]] = None,
    cache: Optional[GenerationCache] = None,
    model_cfg: Optional[ModelConfig] = None,
    title: str = "Regression evaluation",
    device=None,
    arms: bool = False,
) -> dict:
    """Evaluate `models` ({name: checkpoint}) against `baseline` (one of the names) and write
    `metrics.json`, `report.md`, `report.html` and `generations.jsonl` into `out_dir`.

    `arms=True` (the pipeline) adds an `arms` table: each model's gold, held-out gold,
    retention and reward with their CIs, and its KL from the reference."""
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(models)}")
    if not prompts:
        raise UserError("no prompts to evaluate on (the prompt sets are empty)")
    for name, path in models.items():
        check_checkpoint(path, f"model '{name}'")
    if reference:
        check_checkpoint(reference, "reference")
    if reward:
        check_checkpoint(reward, "reward")
    started = time.time()
    cache = cache or GenerationCache(None)
    results = run_models(models, prompts, settings, reward, reference, cache, model_cfg, device)
    notes = []
    if settings.temperature == 0 and settings.samples_per_prompt > 1:
        notes.append(f"greedy decoding: 1 response per prompt instead of {settings.samples_per_prompt} (they would be identical)")
    if not reference:
        notes.append("no reference model: KL not measured")
    context = {"title": title, "reference": reference, "reward_model": reward, "notes": notes,
               "cache": {"dir": str(cache.root) if cache.root else None, "hits": cache.hits, "misses": cache.misses}}
    metrics = summarize(results, baseline, prompts, settings, gates or [], context)
    if arms:
        metrics["arms"] = arms_table(metrics)
    metrics["wall_time_s"] = round(time.time() - started, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_generations(out / "generations.jsonl", prompts, results)
    write_reports(metrics, out)
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def arms_table(metrics: dict) -> dict:
    """{arm: {path, gold, heldout, retention, reward, kl.k1_seq, kl.k3_seq}} (each {value, low, high, n})."""
    return {
        name: {"path": m["path"], **{k: m["metrics"][k] for k in compare.ARM_METRICS if k in m["metrics"]}}
        for name, m in metrics["models"].items()
    }


def _write_generations(path: Path, prompts: list[EvalPrompt], results: dict[str, ModelResult]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, p in enumerate(prompts):
            row = {"id": p.id, "set": p.set, "category": p.category, "prompt": p.prompt,
                   "responses": {name: r.responses[i] for name, r in results.items()}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
