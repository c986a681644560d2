"""Reading a recipe: YAML file + `a.b=value` overrides -> validated `Recipe`.

Every error names the recipe file and the dotted key, and says whether the key came from
the file or from the command line, because "invalid value" without a location is the most
common complaint about config systems.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from alignment.errors import RecipeError
from alignment.offline_models import PACKAGED_MODELS, is_packaged
from alignment.offline_models import PREFIX as OFFLINE_PREFIX
from alignment.recipe.model import OFFLINE_MODEL
from alignment.recipe.pipeline import ROUND_STAGES
from alignment.recipe.ranges import out_of_range
from alignment.recipe.schema import Recipe

_ADAPTER = TypeAdapter(Recipe)
CLI = "command-line override"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`sft.learning_rate=1e-4` -> (['sft', 'learning_rate'], 0.0001); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({err.problem})") from None
    return key.split("."), value


def _set_path(tree: dict, path: list[str], value: Any, origin: str) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, path, origin)]
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise RecipeError(f"{origin}: key {'.'.join(path[: i + 1])} is a value, not a section")
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path, origin)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, path: list[str], origin: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise RecipeError(f"{origin}: {'.'.join(path)}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _origin(key: str, file: str, overridden: set[str], where: str = CLI) -> str:
    """The recipe file, marked as an override when the key (or a section above it) was one."""
    return f"{file} ({where})" if any(key == o or key.startswith(o + ".") for o in overridden) else file


def _describe(error: dict, file: str, overridden: set[str], where: str) -> str:
    key = ".".join(str(p) for p in error["loc"])
    origin = _origin(key, file, overridden, where)
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{origin}: unknown key '{key}'"
    return f"{origin}: key '{key}': {error['msg']} (got {error.get('input')!r})"


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override, validate and resolve a recipe. `path=None` gives the defaults."""
    file = str(path) if path is not None else "<defaults>"
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"recipe file not found: {file}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise RecipeError(f"{file}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
        except UnicodeDecodeError:
            raise RecipeError(f"{file}: not UTF-8 text") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"{file}: a recipe is a mapping of sections, got {type(raw).__name__}")
    recipe = _validated(_merge(recipe_to_dict(Recipe()), raw), overrides, file, CLI)
    _check_round_overrides(recipe, file)
    return recipe


def with_overrides(recipe: Recipe, overrides: list[str], file: str, where: str) -> Recipe:
    """A new recipe: `recipe` with dotted overrides applied and checked like the command line's.

    `where` names the overrides in error messages (e.g. "pipeline.round_overrides.2")."""
    return _validated(recipe_to_dict(recipe), overrides, file, where)


def _validated(raw: dict, overrides: list[str] | tuple[str, ...], file: str, where: str) -> Recipe:
    """Apply overrides to the raw tree, then validate, range-check, resolve and cross-check it."""
    overridden = set()
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(raw, keys, value, origin=f"{file} ({where})")
        overridden.add(".".join(keys))
    try:
        recipe = _ADAPTER.validate_python(raw)
    except ValidationError as err:
        problems = [_describe(e, file, overridden, where) for e in err.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RecipeError(problems[0] + more) from None
    _check_ranges(recipe, file, overridden, where)
    _resolve_templates(recipe)
    _check_files(recipe, file, overridden, where)
    _check_combinations(recipe, file, overridden, where)
    return recipe


ROUND_FIXED = ("name", "output_dir", "pipeline.rounds", "pipeline.round_overrides", "pipeline.smoke")
"""Keys a round may not change: they say where the rounds live and how many there are."""


def _check_round_overrides(recipe: Recipe, file: str) -> None:
    """Each round's overrides name an existing round, leave the run's shape alone, and give a
    valid recipe: a mistake in round 2 is reported now, not an hour into the run."""
    pipeline = recipe.pipeline
    for r, overrides in pipeline.round_overrides.items():
        where = f"pipeline.round_overrides.{r}"
        if not 1 <= r <= pipeline.rounds:
            raise RecipeError(f"{file}: key '{where}': round {r} does not exist (pipeline.rounds is {pipeline.rounds})")
        for text in overrides:
            keys, value = parse_override(text)
            key = ".".join(keys)
            if any(key == k or key.startswith(k + ".") for k in ROUND_FIXED):
                raise RecipeError(f"{file}: key '{where}': {key} is the same for every round and cannot be overridden per round")
            if key == "pipeline.stages" and isinstance(value, list):
                shared = [s for s in value if s not in ROUND_STAGES]
                if shared:
                    raise RecipeError(f"{file}: key '{where}': pipeline.stages of a round lists only round stages "
                                      f"{list(ROUND_STAGES)}; {shared} run once for the whole run")
        with_overrides(recipe, overrides, file, where)


def _check_ranges(recipe: Recipe, file: str, overridden: set[str], where: str) -> None:
    """Refuse a value outside its declared range, naming file, key, value and the range."""
    problems = []
    for keys, message in out_of_range(recipe):
        origin = next((_origin(k, file, overridden, where) for k in keys if _origin(k, file, overridden, where) != file), file)
        problems.append(f"{origin}: key '{keys[0]}': {message}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RecipeError(problems[0] + more)


def _merge(defaults: dict, given: dict) -> dict:
    """Deep-merge the file over the defaults, so that overrides can reach into lists."""
    merged = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_templates(recipe: Recipe) -> None:
    recipe.output_dir = recipe.output_dir.replace("{name}", recipe.name)
    recipe.labels.db = recipe.labels.db.replace("{output_dir}", recipe.output_dir)
    recipe.labels.campaign = recipe.labels.campaign.replace("{name}", recipe.name)


def _check_files(recipe: Recipe, file: str, overridden: set[str], where: str) -> None:
    """Local files named by the recipe must exist (hub ids, suite:* splits and self_instruct:*
    files are not, or not yet)."""
    named: list[tuple[str, str]] = []
    for group in ("sources", "preference_sources"):
        for i, source in enumerate(getattr(recipe.data, group)):
            named.append((f"data.{group}.{i}.path", source.path))
    if recipe.labels.source == "file" and recipe.labels.file:
        named.append(("labels.file", recipe.labels.file))
    if recipe.eval.gates:
        named.append(("eval.gates", recipe.eval.gates))
    named.append(("model.name_or_path", recipe.model.name_or_path))
    for key, value in named:
        if key == "model.name_or_path" and value.startswith(OFFLINE_PREFIX) and value != OFFLINE_MODEL \
                and not is_packaged(value):
            origin = _origin(key, file, overridden, where)
            known = ", ".join([OFFLINE_MODEL, *PACKAGED_MODELS])
            raise RecipeError(f"{origin}: key '{key}': unknown offline model {value!r} (known: {known})")
        if value.startswith(("suite:", "self_instruct:", OFFLINE_PREFIX)):  # written by the run itself
            continue
        looks_local = value.startswith((".", "/", "~")) or key != "model.name_or_path"
        if looks_local and not Path(value).expanduser().exists():
            origin = _origin(key, file, overridden, where)
            raise RecipeError(f"{origin}: key '{key}': file not found: {value}")


def _check_combinations(recipe: Recipe, file: str, overridden: set[str], where: str) -> None:
    """Settings that are each valid but wrong together."""
    ppo = recipe.ppo
    if ppo.kl_in == "loss" and ppo.kl_estimator == "k1":
        # d/dtheta of k1 = log p(x) - log q(x) is grad log p(x), and E_p[grad log p] = 0
        keys = {"ppo.kl_in", "ppo.kl_estimator"}
        origin = f"{file} ({where})" if keys & overridden else file
        raise RecipeError(
            f"{origin}: key 'ppo.kl_estimator': k1 with ppo.kl_in=loss gives the policy no KL gradient in expectation "
            "(E_p[grad log p] = 0); set ppo.kl_estimator=k2 (its expected gradient is exactly grad KL) or k3, "
            "or ppo.kl_in=reward"
        )


def recipe_to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    """Write the resolved recipe (every default filled in) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: under `accelerate launch` every process writes the same recipe,
    # and with one shared name the second rename found the first one's file gone
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    os.replace(tmp, path)
