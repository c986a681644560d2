"""The `rlhf` console script: one subcommand per stage.

Each subcommand lives in its own module, imported only when it is called, so that
`rlhf --help` stays fast and a broken optional dependency of one stage (say, gradio)
never stops another stage from running. A command module exposes
`add_arguments(parser)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Order is the order of the loop.
COMMANDS: dict[str, tuple[str, str]] = {
    "suite": ("alignment.commands.suite", "build the offline world: task suite, tokenizer and tiny base model"),
    "data": ("alignment.commands.data", "inspect, clean, decontaminate and mix instruction data"),
    "sft": ("alignment.commands.sft", "supervised fine-tuning on instruction-response demonstrations"),
    "label": ("ui.commands", "the labeling web app and its label store (serve, users, campaigns, export)"),
    "reward": ("reward.commands.train", "train a Bradley-Terry reward model on comparisons"),
    "reward-eval": ("reward.commands.evaluate", "evaluate a reward model on held-out comparisons"),
    "ppo": ("alignment.commands.ppo", "PPO (actor-critic) against a reward model with KL control"),
    "dpo": ("alignment.commands.dpo", "DPO (and its loss variants) on preference pairs"),
    "grpo": ("alignment.commands.grpo", "GRPO with the reward model as reward function"),
    "rloo": ("alignment.commands.rloo", "RLOO with the reward model as reward function"),
    "eval": ("alignment.commands.eval", "compare a candidate with a baseline and flag regressions"),
    "run": ("alignment.commands.run", "run a whole recipe: data -> SFT -> labels -> reward -> PPO/DPO -> eval"),
}


# Subcommands of `rlhf label` that load models: the label app's own command module (ui.commands)
# imports no model code, so these are added to its parser here. (subcommand -> module)
LABEL_EXTRAS: dict[str, str] = {"critique": "reward.commands.ai_labels", "judge": "reward.commands.ai_labels"}


def _load(module_name: str):
    return importlib.import_module(module_name)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf",
        description="RLHF and preference-alignment toolkit: SFT -> reward model -> PPO/DPO, "
        "with a labeling app and regression evaluation. Every stage reads one YAML recipe; "
        "override any field with key.sub=value.",
        epilog="CPU threads: torch uses one thread for a model under 20M parameters, else one per usable core "
        "minus one (on 2 cores: one), because a second thread that shares its core with any other process "
        "made generation 5-10x slower; set RLHF_THREADS (or OMP_NUM_THREADS) to choose. "
        "Precision: model.dtype=bfloat16 on a CPU trains fp32 weights under bf16 autocast and generates with bf16 "
        "weights, 2-2.7x faster where the CPU has AVX512-BF16 or AMX, 4-11x slower where it has neither; "
        "model.dtype=bfloat16-if-native picks bf16 only where it is native (fp32 elsewhere); "
        "ppo.dtype overrides it for PPO alone.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only == name:
            _load(module_name).add_arguments(p)
            if name == "label":
                _add_label_extras(p)
    return parser


def _add_label_extras(parser: argparse.ArgumentParser) -> None:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for extra, module_name in LABEL_EXTRAS.items():
        module = _load(module_name)
        module.add_arguments(sub.add_parser(extra, help=module.HELP[extra]), extra)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, except that overrides may also follow an option (`rlhf reward r.yaml
    --force seed=1`): argparse closes a `nargs="*"` positional at the first option and
    would reject whatever comes after it. Anything else left over is still an error."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = next((name for name in ("overrides", "rest") if isinstance(getattr(args, name, None), list)), None)
        if target is None or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, target).extend(extra)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(only=command)
    args = _parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 0
    module_name = COMMANDS[args.command][0]
    if args.command == "label" and getattr(args, "label_command", None) in LABEL_EXTRAS:
        module_name = LABEL_EXTRAS[args.label_command]
    module = _load(module_name)
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("rlhf: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line for errors we raise on purpose
        from alignment.errors import UserError

        if isinstance(err, UserError) and not os.environ.get("RLHF_TRACEBACK"):
            print(f"rlhf {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
