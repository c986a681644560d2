"""On-disk cache of generations, so that re-evaluating against a new baseline does not regenerate.

An entry is keyed by what determines the text: the checkpoint (its path plus the size and
modification time of every file at its top level, so a checkpoint retrained in place is not
served stale text), the prompts themselves, and the decoding settings (kind, seed,
temperature, length budget, samples per prompt). Entries are JSON, written atomically, so an
interrupted evaluation never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from alignment.run_dir import write_json_atomic

def default_root() -> Path:
    """$RLHF_CACHE, else $XDG_CACHE_HOME/rlhf/generations, else ~/.cache/rlhf/generations."""
    if os.environ.get("RLHF_CACHE"):
        return Path(os.environ["RLHF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlhf" / "generations"


def checkpoint_fingerprint(path: str) -> dict:
    """What identifies a checkpoint's weights without hashing gigabytes."""
    p = Path(path).expanduser()
    if not p.is_dir():  # a hub id: the name is all we have
        return {"id": path}
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    return {
        "path": str(p.resolve()),
        "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class GenerationCache:
    """A folder of JSON entries; `root=None` disables caching."""

    def __init__(self, root: Optional[str | os.PathLike] = None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def key(self, checkpoint: str, prompts: Sequence, settings: dict) -> str:
        return _digest({"checkpoint": checkpoint_fingerprint(checkpoint), "prompts": _digest(list(prompts)), "settings": settings})

    def get(self, key: str) -> Optional[dict]:
        if self.root is None:
            return None
        path = self.root / f"{key}.json"
        if not path.is_file():
            self.misses += 1
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, payload: dict) -> None:
        if self.root is not None:
            write_json_atomic(self.root / f"{key}.json", payload)
