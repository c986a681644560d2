"""DPO training by prompt against TRL's batches of pairs, on a finished run's labels: pairs trained per CPU-second.

TRL's DPOTrainer reads each pair's chosen and rejected conversation whole, `--pairs` pairs a step.
`dpo.prompts_per_step` (`alignment.prompt_groups`) trains a step on every labelled pair of
`--prompts` prompts, each prompt and each distinct completion read once. Both train `--steps`
steps from the run's SFT policy with the recipe's LoRA, precision and learning rate, on a seeded
subset of the run's pairs (whole prompts for ours); only `trainer.train()` is timed (the
reference pass is `dpo_reference_pass.py`'s). The contenders alternate `--repeat` times, so a
burst of load hits them alike.

    python bench/dpo_steps_by_prompt.py runs/smollm2                # about 4 min on 1 core
    python bench/dpo_steps_by_prompt.py runs/smollm2 --repeat 1 --no-append
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from trl import DPOTrainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignment.dpo import SharedPromptDPOTrainer, preference_rows, rows_within_budget  # noqa: E402
from alignment.recipe import load_recipe  # noqa: E402
from alignment.run_dir import RunDir  # noqa: E402
from bench.dpo_trainers import dpo_trainer  # noqa: E402
from bench.results import append_result  # noqa: E402


def train_steps(recipe, rows: list[dict], steps: int, pairs: int, prompts: int) -> tuple[float, float, int]:
    """CPU and wall seconds of `steps` training steps, and the pairs they trained on."""
    if prompts:
        chosen = rows_within_budget(rows, steps, prompts, recipe.seed, by_prompt=True)
        trainer = dpo_trainer(recipe, chosen, SharedPromptDPOTrainer, steps, 1, "/tmp/bench_dpo_steps",
                              prompts_per_step=prompts)
    else:
        chosen = rows_within_budget(rows, steps, pairs, recipe.seed)
        trainer = dpo_trainer(recipe, chosen, DPOTrainer, steps, pairs, "/tmp/bench_dpo_steps")
    c0, w0 = time.process_time(), time.perf_counter()
    trainer.train()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    assert trainer.state.global_step == steps
    return cpu, wall, len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run", help="A run folder with sft/ and labels/ (its recipe.yaml is read).")
    parser.add_argument("--steps", type=int, default=20, help="Training steps per contender and round.")
    parser.add_argument("--pairs", type=int, default=4, help="TRL's pairs per step (the recipe had 4).")
    parser.add_argument("--prompts", type=int, default=2, help="Our prompts per step (the recipe's prompts_per_step).")
    parser.add_argument("--repeat", type=int, default=2, help="Alternating rounds (each trains both once).")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see alignment/threads.py).")
    parser.add_argument("--no-append", action="store_true", help="Do not append to bench/results/dpo_steps_by_prompt.jsonl.")
    args = parser.parse_args()

    os.environ["RLHF_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(str(Path(args.run) / "recipe.yaml"), [f"output_dir={args.run}"])
    rows, _, _ = preference_rows(recipe, RunDir(recipe))
    contenders = {"trl": dict(pairs=args.pairs, prompts=0), "by_prompt": dict(pairs=0, prompts=args.prompts)}
    load_before = os.getloadavg()
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
    for round_ in range(args.repeat):
        for name, kwargs in contenders.items():
            cpu, wall, trained = train_steps(recipe, rows, args.steps, **kwargs)
            times[name].append((cpu, wall, trained))
            print(f"round {round_ + 1}/{args.repeat} {name:>9}: {args.steps} steps, {trained} pairs, "
                  f"{cpu:.1f} CPU-s, {wall:.1f} s", flush=True)
    load_after = os.getloadavg()
    summary = {name: {"cpu_s_per_step": statistics.median(c for c, _, _ in t) / args.steps,
                      "pairs_per_step": statistics.median(n for _, _, n in t) / args.steps,
                      "pairs_per_cpu_s": statistics.median(n / c for c, _, n in t)}
               for name, t in times.items()}
    ratio = summary["by_prompt"]["pairs_per_cpu_s"] / summary["trl"]["pairs_per_cpu_s"]
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.threads} thread(s); "
          f"model.dtype {recipe.model.dtype}")
    for name, s in summary.items():
        print(f"{name:>9}: {s['cpu_s_per_step']:.2f} CPU-s per step, {s['pairs_per_step']:.1f} pairs per step, "
              f"{s['pairs_per_cpu_s']:.2f} pairs per CPU-s")
    print(f"pairs per CPU-second, by_prompt/trl: {ratio:.1f}x")
    if not args.no_append:
        path = append_result("dpo_steps_by_prompt", {
            "args": vars(args), "load_before": load_before, "load_after": load_after, "figures": summary,
            "speedup": ratio})
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
