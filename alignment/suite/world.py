"""Building the offline world into a run directory: `suite/` splits and the `base/` model.

Each folder is built in a temporary sibling, its `COMPLETE.json` written last, and then
renamed into place, so a killed build never leaves a folder that looks finished. A folder
that is complete is skipped, which makes `build_world` idempotent and cheap to call from
every stage. The marker records a fingerprint of the settings; a complete folder built with
other settings is an error rather than silently reused.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from alignment.atomic_folder import MARKER, build_atomically, fingerprint
from alignment.recipe.model import OFFLINE_MODEL
from alignment.suite.generate import SPLITS, generate_suite
from alignment.suite.gold import mean_gold
from alignment.suite.model import create_model
from alignment.suite.tokenizer import train_tokenizer


@dataclasses.dataclass
class World:
    suite_dir: Path
    model_dir: Path
    summary: dict = dataclasses.field(default_factory=dict)
    """What the suite marker records: rows per split, demonstrations' mean gold, corruptions."""


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def suite_summary(splits: dict[str, list[dict]]) -> dict:
    sft = splits["sft"]
    demos = [row for row in sft if not row["metadata"]["family"].startswith("safety")]
    return {
        "rows": {name: len(rows) for name, rows in splits.items()},
        "demo_mean_gold": round(mean_gold(sft), 4),
        "task_demo_mean_gold": round(mean_gold(demos), 4),
        "corruptions": dict(sorted(Counter(r["metadata"]["corruption"] or "none" for r in sft).items())),
    }


def build_world(recipe, with_base: bool | None = None) -> World:
    """Write `<output_dir>/suite/<split>.jsonl` and `<output_dir>/base/` unless already there.

    The tiny base model (and the tokenizer trained for it) is built only when the recipe
    starts from it, unless `with_base` says otherwise: a real model brings its own.
    """
    root = Path(recipe.output_dir.replace("{name}", recipe.name))
    cfg = recipe.suite
    suite_fp = fingerprint({"seed": recipe.seed, "suite": dataclasses.asdict(cfg) | {"tiny_model": None}})
    model_fp = fingerprint({"seed": recipe.seed, "suite": dataclasses.asdict(cfg)})
    splits: dict[str, list[dict]] = {}

    def get_splits() -> dict[str, list[dict]]:
        if not splits:
            splits.update(generate_suite(cfg, recipe.seed))
        return splits

    def build_suite(tmp: Path) -> dict:
        for name, rows in get_splits().items():
            _write_jsonl(rows, tmp / f"{name}.jsonl")
        return suite_summary(get_splits())

    def build_base(tmp: Path) -> dict:
        tokenizer = train_tokenizer(
            training_texts(get_splits()), cfg.tiny_model.vocab_size, cfg.tiny_model.max_position_embeddings
        )
        model = create_model(cfg.tiny_model, tokenizer, recipe.seed)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer)}

    suite_info = build_atomically(root / "suite", suite_fp, build_suite, "suite settings or seed")
    if with_base is None:
        with_base = recipe.model.name_or_path == OFFLINE_MODEL
    if with_base:
        build_atomically(root / "base", model_fp, build_base, "suite settings or seed")
    return World(root / "suite", root / "base", {k: v for k, v in suite_info.items() if k not in ("stage",)})


def training_texts(splits: dict[str, list[dict]]) -> list[str]:
    """The text the tokenizer learns from: training prompts and demonstrations only."""
    texts = [m["content"] for row in splits["sft"] for m in row["messages"]]
    return texts + [row["prompt"] for row in splits["prompts"]]


__all__ = ["World", "build_world", "SPLITS", "MARKER"]
