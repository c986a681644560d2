"""Building the offline world into a run directory: `suite/` splits and the `base/` model.

Each folder is built in a temporary sibling, its `COMPLETE.json` written last, and then
renamed into place, so a killed build never leaves a folder that looks finished. A folder
that is complete is skipped, which makes `build_world` idempotent and cheap to call from
every stage. The marker records a fingerprint of the settings; a complete folder built with
other settings is an error rather than silently reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable

from alignment.errors import UserError
from alignment.suite.generate import SPLITS, generate_suite
from alignment.suite.gold import mean_gold

MARKER = "COMPLETE.json"


@dataclasses.dataclass
class World:
    suite_dir: Path
    model_dir: Path
    summary: dict = dataclasses.field(default_factory=dict)
    """What the suite marker records: rows per split, demonstrations' mean gold, corruptions."""


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _build_atomically(target: Path, fingerprint: str, build: Callable[[Path], dict]) -> dict:
    """Run `build(tmp)` unless `target` is complete; return the marker's contents."""
    marker = target / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("fingerprint") != fingerprint:
            raise UserError(
                f"{target} was built with other suite settings or seed; delete it or use another output_dir"
            )
        return info
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would stick to the finished folder
    try:
        info = {"fingerprint": fingerprint, **build(tmp)}
        with open(tmp / MARKER, "w", encoding="utf-8") as f:
            json.dump({"stage": target.name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}, f, indent=2)
        if target.exists():  # an interrupted earlier build: no marker, so not done
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return json.loads(marker.read_text())


def suite_summary(splits: dict[str, list[dict]]) -> dict:
    sft = splits["sft"]
    demos = [row for row in sft if not row["metadata"]["family"].startswith("safety")]
    return {
        "rows": {name: len(rows) for name, rows in splits.items()},
        "demo_mean_gold": round(mean_gold(sft), 4),
        "task_demo_mean_gold": round(mean_gold(demos), 4),
        "corruptions": dict(sorted(Counter(r["metadata"]["corruption"] or "none" for r in sft).items())),
    }


def build_world(recipe) -> World:
    """Write `<output_dir>/suite/<split>.jsonl` and `<output_dir>/base/` unless already there."""
    root = Path(recipe.output_dir.replace("{name}", recipe.name))
    cfg = recipe.suite
    suite_fp = _fingerprint({"seed": recipe.seed, "suite": dataclasses.asdict(cfg) | {"tiny_model": None}})
    model_fp = _fingerprint({"seed": recipe.seed, "suite": dataclasses.asdict(cfg)})
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
        from alignment.suite.model import create_model
        from alignment.suite.tokenizer import train_tokenizer

        tokenizer = train_tokenizer(
            training_texts(get_splits()), cfg.tiny_model.vocab_size, cfg.tiny_model.max_position_embeddings
        )
        model = create_model(cfg.tiny_model, tokenizer, recipe.seed)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer)}

    suite_info = _build_atomically(root / "suite", suite_fp, build_suite)
    _build_atomically(root / "base", model_fp, build_base)
    return World(root / "suite", root / "base", {k: v for k, v in suite_info.items() if k not in ("stage",)})


def training_texts(splits: dict[str, list[dict]]) -> list[str]:
    """The text the tokenizer learns from: training prompts and demonstrations only."""
    texts = [m["content"] for row in splits["sft"] for m in row["messages"]]
    return texts + [row["prompt"] for row in splits["prompts"]]


__all__ = ["World", "build_world", "SPLITS", "MARKER"]
