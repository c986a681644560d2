"""The recipe: defaults, overrides, and rejections that name the key and the file."""

import threading

import pytest
import yaml

from alignment.errors import RecipeError
from alignment.recipe import load_recipe, save_recipe
from alignment.run_dir import RunDir


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "sft": {"learning_rate": 1e-3, "lora": {"enabled": True}}}))
    return path


def test_defaults_fill_every_section(recipe_file):
    recipe = load_recipe(recipe_file)
    assert recipe.sft.learning_rate == 1e-3
    assert recipe.sft.lora.enabled and recipe.sft.lora.r == 16
    assert recipe.ppo.kl_estimator == "k1"
    assert recipe.output_dir == "runs/t"
    assert recipe.labels.db == "sqlite:///runs/t/labels/labels.db"


def test_overrides_are_typed_and_reach_into_lists(recipe_file):
    recipe = load_recipe(recipe_file, ["sft.epochs=2", "data.sources.0.weight=0.5", "ppo.adaptive_kl=true", "seed=7"])
    assert recipe.sft.epochs == 2.0 and isinstance(recipe.sft.epochs, float)
    assert recipe.data.sources[0].weight == 0.5
    assert recipe.ppo.adaptive_kl is True
    assert recipe.seed == 7


@pytest.mark.parametrize(
    "override, expected",
    [
        ("sft.lrr=1", "unknown key 'sft.lrr'"),
        ("sft.epochs=many", "key 'sft.epochs'"),
        ("ppo.kl_estimator=k9", "key 'ppo.kl_estimator'"),
        ("sft=3", "key 'sft'"),
        ("data.sources.0.path=/no/such/file.jsonl", "file not found: /no/such/file.jsonl"),
        ("data.sources.4.path=x", "not an index"),
        ("labels.annotators=[{name: a, tie_margin: -1}]", "key 'labels.annotators.0.tie_margin': -1.0 is out of range"),
        ("labels.annotators=[{name: a, flip_prob: 1.5}]", "1.5 is out of range (allowed: in [0, 1])"),
        ("ppo.kl_in=loss", "key 'ppo.kl_estimator': k1 with ppo.kl_in=loss"),
    ],
)
def test_bad_overrides_name_the_key_and_the_file(recipe_file, override, expected):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe_file, [override])
    assert expected in str(err.value)
    assert str(recipe_file) in str(err.value)


def test_kl_as_a_loss_takes_an_estimator_with_a_gradient():
    """k1's gradient as a loss is zero in expectation: refused with the fix named; k2 and k3 load."""
    with pytest.raises(RecipeError) as err:
        load_recipe(None, ["ppo.kl_in=loss", "ppo.kl_estimator=k1"])
    assert "\n" not in str(err.value) and "set ppo.kl_estimator=k2" in str(err.value)
    for estimator in ("k2", "k3"):
        assert load_recipe(None, ["ppo.kl_in=loss", f"ppo.kl_estimator={estimator}"]).ppo.kl_estimator == estimator
    assert load_recipe(None, ["ppo.kl_in=reward", "ppo.kl_estimator=k1"]).ppo.kl_in == "reward"


def test_malformed_override_is_rejected():
    with pytest.raises(RecipeError, match="key.sub=value"):
        load_recipe(None, ["name"])


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"sft": {"epochz": 3}}, "unknown key 'sft.epochz'"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"sft": {"batch_size": "big"}}, "key 'sft.batch_size'"),
        ({"model": {"dtype": "float64"}}, "key 'model.dtype'"),
    ],
)
def test_bad_file_names_the_key_and_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_missing_and_unparsable_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("sft: [1, 2\n")
    with pytest.raises(RecipeError, match="broken.yaml.*not valid YAML"):
        load_recipe(bad)


def test_resolved_recipe_round_trips(tmp_path, recipe_file):
    recipe = load_recipe(recipe_file, ["ppo.kl_coef=0.2"])
    out = tmp_path / "run" / "recipe.yaml"
    save_recipe(recipe, out)
    again = load_recipe(out)
    assert again == recipe


def test_every_shipped_recipe_loads():
    from pathlib import Path

    recipes = sorted(Path("configs").glob("*.yaml"))
    assert recipes, "configs/ holds no recipes"
    for path in recipes:
        load_recipe(path)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("sft.learning_rate=-1", "key 'sft.learning_rate': -1.0 is out of range (allowed: > 0)"),
        ("sft.batch_size=0", "key 'sft.batch_size': 0 is out of range (allowed: >= 1)"),
        ("sft.max_steps=0", "key 'sft.max_steps': 0 is out of range (allowed: >= 1 or -1)"),
        ("reward.eval_fraction=1", "key 'reward.eval_fraction': 1.0 is out of range (allowed: in [0, 1))"),
        ("ppo.top_p=0", "key 'ppo.top_p': 0.0 is out of range (allowed: in (0, 1])"),
        ("ppo.vf_coef=-0.1", "key 'ppo.vf_coef': -0.1 is out of range (allowed: >= 0)"),
        ("ppo.gamma=.nan", "key 'ppo.gamma': nan is out of range"),
        ("dpo.loss_weights=[1, -2]", "key 'dpo.loss_weights.1': -2.0 is out of range (allowed: >= 0)"),
        ("data.sources.0.weight=-1", "key 'data.sources.0.weight': -1.0 is out of range"),
        ("ppo.rollout_batch_size=20", "key 'ppo.rollout_batch_size': 20 must be a multiple of ppo.mini_batch_size=16"),
        ("ppo.gradient_accumulation_steps=3", "key 'ppo.mini_batch_size': 16 must be a multiple of ppo.gradient_accumulation_steps=3"),
        ("grpo.batch_size=6", "key 'grpo.batch_size': 6 must be a multiple of num_generations=4"),
    ],
)
def test_out_of_range_values_are_refused_at_load(recipe_file, override, expected):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe_file, [override])
    assert str(err.value).startswith(f"{recipe_file} (command-line override): {expected}")


def test_out_of_range_value_in_the_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sft": {"learning_rate": -1}}))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: key 'sft.learning_rate': -1.0 is out of range (allowed: > 0)"


def test_a_bad_value_is_refused_before_anything_heavy_is_imported(tmp_path):
    """The CLI loads the recipe before a stage imports torch; loading must not import it either."""
    import subprocess
    import sys

    code = ("import sys\nfrom alignment.recipe import load_recipe\ntry:\n    load_recipe(None, ['sft.batch_size=0'])\n"
            "except Exception as e:\n    print(type(e).__name__)\nprint(sorted(m for m in ('torch', 'transformers', 'trl') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["RecipeError", "[]"]


def _sections(cls, path="recipe"):
    """Every section class reachable from `cls`, with the dotted path of its first use."""
    import dataclasses
    import typing

    yield path, cls
    for f in dataclasses.fields(cls):
        for t in _leaf_types(typing.get_type_hints(cls)[f.name]):
            if dataclasses.is_dataclass(t):
                yield from _sections(t, f"{path}.{f.name}")


def _leaf_types(annotation):
    import typing

    args = typing.get_args(annotation)
    return [leaf for a in args for leaf in _leaf_types(a)] if args else [annotation]


def test_every_numeric_option_declares_its_range():
    """An option added without a range fails here; `unbounded=True` declares "any number" on purpose."""
    from alignment.recipe import Recipe
    from alignment.recipe.ranges import Range, numeric_fields

    checked, missing = 0, []
    for path, section in _sections(Recipe):
        for f in numeric_fields(section):
            checked += 1
            if not isinstance(f.metadata.get("range"), Range):
                missing.append(f"{path}.{f.name} ({section.__name__})")
    assert not missing, f"numeric options without a declared range: {missing}"
    assert checked > 100  # the walk reached every section, lists and optional sections included


def test_the_walk_catches_an_option_without_a_range():
    from dataclasses import dataclass

    from alignment.recipe.base import Section, option
    from alignment.recipe.ranges import numeric_fields

    @dataclass
    class Fresh(Section):
        steps: int = option(3, help="No range declared.")
        ratio: "float | None" = option(None, help="Declared.", ge=0, le=1)
        name: str = option("x", help="Not a number.")
        on: bool = option(True, help="A flag, not a number.")

    assert [(f.name, "range" in f.metadata) for f in numeric_fields(Fresh)] == [("steps", False), ("ratio", True)]


def test_defaults_and_shipped_recipes_are_within_their_ranges():
    from pathlib import Path

    from alignment.pipeline import SMOKE_OVERRIDES

    for path in [None, *sorted(Path("configs").glob("*.yaml"))]:
        load_recipe(path)
        load_recipe(path, SMOKE_OVERRIDES)



def errors_of_concurrent_calls(call, times: int, threads: int = 4) -> list[BaseException]:
    """Run `call` `times` times in each of `threads` threads at once (as processes under
    `accelerate launch` do); every exception any of them raised."""
    errors: list[BaseException] = []

    def repeat() -> None:
        try:
            for _ in range(times):
                call()
        except BaseException as err:  # noqa: BLE001 - any failure is the test's finding
            errors.append(err)

    workers = [threading.Thread(target=repeat) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors


def test_processes_writing_the_same_recipe_at_once_all_succeed(tmp_path):
    """Under `accelerate launch` every process saves runs/<name>/recipe.yaml; a shared temporary
    name made one rename fail with FileNotFoundError when another had just moved the file."""
    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path}"])
    errors = errors_of_concurrent_calls(lambda: save_recipe(recipe, tmp_path / "recipe.yaml"), times=100)
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yaml"]
    assert load_recipe(str(tmp_path / "recipe.yaml"), []).output_dir == str(tmp_path)


def test_processes_opening_the_same_run_folder_at_once_all_succeed(tmp_path):
    """Under `accelerate launch` every process checks that runs/<name>/ is writable; with one shared
    probe file, one process unlinked the probe another had just written, and its run stopped with
    'not writable (No such file or directory)' (the two-process PPO test, in CI)."""
    recipe = load_recipe("configs/quickstart.yaml", [f"output_dir={tmp_path / 'run'}"])
    errors = errors_of_concurrent_calls(lambda: RunDir(recipe), times=300)
    assert not errors, errors[:1]
    assert list((tmp_path / "run").iterdir()) == []  # no probe left behind
