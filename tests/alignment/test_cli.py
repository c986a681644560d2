"""The `rlhf` argument parsing that every stage shares."""

import pytest

from alignment.cli import _parse, build_parser


def parse(*argv: str):
    return _parse(build_parser(only=argv[0]), list(argv))


def test_overrides_may_follow_an_option():
    # argparse alone closes the overrides at --force and rejects seed=1 as unrecognized
    args = parse("reward", "r.yaml", "reward.epochs=2", "--force", "seed=1", "labels.prompts=10")
    assert args.force and args.recipe == "r.yaml"
    assert args.overrides == ["reward.epochs=2", "seed=1", "labels.prompts=10"]


def test_options_before_the_recipe_still_work():
    args = parse("reward", "--force", "r.yaml", "seed=1")
    assert args.force and args.overrides == ["seed=1"]


def test_data_inspect_takes_files_after_options():
    args = parse("data", "inspect", "a.jsonl", "--json", "b.jsonl")
    assert args.json and args.rest == ["b.jsonl"]


def test_an_unknown_option_is_still_an_error(capsys):
    with pytest.raises(SystemExit):
        parse("reward", "r.yaml", "--forse", "seed=1")
    assert "unrecognized arguments: --forse" in capsys.readouterr().err
