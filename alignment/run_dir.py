"""The run directory: one folder per stage, each done when its marker is written.

A stage is complete only when `<stage>/COMPLETE.json` exists. The marker is written last and
atomically (temp file + rename), so a killed process never leaves a folder that looks
finished: the next run sees no marker, and resumes or redoes the stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from alignment.errors import UserError
from alignment.recipe import Recipe, save_recipe
from alignment.offline_models import PREFIX as OFFLINE_PREFIX
from alignment.offline_models import materialize
from alignment.recipe.model import OFFLINE_MODEL
from alignment.suite.world import build_world

MARKER = "COMPLETE.json"
SUITE_PREFIX = "suite:"


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """`runs/<name>/`: the resolved recipe, then one folder per stage."""

    def __init__(self, recipe: Recipe, create: bool = True):
        self.recipe = recipe
        self.root = Path(recipe.output_dir)
        if create:
            self._ensure_writable()

    def _ensure_writable(self) -> None:
        """Create the folder and prove it takes a file, with a probe of this process's own: under
        `accelerate launch` every process checks at once, and one shared probe name let one
        process unlink the file another had just written (FileNotFoundError, seen in CI)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.root)
            os.close(handle)
            os.unlink(probe)
        except OSError as err:
            raise UserError(f"output directory {self.root} is not writable ({err.strerror})") from None

    def save_recipe(self) -> Path:
        path = self.root / "recipe.yaml"
        save_recipe(self.recipe, path)
        return path

    def stage_dir(self, stage: str, create: bool = True) -> Path:
        path = self.root / stage
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, stage: str) -> bool:
        return (self.root / stage / MARKER).is_file()

    def marker(self, stage: str) -> dict:
        path = self.root / stage / MARKER
        return json.loads(path.read_text()) if path.is_file() else {}

    def mark_done(self, stage: str, info: dict | None = None) -> None:
        payload = {"stage": stage, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **(info or {})}
        write_json_atomic(self.stage_dir(stage) / MARKER, payload)

    def clear(self, stage: str) -> None:
        """Remove a stage's folder so that it reruns from scratch."""
        path = self.root / stage
        if path.exists():
            shutil.rmtree(path)

    def write_metrics(self, stage: str, metrics: dict) -> Path:
        path = self.stage_dir(stage) / "metrics.json"
        write_json_atomic(path, metrics)
        return path

    def read_metrics(self, stage: str) -> dict:
        path = self.root / stage / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}


@contextlib.contextmanager
def tensorboard_dir(path: str | Path):
    """Point transformers' TensorBoard callback at `path` (transformers 5 reads it from the environment)."""
    old = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = old


def uses_offline_world(recipe: Recipe) -> bool:
    paths = [s.path for s in recipe.data.sources] + list(recipe.data.eval_sets) + list(recipe.eval.prompts)
    return recipe.model.name_or_path == OFFLINE_MODEL or any(p.startswith(SUITE_PREFIX) for p in paths)


def resolve_model_path(recipe: Recipe) -> str:
    """The base model's folder or hub id.

    `offline:tiny-llama` is the run's locally built base model; another `offline:<name>` is
    a packaged real model, materialised into the model cache on first use; anything else
    (a local folder or a hub id) is returned as given.
    """
    name = recipe.model.name_or_path
    if name == OFFLINE_MODEL:
        return str(Path(recipe.output_dir) / "base")
    if name.startswith(OFFLINE_PREFIX):
        return str(materialize(name))
    return name


def resolve_named_model(recipe: Recipe, name: str | None) -> str:
    """A model a stage names besides the policy (a judge, a generator): None is the recipe's
    base model, `offline:<name>` a packaged model, anything else a folder or hub id."""
    if name is None:
        return resolve_model_path(recipe)
    if name.startswith(OFFLINE_PREFIX) and name != OFFLINE_MODEL:
        return str(materialize(name))
    if name == OFFLINE_MODEL:
        return str(Path(recipe.output_dir) / "base")
    return name


SELF_INSTRUCT_PREFIX = "self_instruct:"


def resolve_data_path(recipe: Recipe, path: str) -> str:
    """`suite:<split>` -> the run's generated split file; `self_instruct:<file>` -> the file
    `rlhf data generate` wrote into the run (`self_instruct:train`); anything else as given."""
    if path.startswith(SUITE_PREFIX):
        return str(Path(recipe.output_dir) / "suite" / f"{path[len(SUITE_PREFIX):]}.jsonl")
    if path.startswith(SELF_INSTRUCT_PREFIX):
        return str(Path(recipe.output_dir) / "self_instruct" / f"{path[len(SELF_INSTRUCT_PREFIX):]}.jsonl")
    return path


def ensure_offline_world(recipe: Recipe) -> None:
    """Build the offline suite and tiny base model if the recipe uses them (idempotent)."""
    if uses_offline_world(recipe):
        build_world(recipe)
